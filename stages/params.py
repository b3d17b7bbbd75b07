"""Stage params: validate params.yaml (every key, its type and range, and the rules across keys)
before any other stage runs. DVC deletes a stage's outputs just before it runs the stage, so a
typo caught inside the stage would already have cost them; every stage depends on this one, so
`dvc repro` and `dvc exp run` stop here, with every output and metric still in place.

outs: data/params.ok (always the same bytes: the stages depend on it for their order, not its content)
"""

from wm import paths
from wm.config import load_params
from wm.errors import main
from wm.io import atomic_path, resolve_device


@main
def run():
    resolve_device(load_params().device)  # a device this machine lacks stops here
    with atomic_path(paths.PARAMS_OK) as tmp:
        tmp.write_text("params.yaml: valid\n")


if __name__ == "__main__":
    run()
