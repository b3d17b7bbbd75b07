"""One thin script per DVC stage (`python -m stages.<name>`): read params, call wm, write outs."""

from wm.errors import require_installed

require_installed()
