"""Run the pipeline stage by stage (`dvc repro -s`), timing each, and write the wall times and
peak memory.

    python -m tools.timed_repro --out reports/timings_default.json [--force] [--stages a,b] [--resume]

Each stage's time is the whole `dvc repro -s <stage>` command: interpreter start-up, imports,
the work and DVC's hashing and caching. Peak memory is the largest resident set of any process
of the stage (os.wait4, as GNU time reports it). Prints a Markdown table for the README.

The out file is rewritten after every stage, so a run cut short keeps the times of the stages
it finished; `--resume` keeps those and runs only the others (a stage cut mid-way runs again:
the controller and PPO stages resume their own work, and its time is then that of the rerun).
All stages: dvc.yaml's, with the rounds of iterate.rounds (profiles/dream.yaml) one after another.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from wm.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def every_stage():
    """The stages of dvc.yaml in its order, foreach stages as DVC resolves them from params.yaml, and
    consecutive foreach stages (the rounds) item by item: round_data@1, round_mdnrnn@1,
    round_controller@1, round_data@2, ..., as each round starts from the one before."""
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        sys.exit(f"error: dvc stage list failed: {(listed.stderr.strip().splitlines() or ['?'])[-1]}")
    order, items = [], []
    for name in [*listed.stdout.split(), ""]:
        if "@" in name:
            items.append(name)
            continue
        keys = dict.fromkeys(item.partition("@")[2] for item in items)
        groups = dict.fromkeys(item.partition("@")[0] for item in items)
        order += [f"{g}@{k}" for k in keys for g in groups if f"{g}@{k}" in items]
        items = []
        order += [name] if name else []
    return order


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="rerun stages even if up to date")
    parser.add_argument(
        "--stages", help="comma-separated stages or foreach items (round_data@1), in order (default: all)"
    )
    parser.add_argument("--resume", action="store_true", help="skip the stages the out file already times")
    args = parser.parse_args()
    if args.stages:
        known = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
        # a foreach stage's items by name (round_data@1): `dvc repro -s` runs one item alone
        unknown = sorted({s for s in args.stages.split(",") if s.partition("@")[0] not in known})
        if unknown:
            sys.exit(f"error: unknown stage {unknown[0]} (stages: {', '.join(known)})")
        stages = args.stages.split(",")
    else:
        stages = every_stage()
    timings = {}
    if args.resume and args.out.is_file():
        try:
            timings = json.loads(args.out.read_text())
        except json.JSONDecodeError as err:
            sys.exit(f"error: {args.out}: not valid JSON ({err}); delete it or run without --resume")
    timings.pop("total_seconds", None)
    for stage in stages:
        if stage in timings:
            print(f"{stage}: timed already ({args.out}), skipped")
            continue
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
        write_json(args.out, timings)
    timings["total_seconds"] = round(sum(t["seconds"] for t in timings.values()), 1)
    write_json(args.out, timings)
    print("| stage | wall time (s) | peak memory (MB) |\n|---|---|---|")
    for stage in stages:
        print(f"| {stage} | {timings[stage]['seconds']} | {timings[stage]['peak_memory_mb']} |")
    print(f"| total | {timings['total_seconds']} | |")


if __name__ == "__main__":
    main()
