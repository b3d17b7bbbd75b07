"""What the controller reads, along the collected episodes: how many of z's dimensions move, how
much of [z, h]'s variance the top k principal components hold, and how much of the trained
controller's action signal lives on them (the case for `controller.components`):

    python -m tools.input_components [--k 8 16 32 64] [--out reports/input_components.json]

Run in a workspace with data/latents, models/mdnrnn.pt and models/controller.pt. The inputs are
the stage's (wm.world_model.input_moments: each frame's z mean and the LSTM's h there). A
controller's action signal on an output is the variance of its pre-activation over the data,
w' C w; "kept by k" is that of its least-squares projection onto the k components (the start
wm.controller.Projection.reduced gives) over its own. Not a test.
"""

import argparse

import numpy as np

from wm import paths
from wm.config import load_params
from wm.controller import Projection, load_controller, principal_components
from wm.errors import main
from wm.io import write_json
from wm.world_model import input_moments, load_world_model


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--out", default="reports/input_components.json")
    args = parser.parse_args()
    params = load_params()
    _, mdnrnn = load_world_model(params.vae.z_dim)
    z_dim = params.vae.z_dim
    mean, cov = input_moments(mdnrnn.eval(), paths.LATENTS, z_dim)
    controller = load_controller(paths.CONTROLLER, z_dim, (mdnrnn.hidden,))
    values = np.sort(np.linalg.eigvalsh(cov))[::-1]
    out, inp = 3, z_dim + mdnrnn.hidden
    weight = controller.params[: out * inp].reshape(out, inp).astype(np.float64)
    signal = np.einsum("oi,ij,oj->o", weight, cov, weight)
    report = {
        "frames_mean_of": str(paths.LATENTS),
        "z_std_per_dimension": sorted(round(float(s), 3) for s in np.sqrt(np.diag(cov)[:z_dim])),
        "z_dimensions_with_std_above_0.1": int((np.sqrt(np.diag(cov)[:z_dim]) > 0.1).sum()),
        "variance_of_z": round(float(np.trace(cov[:z_dim, :z_dim])), 3),
        "variance_of_h": round(float(np.trace(cov[z_dim:, z_dim:])), 3),
        "controller_signal_from_z_alone": [
            round(float(w[:z_dim] @ cov[:z_dim, :z_dim] @ w[:z_dim] / s), 3) for w, s in zip(weight, signal)
        ],
        "k": {},
    }
    for k in args.k:
        search = Projection(controller, principal_components(mean, cov, k), mean)
        kept = search.full(search.reduced(controller.params))[0][: out * inp].reshape(out, inp)
        kept_signal = np.einsum("oi,ij,oj->o", kept.astype(np.float64), cov, kept.astype(np.float64))
        report["k"][str(k)] = {
            "searched_parameters": search.size,
            "variance_held": round(float(values[:k].sum() / values.sum()), 4),
            "controller_signal_kept": [round(float(v), 3) for v in kept_signal / signal],
        }
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    run()
