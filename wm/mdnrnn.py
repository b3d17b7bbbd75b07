"""MDN-RNN (the paper's M model): an LSTM over [z_t, a_t] predicting p(z_{t+1}) as a mixture of
K Gaussians per latent dimension (the paper's) or, `joint`, one mixture of K diagonal Gaussians over
the whole z, with reward and done heads; its loss and its sampler.

A joint mixture's log-weights are (..., 1, K), one set for every dimension: its loss and its
sampler pick one component per z, where the paper's pick one per dimension (so a dreamed z can mix
the modes of different futures, one dimension from each).
"""

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from wm.env import ACTION_DIM

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Prediction(NamedTuple):
    """What the MDN-RNN predicts at each step, from its hidden state."""

    log_pi: torch.Tensor  # (B, T, Z, K) mixture log-weights; a joint mixture's: (B, T, 1, K)
    mu: torch.Tensor  # (B, T, Z, K)
    log_sigma: torch.Tensor  # (B, T, Z, K)
    reward: torch.Tensor  # (B, T)
    done_logit: torch.Tensor  # (B, T)


class Losses(NamedTuple):
    """Masked mean losses over valid steps; total = nll + reward_mse + done_bce."""

    total: torch.Tensor
    nll: torch.Tensor  # per latent dimension and step, comparable across z_dim
    reward_mse: torch.Tensor
    done_bce: torch.Tensor


class MDNRNN(nn.Module):
    def __init__(self, z_dim=32, action_dim=ACTION_DIM, hidden=256, mixtures=5, joint=False):
        super().__init__()
        self.z_dim, self.action_dim, self.hidden, self.mixtures = z_dim, action_dim, hidden, mixtures
        self.joint = joint
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        weights = mixtures if joint else mixtures * z_dim
        self.head = nn.Linear(hidden, weights + 2 * mixtures * z_dim + 2)

    @property
    def config(self):
        config = {
            "z_dim": self.z_dim,
            "action_dim": self.action_dim,
            "hidden": self.hidden,
            "mixtures": self.mixtures,
        }
        return {**config, "joint": True} if self.joint else config  # the paper's: the same bytes as before

    def initial_state(self, batch, device="cpu"):
        """Zero (h, c), each (1, B, H)."""
        zeros = torch.zeros(1, batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def forward(self, z, action, state=None, dropout=0.0):
        """z: (B, T, Z), action: (B, T, A) -> (Prediction, the new LSTM state ((1, B, H), (1, B, H))).
        `dropout`: the probability each unit of h is zeroed before the heads (training only; the
        state carried on is untouched)."""
        out, state = self.lstm(torch.cat([z, action], dim=-1), state)
        return self.predict(F.dropout(out, dropout) if dropout else out), state

    def predict(self, h):
        """LSTM outputs h (B, T, H) -> Prediction."""
        y = self.head(h)  # (B, T, 3KZ+2), joint: (B, T, K+2KZ+2)
        batch, steps = y.shape[:2]
        if self.joint:
            k = self.mixtures
            log_pi = F.log_softmax(y[..., :k], dim=-1)[:, :, None]  # (B, T, 1, K)
            mixture = y[..., k:-2].view(batch, steps, 2, self.z_dim, k)
            return Prediction(log_pi, mixture[:, :, 0], mixture[:, :, 1], y[..., -2], y[..., -1])
        mixture = y[..., :-2].view(batch, steps, 3, self.z_dim, self.mixtures)
        log_pi = F.log_softmax(mixture[:, :, 0], dim=-1)
        return Prediction(log_pi, mixture[:, :, 1], mixture[:, :, 2], y[..., -2], y[..., -1])


def mdn_nll(log_pi, mu, log_sigma, target):
    """Negative log-likelihood of `target` (B, T, Z) under the mixtures (B, T, Z, K): (B, T, Z).
    A joint mixture's (log_pi (B, T, 1, K)) is of the whole z, shared out evenly over its Z
    dimensions, so that its mean over them is comparable with the paper's."""
    y = target.unsqueeze(-1)
    log_prob = -0.5 * ((y - mu) * torch.exp(-log_sigma)).pow(2) - log_sigma - LOG_SQRT_2PI
    if log_pi.shape[-2] == 1 < mu.shape[-2]:  # joint
        nll = -torch.logsumexp(log_pi[..., 0, :] + log_prob.sum(-2), dim=-1)  # (B, T)
        return (nll / mu.shape[-2]).unsqueeze(-1).expand(target.shape)
    return -torch.logsumexp(log_pi + log_prob, dim=-1)


def mdnrnn_loss(prediction, z_next, reward, done, mask):
    """Losses of a Prediction against z_next (B, T, Z), reward, done (B, T), over the steps
    where mask (B, T) is True. Returns Losses."""
    mask = mask.float()
    steps = mask.sum().clamp(min=1)
    nll = (
        mdn_nll(prediction.log_pi, prediction.mu, prediction.log_sigma, z_next).mean(dim=-1) * mask
    ).sum() / steps
    reward_mse = (F.mse_loss(prediction.reward, reward, reduction="none") * mask).sum() / steps
    done_bce = (
        F.binary_cross_entropy_with_logits(prediction.done_logit, done.float(), reduction="none") * mask
    ).sum() / steps
    return Losses(nll + reward_mse + done_bce, nll, reward_mse, done_bce)


def sample_z(log_pi, mu, log_sigma, tau=1.0, generator=None):
    """Draw z (..., Z) from mixtures (..., Z, K) at temperature tau (a joint mixture: log_pi
    (..., 1, K), one component for the whole z).

    The component is picked by Gumbel-max on log_pi / tau (several times cheaper than
    torch.distributions.Categorical); its Gaussian is widened by sqrt(tau), as in the paper.
    """
    uniform = torch.rand(log_pi.shape, generator=generator, device=log_pi.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-10, 1.0)))
    k = torch.argmax(log_pi / tau + gumbel, dim=-1, keepdim=True).expand(*mu.shape[:-1], 1)
    mean = mu.gather(-1, k).squeeze(-1)
    sigma = torch.exp(log_sigma.gather(-1, k).squeeze(-1))
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + sigma * math.sqrt(tau) * noise


def likeliest_mean(prediction):
    """The mean of each step's likeliest component (B, T, Z): M's one best guess of the next z."""
    k = prediction.log_pi.argmax(-1, keepdim=True).expand(*prediction.mu.shape[:-1], 1)
    return prediction.mu.gather(-1, k).squeeze(-1)
