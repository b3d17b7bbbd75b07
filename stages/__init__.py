"""One thin script per DVC stage (`python -m stages.<name>`): read params, call wm, write outs."""

from wm.compute import pin_kernels
from wm.errors import require_installed

require_installed()
pin_kernels()  # before any stage imports numpy or torch
