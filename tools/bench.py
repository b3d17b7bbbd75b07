"""Throughput of every hot path against the limit it runs against, measured side by side:

    python -m tools.bench [--repeats 3] [--out metrics/bench.json]

Each figure is the median of `--repeats` runs; each ratio divides a pipeline path by its limit
measured in the same run (noisy shared machines make absolute times unreliable; ratios hold).
Model sizes come from params.yaml. Takes about 6 minutes on 2 CPU cores. Not a test.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wm.agents import RandomPolicy, ReplayPolicy
from wm.config import load_params
from wm.controller import Controller
from wm.data import sequence_batches
from wm.dream import dream_returns
from wm.env import ACTION_DIM, ACTION_LOW, BACKENDS
from wm.episodes import Latents, load_episode, load_latents, save_latents
from wm.errors import main
from wm.executor import Population
from wm.io import open_live, write_json
from wm.mdnrnn import MDNRNN, mdnrnn_loss
from wm.rollout import collect, drive
from wm.train_mdnrnn import train_mdnrnn
from wm.train_vae import train_vae
from wm.vae import ConvVAE, encode_frames, to_input, vae_loss
from wm.vector_env import make_vector_env
from wm.world_model import WorldModelAgent

STEPS = 100  # steps per benchmark episode
CORES = os.cpu_count() or 1


def median_time(fn, repeats):
    """Median wall seconds of `repeats` calls of fn() (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_env_rate(backend, threads, batch, repeats):
    """Env steps/s with no policy to speak of: `batch` tracks driven by fixed random actions
    (light braking) until each episode ends."""
    high = [1.0, 1.0, 0.2]  # steer, gas, brake: braking at most 0.2, so the car moves
    actions = (
        np.random.default_rng(0).uniform(ACTION_LOW, high, (STEPS, batch, ACTION_DIM)).astype(np.float32)
    )
    with make_vector_env(backend, STEPS, threads) as venv:
        steps = {}

        def run():
            steps["n"] = sum(r.steps for r in drive(venv, ReplayPolicy(actions), list(range(batch)), batch))

        seconds = median_time(run, repeats)
    return steps["n"] / seconds


def collect_rate(backend, threads, batch, out_dir, repeats):
    """Env steps/s of the collect path: random policy, recording, and compressing and writing
    the files in a background writer thread, as stages/collect.py does."""
    seeds = list(range(batch))
    with make_vector_env(backend, STEPS, threads) as venv:
        steps = {}

        def run():
            steps["n"] = sum(
                r.steps for r in collect(venv, RandomPolicy(), seeds, batch_size=batch, out_dir=out_dir)
            )

        seconds = median_time(run, repeats)
    return steps["n"] / seconds


def controller_rate(backend, threads, batch, vae, mdnrnn, repeats):
    """Env steps/s of CMA-ES candidate evaluation: a batch of world-model agents, each with its
    own controller, driving the real env."""
    controller = Controller(vae.z_dim, mdnrnn.hidden)
    params = np.random.default_rng(0).standard_normal((batch, controller.size)) * 0.1
    agent = WorldModelAgent(vae, mdnrnn, controller)
    with make_vector_env(backend, STEPS, threads) as venv:
        steps = {}

        def run():
            rollouts = drive(venv, Population(agent, params), list(range(batch)), batch)
            steps["n"] = sum(r.steps for r in rollouts)

        seconds = median_time(run, repeats)
    return steps["n"] / seconds


def vae_rates(vae, files, n_frames, batch_size, repeats, work):
    """(pipeline img/s, limit img/s): train_vae streaming the files for one epoch, against the
    same model's forward+backward+step on batches already in memory."""
    with open_live(work / "live_vae") as live:
        pipeline = n_frames / median_time(
            lambda: train_vae(
                vae,
                files,
                [],
                n_train_frames=n_frames,
                epochs=1,
                batch_size=batch_size,
                buffer_episodes=64,
                learning_rate=1e-4,
                kl_tolerance=0.5,
                device="cpu",
                live=live,
                seed=0,
            ),
            repeats,
        )
    frames = torch.from_numpy(np.concatenate([load_episode(path).obs for path in files]))
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-4)

    def pure():
        for batch in frames.split(batch_size):
            x = to_input(batch, "cpu")
            recon, mu, logvar = vae(x)
            loss = vae_loss(recon, x, mu, logvar, 0.5).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return pipeline, len(frames) / median_time(pure, repeats)


def encode_rates(vae, files, out_dir, batch_size, repeats):
    """(pipeline img/s, limit img/s): the encode stage's loop (read, encode, write) against
    encoding frames already in memory."""
    n_frames = sum(len(load_episode(path).obs) for path in files)

    def pipeline():
        for path in files:
            episode = load_episode(path)
            mu, logvar = encode_frames(vae, episode.obs, batch_size, "cpu")
            save_latents(
                out_dir / path.name, Latents(mu, logvar, episode.action, episode.reward, episode.done)
            )

    frames = np.concatenate([load_episode(path).obs for path in files])
    return (
        n_frames / median_time(pipeline, repeats),
        len(frames) / median_time(lambda: encode_frames(vae, frames, batch_size, "cpu"), repeats),
    )


def mdnrnn_rates(mdnrnn, files, seq_len, batch_size, repeats, work):
    """(pipeline seq/s, limit seq/s): train_mdnrnn streaming latent files for one epoch, against
    forward+backward+step on the same sequences already in memory as tensors."""
    batches = list(sequence_batches(files, mdnrnn.z_dim, seq_len, batch_size, 256, np.random.default_rng(0)))
    n_sequences = sum(len(b["z"]) for b in batches)
    with open_live(work / "live_mdnrnn") as live:
        pipeline = n_sequences / median_time(
            lambda: train_mdnrnn(
                mdnrnn,
                files,
                [],
                epochs=1,
                seq_len=seq_len,
                batch_size=batch_size,
                buffer_episodes=256,
                learning_rate=1e-3,
                grad_clip=1.0,
                device="cpu",
                live=live,
                seed=0,
            ),
            repeats,
        )
    tensors = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches]
    optimizer = torch.optim.Adam(mdnrnn.parameters(), lr=1e-3)

    def pure():
        for b in tensors:
            prediction, _ = mdnrnn(b["z"][:, :-1], b["action"])
            loss = mdnrnn_loss(prediction, b["z"][:, 1:], b["reward"], b["done"], b["mask"]).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return pipeline, n_sequences / median_time(pure, repeats)


def full_length_latents(files, steps):
    """The encoded benchmark episodes tiled to `steps` steps, rewritten in place, so the MDN-RNN
    trains on sequences of the profile's length and count, not on short benchmark episodes."""
    for path in files:
        latents = load_latents(path)
        repeats = -(-steps // len(latents.action))
        save_latents(
            path,
            Latents(
                np.tile(latents.mu, (repeats, 1))[: steps + 1],
                np.tile(latents.logvar, (repeats, 1))[: steps + 1],
                np.tile(latents.action, (repeats, 1))[:steps],
                np.tile(latents.reward, repeats)[:steps],
                np.zeros(steps, dtype=bool),
            ),
        )
    return files


def dream_rate(mdnrnn, z_dim, batch, repeats):
    controller = Controller(z_dim, mdnrnn.hidden)
    params = np.random.default_rng(0).standard_normal((batch, controller.size)).astype(np.float32) * 0.1
    z0, steps = torch.randn(batch, z_dim), 100
    return (
        batch
        * steps
        / median_time(lambda: dream_returns(mdnrnn, controller, params, z0, steps=steps, tau=1.0), repeats)
    )


def noop_repro_seconds(repeats):
    """Wall time of `dvc repro` when nothing changed, or None if this checkout is not up to date."""
    status = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        return None
    return median_time(lambda: subprocess.run(["dvc", "repro"], capture_output=True, check=True), repeats)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench.json"))
    args = parser.parse_args()
    params = load_params()
    torch.manual_seed(0)
    vae = ConvVAE(params.vae.z_dim)
    mdnrnn = MDNRNN(params.vae.z_dim, hidden=params.mdnrnn.hidden, mixtures=params.mdnrnn.mixtures)
    batch, r = params.env.batch_size, args.repeats
    results = {"cores": CORES, "repeats": r, "episode_steps": STEPS, "env_batch": batch}
    work = Path(tempfile.mkdtemp(prefix="wm-bench-"))
    try:
        for backend in BACKENDS:
            for threads in sorted({1, CORES}):
                results[f"env/{backend}/{threads}_cores_steps_per_s"] = raw_env_rate(
                    backend, threads, batch, r
                )
                rate = results[f"env/{backend}/{threads}_cores_steps_per_s"]
                print(f"env {backend} x{threads}: {rate:.0f} steps/s")
            (work / backend).mkdir()
            limit = results[f"env/{backend}/{CORES}_cores_steps_per_s"]
            rate = collect_rate(backend, CORES, batch, work / backend, r)
            results[f"collect/{backend}_steps_per_s"] = rate
            results[f"collect/{backend}_ratio"] = rate / limit
            print(f"collect {backend}: {rate:.0f} steps/s, {rate / limit:.2f} of raw env")
            with torch.inference_mode():
                rate = controller_rate(backend, CORES, batch, vae.eval(), mdnrnn.eval(), r)
            results[f"controller/{backend}_steps_per_s"] = rate
            results[f"controller/{backend}_ratio"] = rate / limit
            print(f"controller eval {backend}: {rate:.0f} steps/s, {rate / limit:.2f} of raw env")
        files = sorted((work / "envpool").glob("episode_*.npz"))
        n_frames = sum(len(load_episode(path).obs) for path in files)
        pipeline, limit = vae_rates(vae.train(), files, n_frames, params.vae.batch_size, r, work)
        results.update(
            {"vae/img_per_s": pipeline, "vae/limit_img_per_s": limit, "vae/ratio": pipeline / limit}
        )
        print(f"vae train: {pipeline:.0f} img/s, {pipeline / limit:.2f} of in-memory ({limit:.0f})")
        (work / "latents").mkdir()
        pipeline, limit = encode_rates(vae.eval(), files, work / "latents", params.encode.batch_size, r)
        results.update(
            {"encode/img_per_s": pipeline, "encode/limit_img_per_s": limit, "encode/ratio": pipeline / limit}
        )
        print(f"encode: {pipeline:.0f} img/s, {pipeline / limit:.2f} of in-memory ({limit:.0f})")
        latents = full_length_latents(sorted((work / "latents").glob("episode_*.npz")), params.env.max_steps)
        pipeline, limit = mdnrnn_rates(
            mdnrnn.train(), latents, params.mdnrnn.seq_len, params.mdnrnn.batch_size, r, work
        )
        results.update(
            {"mdnrnn/seq_per_s": pipeline, "mdnrnn/limit_seq_per_s": limit, "mdnrnn/ratio": pipeline / limit}
        )
        print(f"mdnrnn train: {pipeline:.1f} seq/s, {pipeline / limit:.2f} of in-memory ({limit:.1f})")
        results["dream/agent_steps_per_s_batch_1024"] = dream_rate(mdnrnn.eval(), params.vae.z_dim, 1024, r)
        print(f"dream: {results['dream/agent_steps_per_s_batch_1024']:.0f} agent-steps/s at batch 1024")
        results["dvc/noop_repro_seconds"] = noop_repro_seconds(r)
        print(f"no-op dvc repro: {results['dvc/noop_repro_seconds']} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(args.out, {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run()
