"""Run the pipeline stage by stage (`dvc repro -s`), timing each, and write the wall times.

    python scripts/timed_repro.py --out reports/timings_default.json [--force]

Each stage's time is the whole `dvc repro -s <stage>` command: interpreter start-up, imports,
the work and DVC's hashing and caching. Prints a Markdown table for the README.
"""
import argparse
import json
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
    args = parser.parse_args()
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    timings = {}
    for stage in stages:
        start = time.perf_counter()
        command = ["dvc", "repro", "-s", stage] + (["-f"] if args.force else [])
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            sys.exit(f"error: stage {stage} failed; timings so far: {timings}")
        timings[stage] = round(time.perf_counter() - start, 1)
    timings["total"] = round(sum(timings.values()), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(timings, indent=2) + "\n")
    print("| stage | wall time (s) |\n|---|---|")
    for stage, seconds in timings.items():
        print(f"| {stage} | {seconds} |")


if __name__ == "__main__":
    main()
