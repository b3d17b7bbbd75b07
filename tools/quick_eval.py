"""Mean real return of a trained controller on N validation tracks, on envpool by default (fast;
the evaluate stage is the reference, on gymnasium). For trying levers, run in a workspace with
models/ and params.yaml:

    python -m tools.quick_eval 64 [--z-only] [--backend gymnasium] [--block validate]

The tracks come from the `validate` seed block, which no stage uses: choosing between levers on
the test tracks would make the test returns a measure of that choice, not of held-out tracks.
`--block test` gives the test tracks' returns (what evaluate reports) for a finished choice.
"""

import argparse

import numpy as np

from wm.config import load_params
from wm.env import BACKENDS, track_seeds
from wm.errors import main
from wm.rollout import drive
from wm.vector_env import make_vector_env
from wm.world_model import load_agent, load_world_model


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=int)
    parser.add_argument("--z-only", action="store_true", help="models/controller_z.pt")
    parser.add_argument("--backend", choices=BACKENDS, default="envpool")
    parser.add_argument("--block", choices=("validate", "test"), default="validate")
    args = parser.parse_args()
    params = load_params()
    agent = load_agent(*load_world_model(params.vae.z_dim), inputs="z" if args.z_only else "zh")
    with make_vector_env(args.backend, params.env.max_steps, 2) as venv:
        returns = [
            r.total_reward
            for r in drive(venv, agent, track_seeds(args.block, args.tracks), params.env.batch_size)
        ]
    summary = f"mean {np.mean(returns):.1f} +- {np.std(returns):.1f}, min {np.min(returns):.1f}"
    print(f"{args.tracks} {args.block} tracks ({args.backend}): {summary}")


if __name__ == "__main__":
    run()
