"""Atomic file writes, JSON metrics and torch checkpoints.

Every writer in `wm` goes through `atomic_path` (a file) or `atomic_dir` (a directory of
them): the data lands under a temporary name on the same filesystem (`_temporary`) and is
renamed into place only once complete, so an interrupted stage never leaves a half-written
file for DVC to cache.
"""

import contextlib
import hashlib
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

from wm.errors import UserError

SCRATCH = Path(".dvc/tmp/wm")  # DVC's scratch directory, in the repo (so on its filesystem)


def _temporary(path):
    """A temporary name for writing `path` in this process, `<name>.tmp<pid>`: in DVC's scratch
    directory when `path` is in the repo we run in (a killed stage's temporaries then never
    show among the outputs, even when DVC restores those from its run cache and runs nothing
    of ours), else beside `path`. Temporaries of `path` that no running process owns (a killed
    stage's) are removed first."""
    full, root = path.resolve(), Path.cwd().resolve()
    if SCRATCH.parent.is_dir() and full.is_relative_to(root):
        SCRATCH.mkdir(exist_ok=True)
        tmp = SCRATCH / f"{str(full.relative_to(root)).replace(os.sep, '__')}.tmp"
    else:
        tmp = path.with_name(f".{path.name}.tmp")
    for stale in tmp.parent.glob(f"{tmp.name}*"):
        pid = stale.name.rsplit(".tmp", 1)[1]
        if not (pid.isdigit() and _running(int(pid))):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return tmp.with_name(f"{tmp.name}{os.getpid()}")


def _running(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path for `path` (`_temporary`); rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, data):
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_tsv(path, header, rows):
    """Write rows of values as tab-separated text under a header line, atomically."""
    lines = ["\t".join(header)] + ["\t".join(map(str, row)) for row in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def save_checkpoint(path, config, state_dict, **extra):
    """Save a model as `{"config": dict, "state_dict": ...}` plus plain-data extras, atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({"config": dict(config), "state_dict": state_dict, **extra}, tmp)


def load_checkpoint(path):
    """Load a checkpoint saved by `save_checkpoint` (weights_only: a pulled file cannot run code)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found (run the stage that makes it: dvc repro)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise UserError(
            f"{path}: {_what_is_wrong(path)} ({type(err).__name__}); rerun the stage that makes it"
        ) from None
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= checkpoint.keys():
        raise UserError(f"{path}: not a World Models checkpoint (no config/state_dict)")
    return checkpoint


def _what_is_wrong(path):
    """Why a checkpoint file does not load, from its bytes: torch.save writes a zip archive."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        return "not a checkpoint (not the zip archive torch.save writes)"
    if not zipfile.is_zipfile(path):
        return "truncated or damaged checkpoint (its zip archive is incomplete)"
    return "refused checkpoint (it holds objects other than tensors and plain data, which could run code)"


def fingerprint(value, files=()):
    """md5 hex of a JSON-able `value` and the bytes of `files` (a directory: every file under
    it, in sorted order): what a resumable run checks before it trusts its saved progress."""
    md5 = hashlib.md5(json.dumps(value, sort_keys=True).encode())
    for path in map(Path, files):
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                md5.update(str(file).encode())
                with open(file, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        md5.update(block)
    return md5.hexdigest()


def run_fingerprint(stage_file, value, inputs=()):
    """The fingerprint of a stage's run: its `value` (the params it reads), its `inputs` and its
    code, the stage's own file and every module of wm/, so saved progress is trusted only by a run
    of the same params, inputs and code."""
    code = [Path("stages") / Path(stage_file).name, *sorted(Path("wm").glob("*.py"))]
    return fingerprint(value, [*inputs, *code])


def resolve_device(name):
    """Map the `device` param to a torch device: auto picks cuda, then mps, then cpu. A device
    this machine does not have is one line naming it (the params stage asks first, before DVC
    deletes anything)."""
    import torch

    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(device for device, there in available.items() if there))
    if not available.get(name, False):
        raise UserError(
            f"params.yaml: device is {name} but this machine has no {name.upper()} device "
            f"(it has: {', '.join(d for d, there in available.items() if there)}; device: auto picks one)"
        )
    return torch.device(name)


class Timer:
    """Wall-clock seconds of a stage since construction. `save(**figures)` writes them, with any
    rates, to timings/<stage>.json: outside DVC's outs and git, so a rerun that makes the same
    bytes changes neither dvc.lock nor the tracked metrics."""

    def __init__(self, stage):
        self.stage, self.start = stage, time.perf_counter()

    @property
    def seconds(self):
        return round(time.perf_counter() - self.start, 2)

    def save(self, **figures):
        from wm import paths

        write_json(paths.TIMINGS / f"{self.stage}.json", {"seconds": self.seconds, **figures})


def load_model(path, cls, z_dim=None):
    """Rebuild a `cls` model (ConvVAE, MDNRNN) from its checkpoint, in eval mode.

    With `z_dim`, a checkpoint trained for another latent width is an error naming the file.
    """
    checkpoint = load_checkpoint(path)
    saved = checkpoint["config"].get("z_dim")
    if z_dim is not None and saved != z_dim:
        raise UserError(
            f"{path}: checkpoint has z_dim={saved}, expected z_dim={z_dim} "
            f"(from params.yaml or the VAE); rerun the stage that makes it"
        )
    try:
        model = cls(**checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError) as err:
        raise UserError(f"{path}: does not hold a {cls.__name__} ({str(err).splitlines()[0]})") from None
    return model.eval()


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a fresh temporary directory for `path` (`_temporary`); it replaces `path` if the block
    succeeds.

    A stage writing many files (episodes, latents) fills the temporary directory, so an
    interrupted run leaves no half-filled output directory behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir(path) as tmp:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)


@contextlib.contextmanager
def scratch_dir(path):
    """Yield a fresh temporary directory named for `path` (`_temporary`), removed after the block
    (or, if the process is killed, by the next one named for `path`)."""
    tmp = _temporary(Path(path))
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_live(directory):
    """A dvclive logger writing metrics.json and plots/ under `directory` (the stage declares
    them in dvc.yaml, so dvclive does not edit dvc.yaml or make experiments itself)."""
    from dvclive import Live

    return Live(str(directory), save_dvc_exp=False, dvcyaml=None, report=None)
