"""md5 of every output of a `dvc repro` of the smoke profile, for checking that a change leaves
the outputs as they were (or that two runs give the same bytes):

    python -m tools.smoke_digest --out before.json [--rev HEAD~1] [--profile profiles/smoke.yaml]
    python -m tools.smoke_digest --compare before.json after.json

The repro runs in a temporary copy (the working tree, or the commit `--rev`) with its own git
repo, so this checkout is not touched. Metrics are digested without their wall-clock keys
(seconds, rates), which differ between any two runs.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wm.errors import UserError, main

ROOT = Path(__file__).resolve().parents[1]
OUT_DIRS = ("data", "models", "metrics")
CLOCK_KEYS = ("seconds", "per_second")  # metric keys that hold wall-clock time


def without_clock(value):
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if not any(c in k for c in CLOCK_KEYS)}
    return value


def digest(repo):
    """{relative path: md5} of every file under the output directories; JSON metrics by content
    without their wall-clock keys."""
    hashes = {}
    for top in OUT_DIRS:
        for path in sorted((repo / top).rglob("*")):
            if not path.is_file() or path.name == ".gitignore":
                continue
            data = path.read_bytes()
            if path.suffix == ".json" and top == "metrics":
                data = json.dumps(without_clock(json.loads(data)), sort_keys=True).encode()
            hashes[str(path.relative_to(repo))] = hashlib.md5(data).hexdigest()
    return hashes


def copy_tree(rev, dst):
    """The working tree (rev None) or commit `rev`, without outputs or dvc.lock, into dst."""
    if rev:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    else:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for name in listed:
            if (ROOT / name).is_file():
                (dst / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, dst / name)
    (dst / "dvc.lock").unlink(missing_ok=True)
    for top in OUT_DIRS:
        for path in (dst / top).glob("*"):
            if path.name != ".gitignore":
                shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextlib.contextmanager
def project_copy(rev, profile):
    """A temporary copy of `rev` (None: the working tree) with `profile` as its params.yaml and
    its own git repo; yields (its path, the environment to run dvc and the stages in)."""
    with tempfile.TemporaryDirectory(prefix="wm-copy-") as tmp:
        repo = Path(tmp)
        copy_tree(rev, repo)
        shutil.copy(repo / profile, repo / "params.yaml")  # the profile as of that revision
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        git = ["git", "-c", "user.name=digest", "-c", "user.email=digest@localhost"]
        for command in (["git", "init", "-q"], ["git", "add", "-A"], git + ["commit", "-qm", "copy"]):
            subprocess.run(command, cwd=repo, env=env, check=True)
        yield repo, env


def repro(rev, profile):
    """Digest of a `dvc repro` of `profile` in a copy of `rev` (None: the working tree)."""
    with project_copy(rev, profile) as (repo, env):
        result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(
                f"dvc repro failed in the copy of {rev or 'the working tree'}: {result.stderr[-500:]}"
            )
        return digest(repo)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the digest here")
    parser.add_argument("--rev", help="a commit to digest instead of the working tree")
    parser.add_argument("--profile", default="profiles/smoke.yaml")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two digests")
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(path.read_text()) for path in args.compare)
        same = sorted(k for k in a.keys() & b.keys() if a[k] == b[k])
        differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
        only = sorted(a.keys() ^ b.keys())
        print(f"{len(same)} files identical, {len(differ)} differ, {len(only)} in one only")
        for name in differ:
            print(f"differs: {name}")
        for name in only:
            print(f"in one only: {name}")
        return
    if args.out is None:
        raise UserError("give --out (or --compare A B)")
    hashes = repro(args.rev, args.profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(hashes)} digests to {args.out}")


if __name__ == "__main__":
    run()
