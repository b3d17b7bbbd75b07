"""The viewer's window: Esc ends the drive (under SDL's dummy video driver, no screen needed)."""
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame  # noqa: E402

from wm.agents import RandomPolicy  # noqa: E402
from wm.env import make_env  # noqa: E402
from wm.play import escape_pressed  # noqa: E402
from wm.rollout import run_episode  # noqa: E402


def test_escape_ends_a_human_rendered_drive():
    env = make_env(max_steps=200, render_mode="human")
    try:
        env.reset(seed=0)  # opens the window, so events can be posted to it
        steps = {"n": 0}

        def stop():
            steps["n"] += 1
            if steps["n"] == 5:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
            return escape_pressed()

        drive = run_episode(env, RandomPolicy(), seed=0, stop=stop)
    finally:
        env.close()
    assert drive.steps == 5 and not drive.terminated and not drive.truncated
