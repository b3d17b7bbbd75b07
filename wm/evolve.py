"""CMA-ES (pycma) over the controller's flat parameter vector, candidates scored in the real env."""
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="Could not import matplotlib")  # cma's plots are unused
import cma  # noqa: E402

from wm.env import track_seeds
from wm.rollout import drive


def evolve_controller(venv, agent, batch_size, n_params, population, rollouts, generations, sigma0,
                      seed, live):
    """Evolve controller parameters with CMA-ES.

    Each generation, every candidate drives the same `rollouts` tracks (common random numbers,
    so candidates are compared on equal terms); `agent` (a WorldModelAgent) drives all of the
    generation's episodes through the vector env `venv`, `batch_size` at a time, each with its
    candidate's controller. A candidate's fitness is its mean return. Logs best/mean/worst
    per generation to `live`.
    Returns (best params (n_params,), its mean return): the best candidate seen in any generation.
    """
    es = cma.CMAEvolutionStrategy(np.zeros(n_params), sigma0,
                                  {"popsize": population, "seed": seed + 1, "verbose": -9})
    best_params, best_return = None, -np.inf
    for generation in range(generations):
        candidates = es.ask()  # population x (n_params,)
        seeds = track_seeds("controller", rollouts, start=generation * rollouts)
        rollout_seeds = [s for _ in candidates for s in seeds]
        rollout_params = [c for c in candidates for _ in seeds]
        results = drive(venv, agent, rollout_seeds, batch_size, params=np.stack(rollout_params),
                        desc=f"generation {generation + 1}/{generations}")
        returns = np.array([r.total_reward for r in results]).reshape(len(candidates), rollouts).mean(1)
        es.tell(candidates, (-returns).tolist())
        if returns.max() > best_return:
            best_return = float(returns.max())
            best_params = np.asarray(candidates[int(returns.argmax())], dtype=np.float32)
        live.log_metric("generation/best", float(returns.max()))
        live.log_metric("generation/mean", float(returns.mean()))
        live.log_metric("generation/worst", float(returns.min()))
        live.log_metric("best_so_far", best_return)
        live.next_step()
    return best_params, best_return
