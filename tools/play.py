"""Watch an agent drive: `python -m tools.play --agent world_model` (or `--agent ppo`).

Opens CarRacing-v3's own window (Esc or closing it quits). Without a display that opens (a
server, CI, a stale `ssh -X` DISPLAY), or with `--out`, it drives headless and writes the drive
to an H.264 mp4 instead.
"""

import argparse
import os
import sys
from pathlib import Path

from wm.agents import build_policy
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import main
from wm.rollout import drive
from wm.vector_env import SingleEnv
from wm.video import write_mp4
from wm.world_model import load_agent, load_world_model

HEADLESS_DRIVERS = ("dummy", "offscreen")  # SDL video drivers that draw to no screen
DISPLAY_DRIVERS = {"x11": "DISPLAY", "wayland": "WAYLAND_DISPLAY"}  # SDL driver: what names its display


def has_display():
    """True if SDL can open a window here: a display that answers, not merely a DISPLAY set (a
    stale `ssh -X`). Left to itself, SDL falls back to its offscreen driver and draws nowhere."""
    import pygame

    if sys.platform in ("darwin", "win32"):
        return True
    if os.environ.get("SDL_VIDEODRIVER") in HEADLESS_DRIVERS:
        return False
    chosen = os.environ.get("SDL_VIDEODRIVER")
    for driver, variable in DISPLAY_DRIVERS.items():
        if not os.environ.get(variable):
            continue
        os.environ["SDL_VIDEODRIVER"] = driver  # this driver only: no fallback, no probing others
        try:
            pygame.display.init()
            pygame.display.quit()
            return True
        except pygame.error:
            continue
        finally:
            os.environ.pop("SDL_VIDEODRIVER")
            if chosen:
                os.environ["SDL_VIDEODRIVER"] = chosen
    return False


def escape_pressed():
    import pygame

    return any(
        event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE)
        for event in pygame.event.get()
    )


@main
def run(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=("world_model", "ppo"), default="world_model")
    parser.add_argument(
        "--seed",
        type=int,
        default=track_seeds("test", 1)[0],
        help="track seed (default: the first test track)",
    )
    parser.add_argument("--out", type=Path, help="write an mp4 here instead of opening a window")
    args = parser.parse_args(argv)
    params = load_params()
    policy = build_policy("ppo") if args.agent == "ppo" else load_agent(*load_world_model(params.vae.z_dim))
    headless = args.out is not None or not has_display()
    with SingleEnv(params.env.max_steps, render_mode="rgb_array" if headless else "human") as env:
        (rollout,) = drive(
            env, policy, [args.seed], 1, render=headless, stop=None if headless else escape_pressed
        )
    print(f"{args.agent} on track {args.seed}: return {rollout.total_reward:.1f} in {rollout.steps} steps")
    if headless:
        out = args.out or Path(f"play_{args.agent}_{args.seed}.mp4")
        write_mp4(out, rollout.renders, fps=50)
        print(f"no display: wrote the drive to {out}")


if __name__ == "__main__":
    run()
