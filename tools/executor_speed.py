"""The trained controller driving N validate tracks through each executor of this machine, side by
side in one run (the executors take turns, so a machine whose speed drifts slows them alike):

    python -m tools.executor_speed 64 --backend gymnasium --repeats 3 [--rows K] --out reports/speed.json

`local` (the stage's own vector env: `evaluate.workers` env processes or threads, the policy in this
process) and `processes` (`evaluate.workers` worker processes of one CPU each, each with its own
env and policy: wm.executor.ProcessExecutor), each made as the stages make it, its start-up
included, the tracks in batches of `env.batch_size` as evaluate drives them; with `--rows K`, K
rows of them as one stream (wm.executor.drive_jobs), as evaluate drives its rows. Per executor: the
median seconds and env steps per second; the ratio processes / local; and whether every track's
return came out the same (it must: where it runs is not what it makes). Not a test.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

from wm.compute import use_threads
from wm.config import load_params
from wm.env import BACKENDS, track_seeds
from wm.errors import UserError, main
from wm.executor import Job, make_executor
from wm.io import write_json
from wm.world_model import load_agent, load_world_model

EXECUTORS = ("local", "processes")


def timed_drive(kind, agent, seeds, backend, params, rows):
    """(seconds, env steps, returns) of driving `seeds` `rows` times, as evaluate drives its rows,
    through the executor `kind`, start-up included."""
    os.environ["WM_EXECUTOR"] = kind
    start = time.perf_counter()
    workers = params.evaluate.workers
    with make_executor(
        backend, params.env.max_steps, workers, params.threads, device="cpu", batches=workers
    ) as executor:  # WM_EXECUTOR names the executor
        jobs = [Job(agent, seeds)] * rows
        rollouts = [r for row in executor.drive_jobs(jobs, params.env.batch_size, desc=kind) for r in row]
    return time.perf_counter() - start, sum(r.steps for r in rollouts), [r.total_reward for r in rollouts]


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=int)
    parser.add_argument("--backend", choices=BACKENDS, default="gymnasium")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rows", type=int, default=1, help="drive the tracks this many times, as evaluate's rows"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    use_threads(params.threads)
    agent = load_agent(*load_world_model(params.vae.z_dim))
    seeds = track_seeds("validate", args.tracks)
    runs = {kind: [] for kind in EXECUTORS}
    for _ in range(args.repeats):
        for kind in EXECUTORS:
            runs[kind].append(timed_drive(kind, agent, seeds, args.backend, params, args.rows))
    returns = {tuple(returns) for kind in EXECUTORS for _, _, returns in runs[kind]}
    if len(returns) != 1:
        raise UserError("the executors drove the same tracks to different returns")
    report = {
        kind: {
            "seconds": [round(seconds, 1) for seconds, _, _ in runs[kind]],
            "median_seconds": round(statistics.median(s for s, _, _ in runs[kind]), 1),
            "env_steps_per_second": round(statistics.median(n / s for s, n, _ in runs[kind]), 1),
        }
        for kind in EXECUTORS
    }
    report["processes_over_local"] = round(
        report["processes"]["median_seconds"] / report["local"]["median_seconds"], 3
    )
    report["same_returns"] = True
    report["setup"] = {
        "backend": args.backend,
        "tracks": args.tracks,
        "rows": args.rows,
        "batch_size": params.env.batch_size,
        "workers": params.evaluate.workers,
        "threads": params.threads,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
    }
    write_json(args.out, report)
    print(
        f"{args.rows} x {args.tracks} tracks on {args.backend}: local {report['local']['median_seconds']} s, "
        f"processes {report['processes']['median_seconds']} s (ratio {report['processes_over_local']})"
    )


if __name__ == "__main__":
    run()
