"""User-facing errors and the wrapper that turns them into one line and a non-zero exit."""

import functools
import importlib.util
import sys


class UserError(Exception):
    """A problem the user can fix (params, inputs, checkpoints). Printed as one line, no trace."""


def main(fn):
    """Decorate the function a stage or tool runs (`run()`): a UserError becomes
    `error: <message>` on stderr and exit code 1; Ctrl-C becomes `error: interrupted`, exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def require_installed(modules=("torch", "gymnasium", "cv2", "dvclive", "cma", "stable_baselines3")):
    """Exit with one line if this Python lacks the project's packages: DVC runs a stage's
    `python -m ...` with whatever `python` is first on PATH, which is not the venv's unless the
    venv is activated (or `make` runs it)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"error: {sys.executable} has no {missing[0]} module: activate the project's venv "
            f"(source .venv/bin/activate, after make setup) or run make repro",
            file=sys.stderr,
        )
        sys.exit(1)
