"""PPO's training speed on gymnasium (SubprocVecEnv) and on envpool (wm.ppo.EnvpoolVecEnv), side by
side in one run: the `ppo` params of params.yaml, `--timesteps` steps each, the backends
alternated `--repeats` times; the medians and their ratio go to `--out`.

    python -m tools.ppo_speed [--timesteps 8192] [--repeats 3] [--out reports/ppo_speed.json]

Each run is the whole of wm.ppo.train_ppo (env start-up, rollouts, gradient steps, the periodic
evaluations on gymnasium, which both backends share) with no saving of progress. What the two
train to is measured by the pipeline itself (`dvc exp run -S ppo.backend=envpool`, then the
`ppo` row of metrics/eval.json). Not a test.
"""

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from wm.compute import use_threads
from wm.config import load_params
from wm.env import BACKENDS
from wm.errors import main
from wm.io import open_live, resolve_device, write_json
from wm.ppo import train_ppo


def one_run(cfg, params, directory):
    with open_live(directory / "metrics") as live:
        start = time.perf_counter()
        train_ppo(
            cfg,
            params.env.max_steps,
            params.seed,
            resolve_device(params.device),
            directory / "ppo.pt",
            live,
            threads=params.threads,
        )
        return time.perf_counter() - start


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/ppo_speed.json"))
    args = parser.parse_args()
    params = load_params()
    use_threads(params.threads)
    seconds = {backend: [] for backend in BACKENDS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for backend in BACKENDS:
                cfg = dataclasses.replace(params.ppo, timesteps=args.timesteps, backend=backend)
                seconds[backend].append(one_run(cfg, params, Path(scratch) / f"{backend}{repeat}"))
                print(f"{backend}: {seconds[backend][-1]:.1f} s for {args.timesteps} timesteps")
    medians = {backend: statistics.median(values) for backend, values in seconds.items()}
    result = {
        "timesteps": args.timesteps,
        "n_envs": params.ppo.n_envs,
        "seconds": seconds,
        "steps_per_second": {b: round(args.timesteps / m, 1) for b, m in medians.items()},
        "speedup_envpool": round(medians["gymnasium"] / medians["envpool"], 2),
    }
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    run()
