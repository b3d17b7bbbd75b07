"""Stage dream: the controller drives a real track and, from the same first frame, inside the
MDN-RNN's dream; both are written side by side (real | dream) as an H.264 video.

outs: metrics/dream.mp4; metrics/dream.json
"""

import numpy as np

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.dream import dream_rollout
from wm.env import track_seeds
from wm.errors import main
from wm.io import Timer, resolve_device, write_json
from wm.rollout import drive
from wm.vector_env import SingleEnv
from wm.video import side_by_side, write_mp4
from wm.world_model import load_agent, load_world_model


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.dream
    agent = load_agent(*load_world_model(params.vae.z_dim), device=resolve_device(params.device))
    timer = Timer("dream")
    seed = track_seeds("dream", 1)[0]
    with SingleEnv(params.env.max_steps) as env:
        (real,) = drive(env, agent, [seed], 1, record=True)
    # start after the zoom-in animation of the first frames, where the car is already on the road
    start = min(cfg.start_step, len(real.frames) - 1)
    dream, rewards, dones = dream_rollout(
        agent.vae,
        agent.mdnrnn,
        agent.controller,
        real.frames[start],
        steps=cfg.steps,
        tau=cfg.temperature,
        seed=params.seed,
    )
    real_frames = real.frames[start : start + len(dream)]
    real_frames += [real_frames[-1]] * (len(dream) - len(real_frames))
    write_mp4(paths.DREAM_VIDEO, [side_by_side(r, d) for r, d in zip(real_frames, dream)], fps=30)
    write_json(
        paths.DREAM_METRICS,
        {
            "seed": seed,
            "start_step": start,
            "steps": cfg.steps,
            "temperature": cfg.temperature,
            "dream_reward": round(float(np.sum(rewards)), 2),
            "real_reward": round(float(np.sum(real.rewards[start : start + cfg.steps])), 2),
            "max_done_probability": round(float(np.max(dones)), 4),
        },
    )
    timer.save()


if __name__ == "__main__":
    run()
