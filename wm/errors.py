"""User-facing errors and the wrapper that turns them into one line and a non-zero exit."""
import functools
import sys


class UserError(Exception):
    """A problem the user can fix (params, inputs, checkpoints). Printed as one line, no trace."""


def main(fn):
    """Decorate a stage's `main()`: a UserError becomes `error: <message>` and exit code 1."""

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
