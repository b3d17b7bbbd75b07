"""Stage collect: roll out the chosen policy in parallel workers, one compressed .npz per episode.

outs: data/rollouts/episode_XXXXX.npz; metrics/collect.json
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from wm import paths
from wm.config import load_params
from wm.env import track_seeds
from wm.episodes import episode_name, save_episode
from wm.errors import UserError, main
from wm.io import Timer, atomic_dir, write_json
from wm.rollout import build_policy, drive, to_episode
from wm.vector_env import make_vector_env


@main
def run():
    params = load_params()
    cfg = params.collect
    if cfg.policy in ("ppo", "mix") and not paths.PPO_MODEL.exists():
        raise UserError(f"{paths.PPO_MODEL}: not found, but collect.policy is {cfg.policy} (run the ppo stage)")
    spec = {"kind": cfg.policy, "path": str(paths.PPO_MODEL), "action_noise": cfg.action_noise,
            "ppo_fraction": cfg.ppo_fraction}
    policy = build_policy(spec)
    timer = Timer()
    writes = []
    # episodes are compressed and written in a background thread while the next batch drives
    with atomic_dir(paths.ROLLOUTS) as out_dir, ThreadPoolExecutor(max_workers=1) as writer, \
            make_vector_env(params.env.backend, params.env.max_steps, cfg.workers) as venv:
        rollouts = drive(
            venv, policy, track_seeds("collect", cfg.episodes), params.env.batch_size,
            record=True, desc="collect",
            on_result=lambda i, rollout: writes.append(
                writer.submit(save_episode, out_dir / episode_name(i), to_episode(rollout))))
        for write in writes:
            write.result()
    steps = sum(r.steps for r in rollouts)
    returns = [r.total_reward for r in rollouts]
    write_json("metrics/collect.json", {
        "episodes": len(rollouts), "frames": steps + len(rollouts),
        "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
        "steps_per_second": round(steps / timer.seconds, 1), "seconds": timer.seconds})


if __name__ == "__main__":
    run()
