"""Watch an agent drive: `python -m wm.play --agent world_model` (or `--agent ppo`).

Opens CarRacing-v3's own window (Esc or closing it quits). Without a display (a server, CI),
or with `--out`, it drives headless and writes the drive to an H.264 mp4 instead.
"""
import argparse
import os
import sys
from pathlib import Path

from wm import paths
from wm.agents import load_world_model
from wm.config import load_params
from wm.env import make_env, track_seeds
from wm.errors import UserError, main
from wm.rollout import build_policy, run_episode
from wm.video import write_mp4


def load_agent(agent, z_dim):
    """The trained `agent` (world_model or ppo), checking its files exist."""
    if agent == "ppo":
        if not paths.PPO_MODEL.exists():
            raise UserError(f"{paths.PPO_MODEL}: not found; train it (dvc repro ppo) or fetch it (dvc pull)")
        return build_policy({"kind": "ppo", "path": str(paths.PPO_MODEL)})
    return load_world_model(z_dim)


def has_display():
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or
                                                       os.environ.get("WAYLAND_DISPLAY"))


def escape_pressed():
    import pygame

    return any(event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE)
               for event in pygame.event.get())


@main
def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=("world_model", "ppo"), default="world_model")
    parser.add_argument("--seed", type=int, default=track_seeds("test", 1)[0],
                        help="track seed (default: the first test track)")
    parser.add_argument("--out", type=Path, help="write an mp4 here instead of opening a window")
    args = parser.parse_args(argv)
    params = load_params()
    policy = load_agent(args.agent, params.vae.z_dim)
    headless = args.out is not None or not has_display()
    env = make_env(params.env.max_steps, render_mode="rgb_array" if headless else "human")
    try:
        drive = run_episode(env, policy, args.seed, render=headless,
                            stop=None if headless else escape_pressed)
    finally:
        env.close()
    print(f"{args.agent} on track {args.seed}: return {drive.total_reward:.1f} in {drive.steps} steps")
    if headless:
        out = args.out or Path(f"play_{args.agent}_{args.seed}.mp4")
        write_mp4(out, drive.renders, fps=50)
        print(f"no display: wrote the drive to {out}")


if __name__ == "__main__":
    run()
