"""Dreaming: controllers drive inside the MDN-RNN's hallucination, one loop for CMA-ES's batched
scoring and for the dream video (decoded by the VAE)."""

import numpy as np
import torch

from wm import paths
from wm.controller import apply
from wm.env import ZOOM_STEPS
from wm.episodes import list_files, load_latents
from wm.errors import UserError
from wm.mdnrnn import sample_z
from wm.vae import to_frames, to_input

# dream mode's start latents: every 25th step (0.5 s) of each episode after the zoom-in; a 1,000-step
# episode gives 38 starts, spread along the track
START_EVERY = 25


def lstm_cell(mdnrnn):
    """An LSTMCell sharing the MDN-RNN's LSTM weights: one step costs less than nn.LSTM on T=1."""
    lstm = mdnrnn.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    cell.weight_ih, cell.weight_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    cell.bias_ih, cell.bias_hh = lstm.bias_ih_l0, lstm.bias_hh_l0
    return cell


@torch.inference_mode()
def dream_returns(mdnrnn, controller, params, z0, *, steps, tau, generator=None, on_step=None, state=None):
    """B controllers driving in the dream at once.

    controller: the shape (a wm.controller.Controller); params (B, n_params), one controller per
    rollout, or None for the controller's own; z0 (B, Z): start latents; `state`: the LSTM's
    (h, c) there, each (B, H) (default zeros; see warm_states). Each step: act on
    [z, h] (z alone for a z-only controller), step the LSTM, add the predicted reward, sample the
    next z at temperature `tau`; `on_step(z, prediction)` sees each new z (B, Z) and the
    wm.mdnrnn.Prediction (T = 1) it was drawn from. A rollout stops counting once its predicted
    done probability passes 0.5. Runs on the MDN-RNN's device (`generator` must be there too).
    Returns (B,) predicted returns, on the CPU.
    """
    device = next(mdnrnn.parameters()).device
    layers = [(w.to(device), b.to(device)) for w, b in controller.batch(params)]
    cell = lstm_cell(mdnrnn)
    batch = len(z0)
    if state is None:
        h = c = torch.zeros(batch, mdnrnn.hidden, device=device)
    else:
        h, c = (x.to(device) for x in state)
    z, total = z0.to(device), torch.zeros(batch, device=device)
    alive = torch.ones(batch, device=device)
    for _ in range(steps):
        action = apply(layers, torch.cat([z, h], 1) if controller.h_dim else z)  # (B, 3)
        h, c = cell(torch.cat([z, action], 1), (h, c))
        prediction = mdnrnn.predict(h[:, None])
        total += prediction.reward[:, 0] * alive
        alive = alive * (prediction.done_logit[:, 0] < 0).float()  # sigmoid(logit) < 0.5
        z = sample_z(prediction.log_pi[:, 0], prediction.mu[:, 0], prediction.log_sigma[:, 0], tau, generator)
        if on_step is not None:
            on_step(z, prediction)
    return total.cpu()


@torch.inference_mode()
def dream_rollout(vae, mdnrnn, controller, start_frame, *, steps, tau, seed):
    """The controller's own dream from `start_frame` (64, 64, 3) uint8 (encoded to its mean z),
    every step decoded by the VAE.

    Returns (frames, rewards, dones): (steps+1) decoded (64, 64, 3) uint8 frames (the first is
    the reconstruction of the start frame) and the predicted reward and done probability per step.
    """
    device = next(vae.parameters()).device
    z0, _ = vae.encode(to_input(start_frame[None], device))  # (1, Z)
    frames, rewards, dones = [to_frames(vae.decode(z0))[0]], [], []

    def record(z, prediction):
        frames.append(to_frames(vae.decode(z))[0])
        rewards.append(float(prediction.reward))
        dones.append(float(torch.sigmoid(prediction.done_logit)))

    generator = torch.Generator(device).manual_seed(seed)
    dream_returns(mdnrnn, controller, None, z0, steps=steps, tau=tau, generator=generator, on_step=record)
    return frames, rewards, dones


ROAD_GREY = (70, 140)  # decoded road: grey (channels within ROAD_SPREAD) at these levels
ROAD_SPREAD = 12
FIELD_ROWS = 56  # of 64: the rows above the dashboard


def road_mask(frames):
    """(N, 64, 64, 3) uint8 frames -> (N, FIELD_ROWS, 64) bool: the road pixels of the field."""
    field = frames[:, :FIELD_ROWS].astype(np.int16)
    grey = field.max(-1) - field.min(-1) <= ROAD_SPREAD
    level = field.mean(-1)
    return grey & (level >= ROAD_GREY[0]) & (level <= ROAD_GREY[1])


def road_agreement(real, dream):
    """Per step, the intersection over union of the road pixels of the real and the dreamed
    frames (equal-length lists of (64, 64, 3) uint8); 1.0 where neither shows road."""
    a, b = road_mask(np.stack(real)), road_mask(np.stack(dream))
    union = (a | b).sum((1, 2))
    return np.where(union > 0, (a & b).sum((1, 2)) / np.maximum(union, 1), 1.0)


@torch.inference_mode()
def warm_states(mdnrnn, latents, start):
    """The LSTM state (h, c), each (B, H), after reading each of `latents` (wm.episodes.Latents,
    B of them) up to step `start`: its z means and actions, as a driving agent's state would be
    there. None (dream_returns' zeros) for start 0."""
    if start == 0:
        return None
    z = torch.from_numpy(np.stack([e.mu[:start] for e in latents]))
    action = torch.from_numpy(np.stack([e.action[:start] for e in latents]))
    _, (h, c) = mdnrnn(z, action)
    return h[0], c[0]


def dream_starts(z_dim):
    """(M, Z) real latents (means) to start dreams from: every START_EVERY-th step of every
    latent episode after the zoom-in."""
    starts = [
        load_latents(path, z_dim).mu[ZOOM_STEPS::START_EVERY] for path in list_files(paths.LATENTS, "latent")
    ]
    starts = np.concatenate(starts)
    if not len(starts):
        raise UserError(f"{paths.LATENTS}: no episode is longer than the {ZOOM_STEPS}-step zoom-in")
    return torch.from_numpy(starts)
