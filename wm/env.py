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
ACTION_NAMES = ("steer", "gas", "brake")  # the action's components, in order
ACTION_DIM = len(ACTION_NAMES)
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


def make_env(max_steps, render_mode=None, fast_road=True, fast_text=True):
    """A gymnasium CarRacing-v3 with continuous actions, truncated after `max_steps` steps; with
    `fast_road`, its road drawn by FastRoad (the same frames, byte for byte; 1.84x the step rate,
    reports/road_speed.json); with `fast_text`, its frames made by FastRender (the same bytes; the
    dashboard's font loaded once, not every frame)."""
    env = gym.make(ENV_ID, render_mode=render_mode, max_episode_steps=max_steps)
    if fast_road:
        env.unwrapped._render_road = FastRoad(env.unwrapped)
    if fast_text:
        env.unwrapped._render = FastRender(env.unwrapped)
    return env


class FastRender:
    """CarRacing-v3's `_render` for the frames an agent or a video gets ("state_pixels",
    "rgb_array"), with the score's font loaded once and each score's text drawn once.

    gymnasium's `_render` opens the default font's file (through importlib.resources) and loads it
    with pygame on every frame, then renders the score, a fifth of a step's time. Here the same
    font, size and `render` arguments give the same text surface, kept per score string; every
    other call is gymnasium's, in its order, so every frame has the same bytes
    (tests/test_driving.py compares whole episodes). "human" mode is gymnasium's own.
    """

    def __init__(self, car_racing):
        from gymnasium.envs.box2d import car_racing as module

        self.env, self.module = car_racing, module
        self.font, self.texts = None, {}

    def text(self, score):
        import pygame

        if self.font is None:
            self.font = pygame.font.Font(pygame.font.get_default_font(), 42)
        if score not in self.texts:
            self.texts[score] = self.font.render(score, True, (255, 255, 255), (0, 0, 0))
        return self.texts[score]

    def __call__(self, mode):
        import pygame

        env, module = self.env, self.module
        if mode not in ("state_pixels", "rgb_array"):
            return type(env)._render(env, mode)
        pygame.font.init()
        if env.clock is None:
            env.clock = pygame.time.Clock()
        if "t" not in env.__dict__:
            return None  # reset() not called yet
        width, height = module.WINDOW_W, module.WINDOW_H
        env.surf = pygame.Surface((width, height))
        angle = -env.car.hull.angle
        zoom = 0.1 * module.SCALE * max(1 - env.t, 0) + module.ZOOM * module.SCALE * min(env.t, 1)
        scroll_x = -(env.car.hull.position[0]) * zoom
        scroll_y = -(env.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (width / 2 + trans[0], height / 4 + trans[1])
        env._render_road(zoom, trans, angle)
        env.car.draw(env.surf, zoom, trans, angle, mode != "state_pixels")  # particles: videos only
        env.surf = pygame.transform.flip(env.surf, False, True)
        env._render_indicators(width, height)
        text = self.text(f"{env.reward:04.0f}")
        text_rect = text.get_rect()
        text_rect.center = (60, height - height * 2.5 / 40.0)
        env.surf.blit(text, text_rect)
        if mode == "rgb_array":
            return env._create_image_array(env.surf, (module.VIDEO_W, module.VIDEO_H))
        return env._create_image_array(env.surf, (module.STATE_W, module.STATE_H))


FIELD_MARGIN = 4  # pixels: the playfield's edge this far outside the window cannot touch it


class FastRoad:
    """CarRacing-v3's `_render_road` with the geometry done in numpy, all polygons at once.

    gymnasium rotates, scales and bounds-checks each vertex of its ~730 polygons (400 grass
    squares, ~330 road tiles and kerbs) as pygame Vector2s in Python on every frame, three quarters
    of a step's time, to draw the ~60 that are on screen. Here the same float64 arithmetic runs on
    arrays: the rotation's cos and sin come from pygame's own `Vector2.rotate_rad` (its exact values
    at multiples of 90 degrees included), then x cos - y sin, x sin + y cos, times zoom, plus the
    translation, and the same bounds test; the visible polygons go to the same gfxdraw calls in the
    same order with the same coordinates. So every frame has the same bytes as gymnasium's
    (tests/test_driving.py compares whole episodes), and evaluate still measures gymnasium's env.
    """

    def __init__(self, car_racing):
        from gymnasium.envs.box2d import car_racing as module

        self.env, self.module = car_racing, module
        dim, cells = module.GRASS_DIM, range(-20, 20, 2)  # gymnasium's grass squares, in its order
        self.grass = np.array(
            [
                [
                    (dim * x + dim, dim * y),
                    (dim * x, dim * y),
                    (dim * x, dim * y + dim),
                    (dim * x + dim, dim * y + dim),
                ]
                for x in cells
                for y in cells
            ],
            np.float64,
        )  # (400, 4, 2)
        self.road_of, self.road = None, None

    def __call__(self, zoom, translation, angle):
        from pygame import gfxdraw
        from pygame.math import Vector2

        env, module = self.env, self.module
        bound = module.PLAYFIELD
        field = [(bound, bound), (bound, -bound), (-bound, -bound), (-bound, bound)]
        cos, sin = Vector2(1.0, 0.0).rotate_rad(angle)
        if self.covers_screen(np.array(field, np.float64), cos, sin, zoom, translation):
            env.surf.fill([int(c) for c in env.bg_color])  # what the field polygon fills: every pixel
        else:
            env._draw_colored_polygon(env.surf, field, env.bg_color, zoom, translation, angle, clip=False)
        if self.road_of is not env.road_poly:  # a new track: its polygons as one array
            self.road_of = env.road_poly
            self.road = np.array([poly for poly, _ in env.road_poly], np.float64).reshape(-1, 4, 2)
        margin = module.MAX_SHAPE_DIM
        for polys, colours in ((self.grass, None), (self.road, env.road_poly)):
            x, y = polys[..., 0], polys[..., 1]
            screen_x = (cos * x - sin * y) * zoom + translation[0]
            screen_y = (sin * x + cos * y) * zoom + translation[1]
            inside = (-margin <= screen_x) & (screen_x <= module.WINDOW_W + margin)
            inside &= (-margin <= screen_y) & (screen_y <= module.WINDOW_H + margin)
            for i in np.flatnonzero(inside.any(axis=1)):
                poly = list(zip(screen_x[i].tolist(), screen_y[i].tolist()))
                colour = env.grass_color if colours is None else [int(c) for c in colours[i][1]]
                gfxdraw.aapolygon(env.surf, poly, colour)
                gfxdraw.filled_polygon(env.surf, poly, colour)

    def covers_screen(self, field, cos, sin, zoom, translation):
        """Whether the playfield square `field` (4, 2), on screen, holds the whole window with
        FIELD_MARGIN pixels to spare: then its anti-aliased edges are off the surface and its fill
        covers every pixel, which one `fill` does in a fraction of the time (true after the
        zoom-in, unless the car nears the playfield's edge)."""
        x = (cos * field[:, 0] - sin * field[:, 1]) * zoom + translation[0]
        y = (sin * field[:, 0] + cos * field[:, 1]) * zoom + translation[1]
        low, high = -FIELD_MARGIN, np.array([self.module.WINDOW_W, self.module.WINDOW_H]) + FIELD_MARGIN
        corners = np.array([[low, low], [high[0], low], [high[0], high[1]], [low, high[1]]])  # (4, 2)
        edges = np.stack([np.roll(x, -1) - x, np.roll(y, -1) - y], 1)  # (4, 2), around the square
        # each window corner on the same side of every edge (a convex polygon, either winding)
        cross = edges[:, 0, None] * (corners[None, :, 1] - y[:, None]) - edges[:, 1, None] * (
            corners[None, :, 0] - x[:, None]
        )  # (edge, corner)
        return bool((cross > 0).all() or (cross < 0).all())


def prepare_frame(frame):
    """(96, 96, 3) uint8 env frame -> (64, 64, 3) uint8 model frame (INTER_AREA)."""
    return cv2.resize(frame, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
