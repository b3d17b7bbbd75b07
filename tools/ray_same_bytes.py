"""A profile run twice, once in-process and once with its env-bound stages on a two-node Ray cluster
on this machine, and what each stage took and whether every output came out the same:

    python -m tools.ray_same_bytes --profile profiles/paper_short.yaml --out reports/ray_paper_short.json

In a fresh clone of this repo (a scratch directory, removed at the end unless --keep): the
profile becomes params.yaml, `dvc repro` runs every stage locally (timed per stage), the result
is committed, then collect, controller, controller_z and evaluate run again with `--force` on
two Ray nodes of `--cpus` CPUs each (tools/ray_cluster, `--isolated`: a network namespace with
only loopback, as root). The same params give the same bytes if `git status` is clean after the
cluster's run: dvc.lock (every out's md5) and every metric unchanged. Not a test: it takes the
profile's time twice.

With `--keep DIR` the run can be cut and started again with the same command: it goes on in
DIR's clone, skipping the stages already timed (tools.timed_repro --resume; a stage cut mid-way
runs again, and CMA-ES resumes at its last generation).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_BOUND = ["collect", "controller", "controller_z", "evaluate"]


def sh(directory, *command):
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stdout + result.stderr)[-3000:]
        sys.exit(f"error: {' '.join(command)} failed in {directory}:\n{said}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each of the two nodes")
    parser.add_argument(
        "--keep", type=Path, help="run in this directory and keep it (the same command again goes on)"
    )
    args = parser.parse_args()
    if not args.profile.is_file():
        sys.exit(f"error: {args.profile}: no such profile")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="ray_same_bytes_"))
    clone = scratch / "repo"
    if not (clone / ".git").is_dir():
        sh(ROOT, "git", "clone", "-q", str(ROOT), str(clone))
        (clone / "params.yaml").write_text(args.profile.read_text())
        sh(clone, "git", "commit", "-qam", f"profile {args.profile.name}")
    elif (clone / "params.yaml").read_text() != args.profile.read_text():
        sys.exit(f"error: {clone} runs another profile than {args.profile}; remove it or --keep elsewhere")
    env = {**os.environ, "WM_EXECUTOR": "local"}
    timed = [sys.executable, "-m", "tools.timed_repro", "--resume"]
    if sh(clone, "git", "log", "-1", "--format=%s").strip() != "local run":
        local = subprocess.run([*timed, "--out", str(scratch / "local.json")], cwd=clone, env=env)
        if local.returncode != 0:
            sys.exit(f"error: the local run failed (in {clone})")
        sh(clone, "git", "add", "-A")
        sh(clone, "git", "commit", "-qm", "local run")
    on_cluster = [
        sys.executable,
        "-m",
        "tools.ray_cluster",
        "--isolated",
        "--nodes",
        "2",
        "--cpus",
        str(args.cpus),
    ]
    forced = [*timed, "--force", "--stages", ",".join(ENV_BOUND), "--out", str(scratch / "ray.json")]
    ray = subprocess.run([*on_cluster, "--", *forced], cwd=clone, env=env)
    if ray.returncode != 0:
        sys.exit(f"error: the run on the cluster failed (in {clone})")
    changed = sh(clone, "git", "status", "--porcelain").splitlines()
    local_seconds = json.loads((scratch / "local.json").read_text())
    ray_seconds = json.loads((scratch / "ray.json").read_text())
    result = {
        "profile": str(args.profile),
        "cluster": f"2 nodes x {args.cpus} CPU, on this machine",
        "identical": not changed,
        "changed_files": changed,
        "seconds": {
            stage: {"local": local_seconds[stage]["seconds"], "ray": ray_seconds[stage]["seconds"]}
            for stage in ENV_BOUND
        },
        "local_total_seconds": local_seconds["total_seconds"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(scratch)])
    sys.exit(0 if not changed else 1)


if __name__ == "__main__":
    main()
