"""What the pinned kernels and thread counts cost (wm/compute.py): the controller stage timed with
them and without (`WM_KERNELS=native`), alternating, on the default profile's controller
workload (16 candidates x 4 tracks of 1,000 steps, batches of 32, envpool) for two generations:

    python -m tools.pin_cost [--generations 2] [--repeats 3] [--out reports/pin_cost.json]

Runs in a temporary copy of the working tree after a smoke-profile `dvc repro -s mdnrnn` there
(the world model's size does not change the cost much: the env and the VAE encoder dominate).
Prints the median seconds of each and their ratio, and whether both made the same controller.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from tools.smoke_digest import project_copy
from wm.compute import KERNEL_PINS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pins = tuple(KERNEL_PINS)  # this tool's own process pinned them: the stages decide for themselves
    with project_copy(None, "profiles/smoke.yaml") as (repo, env):
        base = {k: v for k, v in env.items() if k not in pins}
        for stage in ("params", "ppo", "collect", "vae", "encode", "mdnrnn"):
            subprocess.run(["dvc", "repro", "-s", stage], cwd=repo, env=base, check=True, capture_output=True)
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["env"].update(backend="envpool", max_steps=1000, batch_size=32)
        raw["controller"].update(
            population=16, rollouts=4, generations=args.generations, finalists=4, select_tracks=16, workers=2
        )
        (repo / "params.yaml").write_text(yaml.safe_dump(raw))
        seconds = {"pinned": [], "native": []}
        digests = {}
        for _ in range(args.repeats):
            for which in seconds:
                env = {**base, **({"WM_KERNELS": "native"} if which == "native" else {})}
                start = time.perf_counter()
                subprocess.run(
                    ["python", "-m", "stages.controller"], cwd=repo, env=env, check=True, capture_output=True
                )
                seconds[which].append(round(time.perf_counter() - start, 1))
                digests[which] = hashlib.md5((repo / "models/controller.pt").read_bytes()).hexdigest()
    medians = {which: statistics.median(times) for which, times in seconds.items()}
    result = {
        "seconds": seconds,
        "median_seconds": medians,
        "pinned_over_native": round(medians["pinned"] / medians["native"], 3),
        "same_controller": digests["pinned"] == digests["native"],
        "generations": args.generations,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
