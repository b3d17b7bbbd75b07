"""Stage ppo: train the Stable-Baselines3 PPO agent that drives the data collection.
Stage ppo_baseline (`python -m stages.ppo baseline`): the model-free baseline, the same PPO
trained from scratch for `ppo_baseline.timesteps`, set so that it gets the wall-clock budget
the world model's own training takes (README, "Results").

outs: models/ppo[_baseline].pt (the best evaluated policy, a plain checkpoint);
      metrics/ppo[_baseline]/ (dvclive)

A killed run resumes at the start of its last rollout and ends with the same bytes (wm.ppo).
"""

import dataclasses
import sys

import torch

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.errors import UserError, main
from wm.io import Timer, open_live, resolve_device, run_fingerprint
from wm.ppo import SavedRun, train_ppo


@main
def run():
    which = sys.argv[1:] or ["collect"]
    if which not in (["collect"], ["baseline"]):
        raise UserError(f"usage: python -m stages.ppo [baseline], got {' '.join(which)}")
    params = load_params()
    use_threads(params.threads)
    cfg, out, metrics_dir = params.ppo, paths.PPO_MODEL, paths.PPO_METRICS
    if which == ["baseline"]:
        cfg = dataclasses.replace(cfg, timesteps=params.ppo_baseline.timesteps)
        out, metrics_dir = paths.PPO_BASELINE_MODEL, paths.PPO_BASELINE_METRICS
    stage = "ppo" if which == ["collect"] else "ppo_baseline"
    timer = Timer(stage)
    # what the run depends on: its params and the code; a saved run of another is ignored
    run_params = {
        "seed": params.seed,
        "threads": params.threads,
        "device": params.device,
        "max_steps": params.env.max_steps,
        "ppo": dataclasses.asdict(cfg),
    }
    saved = SavedRun(paths.PROGRESS / f"{stage}.pt", run_fingerprint(__file__, run_params))
    torch.manual_seed(params.seed)
    with open_live(metrics_dir) as live:
        best = train_ppo(
            cfg,
            params.env.max_steps,
            params.seed,
            resolve_device(params.device),
            out,
            live,
            threads=params.threads,
            saved=saved,
        )
        live.log_metric("eval/best_mean_reward", best, plot=False)
    saved.clear()  # done: a forced rerun trains again
    timer.save()


if __name__ == "__main__":
    run()
