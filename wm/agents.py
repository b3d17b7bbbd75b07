"""Everything that drives the car, batched, behind one interface:

    policy.reset(seeds)        # a new episode on each of N tracks
    actions = policy.act(obs)  # obs (N, 96, 96, 3) uint8 env frames -> (N, 3) float32 actions

A single drive is a batch of one. Batching is what makes the world-model agent fast: the VAE
encodes N frames in one call and the MDN-RNN steps N hidden states in one call.
"""
import numpy as np
import torch

from wm.controller import apply
from wm.env import ACTION_HIGH, ACTION_LOW, prepare_frame
from wm.vae import to_input


class RandomPolicy:
    """Random driving with temporally correlated actions: an AR(1) process per action channel
    and track, so the car holds a turn or a throttle for a while instead of jittering in place.
    Each track's actions depend only on its seed."""

    def __init__(self, correlation=0.95):
        self.correlation = correlation

    def reset(self, seeds):
        self.rngs = [np.random.default_rng(seed) for seed in seeds]
        self.state = np.stack([rng.standard_normal(3) for rng in self.rngs])  # (N, 3)

    def act(self, obs):
        rho = self.correlation
        noise = np.stack([rng.standard_normal(3) for rng in self.rngs])
        self.state = rho * self.state + np.sqrt(1 - rho**2) * noise
        steer, gas, brake = self.state.T
        return np.clip(np.stack([steer, 0.5 + 0.5 * gas, brake - 1.0], axis=1),
                       ACTION_LOW, ACTION_HIGH).astype(np.float32)


class PPOPolicy:
    """A trained Stable-Baselines3 PPO agent, optionally with Gaussian action noise."""

    def __init__(self, path, action_noise=0.0):
        from stable_baselines3 import PPO

        self.model = PPO.load(path, device="cpu")
        self.action_noise = action_noise

    def reset(self, seeds):
        self.rngs = [np.random.default_rng([seed, 2]) for seed in seeds]

    def act(self, obs, rows=None):
        """`rows`: the indices of the tracks this policy drives, if not all."""
        rows = np.arange(len(obs)) if rows is None else rows
        actions, _ = self.model.predict(obs[rows], deterministic=True)
        if self.action_noise > 0:
            actions = actions + self.action_noise * np.stack([self.rngs[i].standard_normal(3) for i in rows])
        return np.clip(actions, ACTION_LOW, ACTION_HIGH).astype(np.float32)


class MixPolicy:
    """Per track, the PPO agent with probability `ppo_fraction` (decided by the seed), else the
    random policy."""

    def __init__(self, ppo, random, ppo_fraction):
        self.ppo, self.random, self.ppo_fraction = ppo, random, ppo_fraction

    def reset(self, seeds):
        self.use_ppo = np.array([np.random.default_rng([seed, 1]).random() < self.ppo_fraction
                                 for seed in seeds])
        self.ppo.reset(seeds)
        self.random.reset(seeds)

    def act(self, obs):
        actions = self.random.act(obs)  # stepped for every track, so each track's noise is its own
        rows = np.flatnonzero(self.use_ppo)
        if len(rows):
            actions[rows] = self.ppo.act(obs, rows)
        return actions


class WorldModelAgent:
    """The paper's agent, N at a time: the VAE encodes each frame to z (its mean), a controller
    per track acts on [z, h] (or on z alone), and the MDN-RNN, fed (z, action), carries h to the
    next step.

    `controller` gives the shape and default parameters; `set_controllers(params)` takes one
    flat vector for all tracks, or one per track (N, n_params): CMA-ES evaluates a whole
    population in one batch that way.
    """

    def __init__(self, vae, mdnrnn, controller):
        self.vae, self.mdnrnn, self.controller = vae, mdnrnn, controller
        self.set_controllers(None)

    def set_controllers(self, params):
        """params: None (the controller's own), (n_params,) for every track, or (N, n_params)."""
        self.layers = self.controller.batch(params)

    def reset(self, seeds):
        if len(self.layers[0][0]) not in (1, len(seeds)):
            raise ValueError(f"{len(self.layers[0][0])} controllers for {len(seeds)} tracks")
        self.state = self.mdnrnn.initial_state(len(seeds))  # (h, c), each (1, N, H)

    @torch.inference_mode()
    def act(self, obs):
        frames = np.stack([prepare_frame(frame) for frame in obs])  # (N, 64, 64, 3) uint8
        z, _ = self.vae.encode(to_input(frames, "cpu"))  # (N, Z)
        x = torch.cat([z, self.state[0][0]], dim=1) if self.controller.h_dim else z
        actions = apply(self.layers, x)  # (N, 3)
        if self.controller.h_dim:  # a z-only controller never reads h: skip the LSTM
            _, self.state = self.mdnrnn.lstm(torch.cat([z, actions], 1)[:, None], self.state)
        return actions.numpy()


def load_world_model(z_dim):
    """The trained VAE, MDN-RNN and controller (on z and h) as a ready WorldModelAgent, checked
    against each other and against the `vae.z_dim` param. `agent.vae`, `agent.mdnrnn`,
    `agent.controller` are its parts."""
    from wm import paths
    from wm.controller import load_controller
    from wm.io import load_model
    from wm.mdnrnn import MDNRNN
    from wm.vae import ConvVAE

    vae = load_model(paths.VAE, ConvVAE, z_dim=z_dim)
    mdnrnn = load_model(paths.MDNRNN, MDNRNN, z_dim=vae.z_dim)
    controller = load_controller(paths.CONTROLLER, vae.z_dim, (mdnrnn.hidden,))
    return WorldModelAgent(vae, mdnrnn, controller)
