"""CarRacing-v3: making the env, its sizes, preparing frames for the models, the env backends
and the track seed ranges.

Track seeds come from disjoint ranges per use, so that the test tracks of `evaluate` are
never seen in training: collect, controller and PPO evaluation each draw from their own block.
"""

import cv2
import gymnasium as gym
import numpy as np

ENV_ID = "CarRacing-v3"
BACKENDS = ("gymnasium", "envpool")  # gymnasium: the reference; envpool: its C++ port (wm.vector_env)
ENV_FRAME_SHAPE = (96, 96, 3)  # what CarRacing-v3 renders, uint8
FRAME_SIZE = 64  # the models' frames are FRAME_SIZE x FRAME_SIZE x 3 uint8
ACTION_DIM = 3  # steer, gas, brake
ACTION_LOW = np.array([-1.0, 0.0, 0.0], dtype=np.float32)
ACTION_HIGH = np.array([1.0, 1.0, 1.0], dtype=np.float32)
ZOOM_STEPS = 50  # the zoom-in animation of an episode's start: t advances 1/50 per step for 1 s

SEED_BLOCKS = {
    "collect": 1_000_000,
    "controller": 2_000_000,
    "ppo": 3_000_000,
    "dream": 4_000_000,
    "validate": 5_000_000,  # for trying levers (tools.quick_eval): the test block stays unseen
    "test": 9_000_000,
}
SEED_BLOCK_SIZE = 1_000_000


def track_seeds(use, count, start=0):
    """`count` track seeds for `use` (a key of SEED_BLOCKS), from offset `start` in its block."""
    if start < 0 or start + count > SEED_BLOCK_SIZE:
        raise ValueError(f"{use}: seeds {start}..{start + count} leave the block of {SEED_BLOCK_SIZE}")
    base = SEED_BLOCKS[use]
    return [base + start + i for i in range(count)]


def make_env(max_steps, render_mode=None):
    """A gymnasium CarRacing-v3 with continuous actions, truncated after `max_steps` steps."""
    return gym.make(ENV_ID, render_mode=render_mode, max_episode_steps=max_steps)


def prepare_frame(frame):
    """(96, 96, 3) uint8 env frame -> (64, 64, 3) uint8 model frame (INTER_AREA)."""
    return cv2.resize(frame, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
