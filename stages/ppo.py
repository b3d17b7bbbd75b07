"""Stage ppo: train the Stable-Baselines3 PPO agent (data-collection policy and baseline).

outs: models/ppo/{best_model,final_model}.zip; metrics/ppo/ (dvclive: metrics.json, curves)
"""
import torch

from wm import paths
from wm.config import load_params
from wm.errors import main
from wm.io import Timer, open_live, resolve_device
from wm.ppo import train_ppo


@main
def run():
    params = load_params()
    timer = Timer()
    torch.manual_seed(params.seed)
    paths.PPO_DIR.mkdir(parents=True, exist_ok=True)
    with open_live("metrics/ppo") as live:
        best = train_ppo(params.ppo, params.env.max_steps, params.seed,
                         resolve_device(params.device), paths.PPO_DIR, live)
        live.log_metric("eval/best_mean_reward", best, plot=False)
        live.log_metric("seconds", timer.seconds, plot=False)


if __name__ == "__main__":
    run()
