"""Mean real return of the trained controller(s) on the first N test tracks, on envpool by
default (fast; the evaluate stage is the reference, on gymnasium). For quick lever
experiments, run in a workspace with models/ and params.yaml:

    python scripts/quick_eval.py 64 [--z-only] [--backend gymnasium]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wm import paths  # noqa: E402
from wm.agents import WorldModelAgent, load_world_model  # noqa: E402
from wm.config import load_params  # noqa: E402
from wm.controller import load_controller  # noqa: E402
from wm.env import track_seeds  # noqa: E402
from wm.rollout import drive  # noqa: E402
from wm.vector_env import make_vector_env  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=int)
    parser.add_argument("--z-only", action="store_true", help="models/controller_z.pt")
    parser.add_argument("--backend", choices=("envpool", "gymnasium"), default="envpool")
    args = parser.parse_args()
    params = load_params()
    agent = load_world_model(params.vae.z_dim)
    if args.z_only:
        agent = WorldModelAgent(agent.vae, agent.mdnrnn,
                                load_controller(paths.CONTROLLER_Z, params.vae.z_dim, (0,)))
    with make_vector_env(args.backend, params.env.max_steps, 2) as venv:
        returns = [r.total_reward for r in drive(venv, agent, track_seeds("test", args.tracks),
                                                 params.env.batch_size)]
    print(f"{args.tracks} test tracks ({args.backend}): mean {np.mean(returns):.1f} +- {np.std(returns):.1f}")
