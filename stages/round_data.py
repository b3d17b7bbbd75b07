"""Stage round_data@N (`python -m stages.round_data N`, iterate.rounds): round N of the paper's
iterative procedure collects iterate.episodes new episodes with round N-1's agent (the VAE, and
round N-1's MDN-RNN and controller; round 1: the mdnrnn and controller stages') plus Gaussian
action noise of std iterate.action_noise on the components iterate.noise_on, on new tracks of
the collect block, and encodes them with the VAE. Round N's latents are round N-1's and these
(the MDN-RNN of round N trains on all).

outs: data/rounds/N (latent episodes); metrics/rounds/N/collect.json
"""

import shutil
import sys

import numpy as np

from wm import paths
from wm.agents import Noisy, noise_std
from wm.compute import use_threads
from wm.config import load_params, parse_round
from wm.env import track_seeds
from wm.episodes import episode_name, list_files
from wm.errors import UserError, main
from wm.executor import batch_count, make_executor
from wm.io import Timer, atomic_dir, resolve_device, scratch_dir, write_json
from wm.vae import encode_episode
from wm.world_model import load_agent, load_world_model


@main
def run():
    params = load_params()
    use_threads(params.threads)
    n = parse_round(sys.argv[1:], params, "python -m stages.round_data N")
    if n == 0:
        raise UserError("usage: python -m stages.round_data N (N: a round of iterate.rounds)")
    it, env = params.iterate, params.env
    device = resolve_device(params.device)
    vae, mdnrnn = load_world_model(params.vae.z_dim, n - 1)
    agent = load_agent(vae, mdnrnn, device=device, round=n - 1)
    agent = Noisy(agent, noise_std(it.action_noise, it.noise_on))
    previous = list_files(paths.round_latents(n - 1), "latent")
    seeds = track_seeds("collect", it.episodes, start=params.collect.episodes + (n - 1) * it.episodes)
    out = paths.round_latents(n)
    timer = Timer(f"round_data@{n}")
    with atomic_dir(out) as out_dir, scratch_dir(out / "frames") as frames_dir:
        with make_executor(
            env.backend,
            env.max_steps,
            params.collect.workers,
            params.threads,
            device=device,
            batches=batch_count(len(seeds), env.batch_size),
        ) as executor:
            rollouts = executor.collect(
                agent, seeds, env.batch_size, out_dir=frames_dir, desc=f"round {n}: collect"
            )
        for path in previous:  # the earlier rounds' data, then this round's episodes after them
            shutil.copyfile(path, out_dir / path.name)
        for i, path in enumerate(list_files(frames_dir, "episode")):
            encode_episode(
                vae, path, out_dir / episode_name(len(previous) + i), params.encode.batch_size, device
            )
    returns = [r.total_reward for r in rollouts]
    write_json(
        paths.round_metrics(n) / "collect.json",
        {
            "episodes": len(rollouts),
            "frames": sum(r.steps for r in rollouts) + len(rollouts),
            "total_episodes": len(previous) + len(rollouts),
            "mean_return": float(np.mean(returns)),  # the noisy agent's: data, never a score
            "std_return": float(np.std(returns)),
        },
    )
    timer.save()


if __name__ == "__main__":
    run()
