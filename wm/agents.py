"""Everything that drives the car, behind one interface: `reset(seed)` at the start of an
episode, then `act(obs)` with the env's (96, 96, 3) uint8 frame -> (3,) float32 action.
"""
import numpy as np
import torch

from wm.controller import Controller
from wm.env import clip_action, prepare_frame
from wm.vae import to_input


class RandomPolicy:
    """Random driving with temporally correlated actions: an AR(1) process per action channel,
    so the car holds a turn or a throttle for a while instead of jittering in place."""

    def __init__(self, correlation=0.95):
        self.correlation = correlation

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)
        self.state = self.rng.standard_normal(3)

    def act(self, obs):
        rho = self.correlation
        self.state = rho * self.state + np.sqrt(1 - rho**2) * self.rng.standard_normal(3)
        steer, gas, brake = self.state
        return clip_action([steer, 0.5 + 0.5 * gas, brake - 1.0])


class PPOPolicy:
    """A trained Stable-Baselines3 PPO agent, optionally with Gaussian action noise."""

    def __init__(self, path, action_noise=0.0):
        from stable_baselines3 import PPO

        self.model = PPO.load(path, device="cpu")
        self.action_noise = action_noise

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        action, _ = self.model.predict(obs, deterministic=True)
        if self.action_noise > 0:
            action = action + self.action_noise * self.rng.standard_normal(3)
        return clip_action(action)


class MixPolicy:
    """Per episode, the PPO agent with probability `ppo_fraction`, else the random policy."""

    def __init__(self, ppo, random, ppo_fraction):
        self.ppo, self.random, self.ppo_fraction = ppo, random, ppo_fraction

    def reset(self, seed):
        use_ppo = np.random.default_rng([seed, 1]).random() < self.ppo_fraction
        self.current = self.ppo if use_ppo else self.random
        self.current.reset(seed)

    def act(self, obs):
        return self.current.act(obs)


class WorldModelAgent:
    """The paper's agent: the VAE encodes each frame to z (its mean), the controller acts on
    [z, h], and the MDN-RNN, fed (z, action), carries h to the next step."""

    def __init__(self, vae, mdnrnn, controller_params):
        self.vae, self.mdnrnn = vae, mdnrnn
        self.set_controller(controller_params)

    def set_controller(self, params):
        """Swap in another controller parameter vector (None = all zeros)."""
        self.controller = Controller(self.vae.z_dim, self.mdnrnn.hidden, params)

    def reset(self, seed):
        self.state = self.mdnrnn.initial_state(1)
        self.h = np.zeros((1, self.mdnrnn.hidden), dtype=np.float32)

    @torch.inference_mode()
    def act(self, obs):
        z, _ = self.vae.encode(to_input(prepare_frame(obs)[None], "cpu"))  # (1, Z)
        action = self.controller.act(z.numpy(), self.h)  # (1, 3)
        _, self.state = self.mdnrnn.lstm(torch.cat([z, torch.from_numpy(action)], -1)[:, None],
                                         self.state)
        self.h = self.state[0][0].numpy()  # (1, H)
        return action[0]


def load_world_model(z_dim):
    """The trained VAE, MDN-RNN and controller, checked against each other and against the
    `vae.z_dim` param. Returns (vae, mdnrnn, controller, spec), where spec builds the same
    WorldModelAgent in a worker process (see wm.rollout.build_policy)."""
    from wm import paths
    from wm.controller import load_controller
    from wm.io import load_model
    from wm.mdnrnn import MDNRNN
    from wm.vae import ConvVAE

    vae = load_model(paths.VAE, ConvVAE, z_dim=z_dim)
    mdnrnn = load_model(paths.MDNRNN, MDNRNN, z_dim=vae.z_dim)
    controller = load_controller(paths.CONTROLLER, vae.z_dim, mdnrnn.hidden)
    spec = {"kind": "world_model", "vae": str(paths.VAE), "mdnrnn": str(paths.MDNRNN),
            "controller": controller.params}
    return vae, mdnrnn, controller, spec
