"""Command-line tools beside the pipeline, run from the repo root as `python -m tools.<name>`:
play (watch an agent drive), quick_eval (a controller on N test tracks), bench (throughput),
fidelity (envpool against gymnasium), timed_repro (wall time and memory per stage)."""

from wm.compute import pin_kernels
from wm.errors import require_installed

require_installed()
pin_kernels()  # the stages' kernels, so a tool measures what they compute
