"""What the end-to-end tests share: a fresh copy of this repo with its own git and DVC remote,
`dvc repro` on the smoke profile (the `repo` fixture, tests/conftest.py), and helpers to run
commands in it, compare its outputs byte for byte and put it back as the fixture made it."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "params",
    "ppo",
    "ppo_baseline",
    "collect",
    "vae",
    "encode",
    "mdnrnn",
    "controller",
    "controller_z",
    "evaluate",
    "dream",
]
VAE_DOWNSTREAM = {"vae", "encode", "mdnrnn", "controller", "controller_z", "evaluate", "dream"}
OUTS = [
    "models/ppo.pt",
    "models/ppo_baseline.pt",
    "data/rollouts",
    "models/vae.pt",
    "data/latents",
    "models/mdnrnn.pt",
    "models/controller.pt",
    "models/controller_z.pt",
    "metrics/eval_drive.mp4",
    "metrics/dream.mp4",
]
METRICS = [
    "metrics/ppo/metrics.json",
    "metrics/ppo_baseline/metrics.json",
    "metrics/collect.json",
    "metrics/vae/metrics.json",
    "metrics/encode.json",
    "metrics/mdnrnn/metrics.json",
    "metrics/controller/metrics.json",
    "metrics/controller_z/metrics.json",
    "metrics/eval.json",
    "metrics/dream.json",
]
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "DVC_NO_ANALYTICS": "1",
    "SDL_VIDEODRIVER": "dummy",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run(cwd, *args, check=True):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def stages_run(output):
    return re.findall(r"Running stage '(\w+)'", output)


def digest(repo, outs=OUTS):
    """md5 of every file under the outs, by relative path."""
    hashes = {}
    for out in outs:
        path = repo / out
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            if file.is_file():
                hashes[str(file.relative_to(repo))] = hashlib.md5(file.read_bytes()).hexdigest()
    return hashes


def make_repo(base):
    """A fresh copy of the project's files under `base`/repo with its own git repo and remote,
    after `dvc repro` on the smoke profile."""
    repo = base / "repo"
    files = run(ROOT, "git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    for name in files:
        if (
            (ROOT / name).is_file()
            and not name.startswith(("data/", "models/", "metrics/"))
            and name != "dvc.lock"
        ):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    shutil.copy(repo / "profiles" / "smoke.yaml", repo / "params.yaml")
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "remote", "add", "-f", "-d", "local", str(base / "remote"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "smoke")
    result = run(repo, "dvc", "repro")
    assert sorted(stages_run(result.stdout)) == sorted(STAGES)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "repro")
    return repo


def error_of(result):
    """The stage's error line; asserts it failed with one line and no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def leftovers(repo):
    return [p for p in repo.rglob(".*tmp*") if ".dvc" not in p.parts and ".git" not in p.parts]


def processes(pattern, *, under=None, cwd=None):
    """PIDs of the processes whose command line matches the regex `pattern`, kept to the
    descendants of pid `under` and/or to those working in directory `cwd`: a test touches its own
    processes only, never those of another run on the same machine."""
    table = {}  # pid -> (parent pid, command line, working directory)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = b" ".join(a for a in (entry / "cmdline").read_bytes().split(b"\0") if a)
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            where = os.readlink(entry / "cwd") if cwd is not None else None
        except OSError:  # it ended meanwhile, or is not ours to read
            continue
        table[int(entry.name)] = (parent, command.decode(errors="replace").strip(), where)

    def descends(pid):
        while pid > 1 and pid != under:
            pid = table.get(pid, (0,))[0]
        return pid == under

    return sorted(
        pid
        for pid, (parent, command, where) in table.items()
        if re.search(pattern, command)
        and (under is None or descends(parent))
        and (cwd is None or where == str(Path(cwd).resolve()))
    )


def edit_params(repo, group, **values):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[group].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def restore(repo):
    """Back to the fixture's commit: params, metrics and dvc.lock from git (files a test's run
    added removed, e.g. a metric the fixture's params do not log), outs from the cache."""
    run(repo, "git", "checkout", "--", ".")
    run(repo, "git", "clean", "-fdq")
    run(repo, "dvc", "checkout", "-f")
    assert not run(repo, "git", "status", "--porcelain").stdout.strip()
