"""The policies that drive without a world model, batched, behind the interface every driver
has (the world-model agent is in wm.world_model):

    policy.reset(seeds)        # a new episode on each of N tracks
    actions = policy.act(obs)  # obs (N, 96, 96, 3) uint8 env frames -> (N, 3) float32 actions

A single drive is a batch of one. Batching is what makes the world-model agent fast: the VAE
encodes N frames in one call and the MDN-RNN steps N hidden states in one call.
"""

import copy

import numpy as np

from wm import paths
from wm.env import ACTION_DIM, ACTION_HIGH, ACTION_LOW, ACTION_NAMES

# The random policy: an AR(1) process per action channel, x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t,
# so each channel stays N(0, 1) and holds its value for ~1 / (1 - rho) = 20 steps (0.4 s).
RANDOM_CORRELATION = 0.95
RANDOM_GAS_CENTER = 0.5  # gas = 0.5 + 0.5 x, clipped to [0, 1]: half throttle on average
RANDOM_BRAKE_CENTER = -1.0  # brake = x - 1, clipped to [0, 1]: brakes on ~16% of steps (P(x > 1))


def noise_std(std, on=ACTION_NAMES):
    """The (3,) per-component std of Gaussian action noise of std `std` on the components `on`
    (names of ACTION_NAMES), 0 on the others. Noise on the brake is clipped at 0, so it brakes
    on half the steps, 0.04 on average at std 0.1: a constant drag that slows the car."""
    return std * np.isin(ACTION_NAMES, on)


class RandomPolicy:
    """Random driving with temporally correlated actions (RANDOM_CORRELATION), so the car holds a
    turn or a throttle for a while instead of jittering in place. Each track's actions depend
    only on its seed."""

    def __init__(self, correlation=RANDOM_CORRELATION):
        self.correlation = correlation

    def reset(self, seeds):
        self.rngs = [np.random.default_rng(seed) for seed in seeds]
        self.state = np.stack([rng.standard_normal(ACTION_DIM) for rng in self.rngs])  # (N, 3)

    def act(self, obs):
        rho = self.correlation
        noise = np.stack([rng.standard_normal(ACTION_DIM) for rng in self.rngs])
        self.state = rho * self.state + np.sqrt(1 - rho**2) * noise
        steer, gas, brake = self.state.T
        actions = np.stack([steer, RANDOM_GAS_CENTER + 0.5 * gas, brake + RANDOM_BRAKE_CENTER], axis=1)
        return np.clip(actions, ACTION_LOW, ACTION_HIGH).astype(np.float32)


class PPOPolicy:
    """A trained Stable-Baselines3 PPO agent, optionally with Gaussian action noise of std
    `action_noise`: a number, or one per component (noise_std)."""

    def __init__(self, path, action_noise=0.0):
        from wm.ppo import load_ppo  # stable_baselines3 is a heavy import

        self.policy = load_ppo(path)
        self.action_noise = np.broadcast_to(action_noise, ACTION_DIM)

    def reset(self, seeds):
        self.rngs = [np.random.default_rng([seed, 2]) for seed in seeds]

    def act(self, obs, rows=None):
        """`rows`: the indices of the tracks this policy drives, if not all."""
        rows = np.arange(len(obs)) if rows is None else rows
        actions, _ = self.policy.predict(obs[rows], deterministic=True)
        if self.action_noise.any():
            noise = np.stack([self.rngs[i].standard_normal(ACTION_DIM) for i in rows])
            actions = actions + self.action_noise * noise
        return np.clip(actions, ACTION_LOW, ACTION_HIGH).astype(np.float32)


# A random takeover in a PPO track (collect.random_takeover) lasts this many steps on average, the
# random policy's own correlation time (0.4 s)
TAKEOVER_STEPS = round(1 / (1 - RANDOM_CORRELATION))


class MixPolicy:
    """Per track, the PPO agent with probability `ppo_fraction` (decided by the seed), else the
    random policy. In a PPO track the random policy takes over for a share `takeover` of the steps,
    in spells of TAKEOVER_STEPS on average (each step a spell starts or ends by the track's seed):
    the car then steers whatever the road ahead does and PPO brings it back, so the data show what
    an action does where PPO would not take it (M learns the action's effect, not PPO's habit)."""

    def __init__(self, ppo, random, ppo_fraction, takeover=0.0):
        if not 0 <= takeover < 1:
            raise ValueError(f"takeover must be in [0, 1), got {takeover}")
        self.ppo, self.random, self.ppo_fraction, self.takeover = ppo, random, ppo_fraction, takeover

    def reset(self, seeds):
        self.use_ppo = np.array(
            [np.random.default_rng([seed, 1]).random() < self.ppo_fraction for seed in seeds]
        )
        self.ppo.reset(seeds)
        self.random.reset(seeds)
        self.takeover_rngs = [np.random.default_rng([seed, 5]) for seed in seeds]
        self.taken = np.zeros(len(seeds), bool)  # (N,): the random policy drives this step

    def act(self, obs):
        actions = self.random.act(obs)  # stepped for every track, so each track's noise is its own
        if self.takeover > 0:
            # a two-state chain per track: a spell ends with probability 1 / TAKEOVER_STEPS, and
            # starts with the probability that makes the spells a share `takeover` of the steps
            start = self.takeover / (TAKEOVER_STEPS * (1 - self.takeover))
            u = np.array([rng.random() for rng in self.takeover_rngs])
            self.taken = np.where(self.taken, u >= 1 / TAKEOVER_STEPS, u < start)
        rows = np.flatnonzero(self.use_ppo & ~self.taken)
        if len(rows):
            actions[rows] = self.ppo.act(obs, rows)
        return actions


class ReplayPolicy:
    """Fixed actions, whatever it sees: actions (T, N, 3), step t's for the N tracks of a batch."""

    def __init__(self, actions):
        self.actions = np.asarray(actions, np.float32)

    def reset(self, seeds):
        if len(seeds) != self.actions.shape[1]:
            raise ValueError(f"actions for {self.actions.shape[1]} tracks, got {len(seeds)} seeds")
        self.step = 0

    def act(self, obs):
        if self.step == len(self.actions):
            raise ValueError(f"only {len(self.actions)} steps of actions to replay")
        self.step += 1
        return self.actions[self.step - 1]


# The robustness tests of Tang et al. (2020), on the frames the policy sees (the env and its
# tracks unchanged): new track and grass colours, and black bars on the frame's sides.
HUD_ROWS = 12  # the frame's bottom rows: the dashboard, left as it is
GRASS_COLOUR = np.array([100, 202, 100])  # CarRacing-v3's grass (its stripes: +26 green)
ROAD_COLOUR = np.array([102, 102, 102])  # its road (tiles vary by a few levels)
BAR_WIDTH = 12  # pixels of 96 on each side


def recolour(frames, grass, road):
    """`frames` (N, 96, 96, 3) uint8 with grass pixels (green well above red and blue) moved by
    `grass - GRASS_COLOUR` and road pixels (grey 90-120) by `road - ROAD_COLOUR`, per track:
    grass, road (N, 3). Stripes and tile shades keep their differences; the kerbs, the car and
    the anti-aliased edges keep their colours."""
    out = frames.astype(np.int16)
    field = out[:, :-HUD_ROWS]
    r, g, b = field[..., 0], field[..., 1], field[..., 2]
    is_grass = (g >= r + 60) & (g >= b + 60)
    is_road = (field.max(-1) - field.min(-1) <= 2) & (r >= 90) & (r <= 120)
    field += np.where(is_grass[..., None], (grass - GRASS_COLOUR)[:, None, None], 0).astype(np.int16)
    field += np.where(is_road[..., None], (road - ROAD_COLOUR)[:, None, None], 0).astype(np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def side_bars(frames):
    """`frames` with BAR_WIDTH black columns on the left and the right, full height."""
    out = frames.copy()
    out[:, :, :BAR_WIDTH] = 0
    out[:, :, -BAR_WIDTH:] = 0
    return out


class Wrapper:
    """A policy around another, `self.policy`."""

    def to(self, device):
        """This policy with the one inside moved to `device` (wm.executor ships CPU copies)."""
        moved = self.policy.to(device) if hasattr(self.policy, "to") else self.policy
        if moved is self.policy:
            return self
        wrapper = copy.copy(self)
        wrapper.policy = moved
        return wrapper


class Noisy(Wrapper):
    """`policy` with Gaussian noise of std `std` on its actions (a number, or one per component:
    noise_std), each track's noise drawn from its seed (the rounds of the iterative procedure
    collect with the last agent this way)."""

    def __init__(self, policy, std):
        self.policy, self.std = policy, std

    def reset(self, seeds):
        self.rngs = [np.random.default_rng([seed, 4]) for seed in seeds]
        self.policy.reset(seeds)

    def act(self, obs):
        noise = np.stack([rng.standard_normal(ACTION_DIM) for rng in self.rngs])
        actions = self.policy.act(obs) + self.std * noise
        return np.clip(actions, ACTION_LOW, ACTION_HIGH).astype(np.float32)


class Perturbed(Wrapper):
    """`policy` seeing perturbed frames: "colour", each track's grass and road in colours drawn
    from its seed as CarRacing's own `domain_randomize` draws them (each channel uniform in
    [0, 210]); or "bars", black bars on both sides."""

    KINDS = ("colour", "bars")

    def __init__(self, policy, kind):
        if kind not in self.KINDS:
            raise ValueError(f"unknown perturbation {kind!r}: one of {', '.join(self.KINDS)}")
        self.policy, self.kind = policy, kind

    def reset(self, seeds):
        rngs = [np.random.default_rng([seed, 3]) for seed in seeds]
        self.colours = np.array([rng.uniform(0, 210, (2, 3)) for rng in rngs]).round()  # (N, grass/road, 3)
        self.policy.reset(seeds)

    def act(self, obs):
        if self.kind == "colour":
            return self.policy.act(recolour(obs, self.colours[:, 0], self.colours[:, 1]))
        return self.policy.act(side_bars(obs))


def build_policy(kind, ppo_path=paths.PPO_MODEL, action_noise=0.0, ppo_fraction=0.5, takeover=0.0):
    """A policy that needs no world model: "random", "ppo" (the model at `ppo_path`, with
    Gaussian `action_noise`, a number or one per component: noise_std) or "mix" (per track, that
    PPO with probability `ppo_fraction`, else random; in PPO's tracks the random policy drives a
    share `takeover` of the steps)."""
    if kind == "random":
        return RandomPolicy()
    if kind == "ppo":
        return PPOPolicy(ppo_path, action_noise)
    if kind == "mix":
        return MixPolicy(PPOPolicy(ppo_path, action_noise), RandomPolicy(), ppo_fraction, takeover)
    raise ValueError(f"unknown policy kind {kind!r}")
