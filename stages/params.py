"""Stage params: validate params.yaml (every key, its type and range, and the rules across keys)
before any other stage runs. DVC deletes a stage's outputs just before it runs the stage, so a
typo caught inside the stage would already have cost them; every stage depends on this one, so
`dvc repro` and `dvc exp run` stop here, with every output and metric still in place.

outs: data/params.ok (always the same bytes: the stages depend on it for their order, not its content)
"""

from wm import paths
from wm.config import load_params
from wm.errors import UserError, main
from wm.io import atomic_path


def check_device(name):
    """Stop here, before DVC deletes anything, if the `device` param names a device this machine
    does not have (a stage would otherwise fail on its first tensor, with a traceback)."""
    import torch

    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name, True):  # "auto" picks one that is there
        raise UserError(
            f"params.yaml: device is {name} but this machine has no {name.upper()} device "
            f"(it has: {', '.join(n for n, ok in available.items() if ok)}; device: auto picks one)"
        )


@main
def run():
    check_device(load_params().device)
    with atomic_path(paths.PARAMS_OK) as tmp:
        tmp.write_text("params.yaml: valid\n")


if __name__ == "__main__":
    run()
