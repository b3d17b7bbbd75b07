"""ConvVAE (the paper's V model) and its loss.

Encoder: conv 32/64/128/256 (kernel 4, stride 2, ReLU) -> 1024 -> mu, logvar (Z).
Decoder: linear Z -> 1024 (as 1024x1x1) -> deconv 128k5, 64k5, 32k6, 3k6 (stride 2) -> sigmoid.
"""

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wm.episodes import Latents, load_episode, save_latents

FEATURES = 256 * 2 * 2  # the encoder's output: 256 channels of 2 x 2 (a 64-pixel side: 31, 14, 6, 2)


class Losses(NamedTuple):
    total: torch.Tensor
    reconstruction: torch.Tensor  # squared error summed over pixels, mean over the batch
    kl: torch.Tensor  # mean over the batch, before the kl_tolerance floor


class ConvVAE(nn.Module):
    def __init__(self, z_dim=32):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(FEATURES, z_dim)
        self.fc_logvar = nn.Linear(FEATURES, z_dim)
        self.fc_decode = nn.Linear(z_dim, FEATURES)
        self.decoder = nn.Sequential(  # from FEATURES x 1 x 1
            nn.ConvTranspose2d(FEATURES, 128, 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2),
            nn.Sigmoid(),
        )

    @property
    def config(self):
        return {"z_dim": self.z_dim}

    def encode(self, x):
        """x: (B, 3, 64, 64) float in [0, 1] -> mu, logvar: (B, Z)."""
        features = self.encoder(x)
        return self.fc_mu(features), self.fc_logvar(features)

    def decode(self, z):
        """z: (B, Z) -> (B, 3, 64, 64) float in [0, 1]."""
        return self.decoder(self.fc_decode(z).view(-1, FEATURES, 1, 1))

    def forward(self, x):
        """x: (B, 3, 64, 64) in [0, 1] -> reconstruction (B, 3, 64, 64), mu, logvar (B, Z)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def to_input(frames, device):
    """(B, 64, 64, 3) uint8 numpy or tensor -> (B, 3, 64, 64) float in [0, 1] on `device`."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    return frames.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_frames(x):
    """(B, 3, 64, 64) float in [0, 1] -> (B, 64, 64, 3) uint8 numpy."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def kl_divergence(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over Z: (B, Z) -> (B,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def vae_loss(recon, x, mu, logvar, kl_tolerance=0.0):
    """The paper's loss: squared error summed over pixels + KL, each averaged over the batch.

    With `kl_tolerance` > 0, each sample's KL (summed over Z) is floored at kl_tolerance * Z
    nats before the batch mean, as in the paper's code (`tf.maximum(kl_loss, kl_tolerance *
    z_size)`, then `reduce_mean`): a frame whose KL is under the floor gets no KL gradient, so
    the latent keeps information instead of collapsing onto the prior. Returns Losses.
    """
    reconstruction = F.mse_loss(recon, x, reduction="none").sum(dim=(1, 2, 3)).mean()
    kl = kl_divergence(mu, logvar)  # (B,)
    kl_floored = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return Losses(reconstruction + kl_floored, reconstruction, kl.mean())


@torch.inference_mode()
def encode_frames(vae, frames, batch_size, device):
    """frames (N, 64, 64, 3) uint8 -> mu, logvar (N, Z) float32 numpy."""
    vae.eval().to(device)
    mus, logvars = [], []
    for start in range(0, len(frames), batch_size):
        mu, logvar = vae.encode(to_input(frames[start : start + batch_size], device))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def encode_episode(vae, source, target, batch_size, device):
    """The episode file `source` (frames) as a latent file `target` (its frames' mu and logvar,
    its actions, rewards and dones). Returns its number of frames."""
    episode = load_episode(source)
    mu, logvar = encode_frames(vae, episode.obs, batch_size, device)
    latents = Latents(mu=mu, logvar=logvar, action=episode.action, reward=episode.reward, done=episode.done)
    save_latents(target, latents)
    return len(episode.obs)
