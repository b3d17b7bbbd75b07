"""The paper's agent, batched: V (the VAE) sees, M (the MDN-RNN) remembers, C (the controller)
acts. It drives through the same interface as the policies of wm.agents:

    agent.reset(seeds); actions = agent.act(obs)   # obs (N, 96, 96, 3) uint8 -> (N, 3) float32
"""

import copy

import numpy as np
import torch

from wm import paths
from wm.controller import apply, load_controller
from wm.env import prepare_frame
from wm.episodes import list_files, load_latents
from wm.errors import UserError
from wm.io import load_model
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE, to_input

Z_NOISE = 0x5A  # mixed with each track's seed into its z noise's generator (controller z: sample)


class WorldModelAgent:
    """The paper's agent, N at a time: the VAE encodes each frame to z (its mean, or a sample if
    the controller says `z="sample"`), a controller per track acts on [z, h] (or on z alone), and
    the MDN-RNN, fed (z, action), carries h to the next step. A sample's noise comes from one
    generator per track, seeded by its track seed: the same track gets the same noise whichever
    batch, candidate or machine drives it.

    `controller` gives the shape and default parameters; `set_controllers(params)` takes one
    flat vector for all tracks, or one per track (N, n_params): CMA-ES evaluates a whole
    population in one batch that way. The models run on `device` (the frames and actions cross
    to and from it each step).
    """

    def __init__(self, vae, mdnrnn, controller, device="cpu"):
        self.device = torch.device(device)
        self.vae, self.mdnrnn, self.controller = vae.to(self.device), mdnrnn.to(self.device), controller
        self.set_controllers(None)

    def to(self, device):
        """This agent with its models on `device` (a new agent; this one is left as it is)."""
        if torch.device(device) == self.device:
            return self
        return WorldModelAgent(copy.deepcopy(self.vae), copy.deepcopy(self.mdnrnn), self.controller, device)

    def set_controllers(self, params):
        """params: None (the controller's own), (n_params,) for every track, or (N, n_params)."""
        self.layers = [(w.to(self.device), b.to(self.device)) for w, b in self.controller.batch(params)]

    def reset(self, seeds):
        if len(self.layers[0][0]) not in (1, len(seeds)):
            raise ValueError(f"{len(self.layers[0][0])} controllers for {len(seeds)} tracks")
        self.state = self.mdnrnn.initial_state(len(seeds), self.device)  # (h, c), each (1, N, H)
        sample = self.controller.z == "sample"
        self.noise = [np.random.default_rng([Z_NOISE, int(seed)]) for seed in seeds] if sample else None

    @torch.inference_mode()
    def act(self, obs):
        frames = np.stack([prepare_frame(frame) for frame in obs])  # (N, 64, 64, 3) uint8
        z, logvar = self.vae.encode(to_input(frames, self.device))  # (N, Z)
        if self.noise is not None:
            eps = np.stack([rng.standard_normal(z.shape[1], dtype=np.float32) for rng in self.noise])
            z = z + torch.from_numpy(eps).to(self.device) * torch.exp(0.5 * logvar)
        x = torch.cat([z, self.state[0][0]], dim=1) if self.controller.h_dim else z
        actions = apply(self.layers, x)  # (N, 3)
        if self.controller.h_dim:  # a z-only controller never reads h: skip the LSTM
            _, self.state = self.mdnrnn.lstm(torch.cat([z, actions], 1)[:, None], self.state)
        return actions.cpu().numpy()


def load_world_model(z_dim, round=0):
    """The trained VAE and the MDN-RNN of round `round` of the iterative procedure (0: the
    mdnrnn stage's; wm.paths.round_models), (vae, mdnrnn), checked against each other and
    against the `vae.z_dim` param."""
    vae = load_model(paths.VAE, ConvVAE, z_dim=z_dim)
    mdnrnn = load_model(paths.round_models(round) / paths.MDNRNN.name, MDNRNN, z_dim=vae.z_dim)
    return vae, mdnrnn


def load_agent(vae, mdnrnn, inputs="zh", device="cpu", round=0):
    """The world-model agent with the trained controller on `inputs`: "zh" (z and h, the paper's
    agent; round `round`'s) or "z" (z only; the controller_z stage's), checked against the VAE and
    MDN-RNN it drives with, its models on `device`."""
    h_dim = {"zh": mdnrnn.hidden, "z": 0}[inputs]
    path = paths.round_models(round) / paths.CONTROLLER.name if inputs == "zh" else paths.CONTROLLER_Z
    controller = load_controller(path, vae.z_dim, (h_dim,))
    return WorldModelAgent(vae, mdnrnn, controller, device)


@torch.inference_mode()
def input_moments(mdnrnn, directory, z_dim, with_h=True):
    """Mean (D,) and covariance (D, D), float64, of what the controller reads along the collected
    episodes (the latent files in `directory`): each frame's z (its mean), then, `with_h`, the
    LSTM's h there (zeros at the first frame, then after reading the episode's z and actions up
    to it, as the driving agent's h would be)."""
    device = next(mdnrnn.parameters()).device
    total, outer, count = 0.0, 0.0, 0
    for path in list_files(directory, "latent"):
        episode = load_latents(path, z_dim)
        x = episode.mu.astype(np.float64)
        if with_h:
            read = torch.from_numpy(np.concatenate([episode.mu[:-1], episode.action], 1))[None]
            h = mdnrnn.lstm(read.to(device))[0][0].cpu().numpy()  # after each step: frames 1..T
            x = np.concatenate([x, np.concatenate([np.zeros((1, mdnrnn.hidden)), h]).astype(np.float64)], 1)
        total, outer, count = total + x.sum(0), outer + x.T @ x, count + len(x)
    if count < 2:
        raise UserError(f"{directory}: too few latent frames to find the controller's input components")
    mean = total / count
    return mean, (outer - count * np.outer(mean, mean)) / (count - 1)
