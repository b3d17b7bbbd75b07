"""Run the pipeline stage by stage (`dvc repro -s`), timing each, and write the wall times and
peak memory.

    python -m tools.timed_repro --out reports/timings_default.json [--force] [--stages a,b]

Each stage's time is the whole `dvc repro -s <stage>` command: interpreter start-up, imports,
the work and DVC's hashing and caching. Peak memory is the largest resident set of any process
of the stage (os.wait4, as GNU time reports it). Prints a Markdown table for the README.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="rerun stages even if up to date")
    parser.add_argument("--stages", help="comma-separated stages to run, in order (default: all)")
    args = parser.parse_args()
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    if args.stages:
        unknown = sorted(set(args.stages.split(",")) - set(stages))
        if unknown:
            sys.exit(f"error: unknown stage {unknown[0]} (stages: {', '.join(stages)})")
        stages = args.stages.split(",")
    timings = {}
    for stage in stages:
        start = time.perf_counter()
        command = ["dvc", "repro", "-s", stage] + (["-f"] if args.force else [])
        process = subprocess.Popen(command, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"error: stage {stage} failed; timings so far: {timings}")
        timings[stage] = {
            "seconds": round(time.perf_counter() - start, 1),
            "peak_memory_mb": round(usage.ru_maxrss / 1024),
        }
    timings["total_seconds"] = round(sum(t["seconds"] for t in timings.values()), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(timings, indent=2) + "\n")
    print("| stage | wall time (s) | peak memory (MB) |\n|---|---|---|")
    for stage in stages:
        print(f"| {stage} | {timings[stage]['seconds']} | {timings[stage]['peak_memory_mb']} |")
    print(f"| total | {timings['total_seconds']} | |")


if __name__ == "__main__":
    main()
