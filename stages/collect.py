"""Stage collect: drive the chosen policy (PPO, random or a per-track mix) on batches of tracks
through the vector env, one compressed .npz per episode.

outs: data/rollouts/episode_XXXXX.npz; metrics/collect.json
"""

import numpy as np

from wm import paths
from wm.agents import build_policy, noise_std
from wm.compute import use_threads
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import main
from wm.executor import batch_count, make_executor
from wm.io import Timer, atomic_dir, write_json


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.collect
    policy = build_policy(
        cfg.policy,
        action_noise=noise_std(cfg.action_noise, cfg.noise_on),
        ppo_fraction=cfg.ppo_fraction,
        takeover=cfg.random_takeover,
    )
    timer = Timer("collect")
    env = params.env
    with (
        atomic_dir(paths.ROLLOUTS) as out_dir,
        # its policies (wm.agents: PPO, random) act on the CPU, whatever the `device` param
        make_executor(
            env.backend,
            env.max_steps,
            cfg.workers,
            params.threads,
            device="cpu",
            batches=batch_count(cfg.episodes, env.batch_size),
        ) as executor,
    ):
        seeds = track_seeds("collect", cfg.episodes)
        rollouts = executor.collect(policy, seeds, env.batch_size, out_dir=out_dir, desc="collect")
    steps = sum(r.steps for r in rollouts)
    returns = [r.total_reward for r in rollouts]
    write_json(
        paths.COLLECT_METRICS,
        {
            "episodes": len(rollouts),
            "frames": steps + len(rollouts),
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
        },
    )
    timer.save(steps_per_second=round(steps / timer.seconds, 1))


if __name__ == "__main__":
    run()
