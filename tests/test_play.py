"""The viewer's window: Esc ends the drive (under SDL's dummy video driver, no screen needed)."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame  # noqa: E402

from tools.play import escape_pressed  # noqa: E402
from wm.agents import RandomPolicy  # noqa: E402
from wm.rollout import drive  # noqa: E402
from wm.vector_env import SingleEnv  # noqa: E402


def test_escape_ends_a_human_rendered_drive():
    with SingleEnv(max_steps=200, render_mode="human") as env:
        env.reset([0])  # opens the window, so events can be posted to it
        steps = {"n": 0}

        def stop():
            steps["n"] += 1
            if steps["n"] == 5:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
            return escape_pressed()

        (rollout,) = drive(env, RandomPolicy(), [0], 1, stop=stop)
    assert rollout.steps == 5 and not rollout.terminated and not rollout.truncated
