"""Dreaming: the controller drives inside the MDN-RNN's hallucination, decoded by the VAE."""
import torch

from wm.controller import apply
from wm.mdnrnn import sample_z
from wm.vae import to_frames, to_input


def _inputs(controller, z, h):
    return torch.cat([z, h], 1) if controller.h_dim else z


@torch.inference_mode()
def dream_rollout(vae, mdnrnn, controller, start_frame, steps, tau, seed):
    """Encode `start_frame` (64, 64, 3) uint8, then for `steps` steps: act on [z, h] (z alone for
    a z-only controller), step the MDN-RNN, sample the next z at temperature `tau` and decode it.

    Returns (frames, rewards, dones): (steps+1) decoded (64, 64, 3) uint8 frames (the first is
    the reconstruction of the start frame) and the predicted reward and done probability per step.
    """
    generator = torch.Generator().manual_seed(seed)
    z, _ = vae.encode(to_input(start_frame[None], "cpu"))  # (1, Z)
    state = mdnrnn.initial_state(1)
    h = state[0][0]  # (1, H)
    frames, rewards, dones = [to_frames(vae.decode(z))[0]], [], []
    layers = controller.batch()
    for _ in range(steps):
        action = apply(layers, _inputs(controller, z, h))  # (1, 3)
        log_pi, mu, log_sigma, reward, done_logit, state = mdnrnn(z[:, None], action[:, None], state)
        z = sample_z(log_pi[:, 0], mu[:, 0], log_sigma[:, 0], tau, generator)  # (1, Z)
        h = state[0][0]
        frames.append(to_frames(vae.decode(z))[0])
        rewards.append(float(reward))
        dones.append(float(torch.sigmoid(done_logit)))
    return frames, rewards, dones


def lstm_cell(mdnrnn):
    """An LSTMCell sharing the MDN-RNN's LSTM weights: one step costs less than nn.LSTM on T=1."""
    lstm = mdnrnn.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    cell.weight_ih, cell.weight_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    cell.bias_ih, cell.bias_hh = lstm.bias_ih_l0, lstm.bias_hh_l0
    return cell


@torch.inference_mode()
def dream_returns(mdnrnn, controller, params, z0, steps, tau, generator=None):
    """Many controllers driving in the dream at once, for scoring them without the real env.

    controller: the shape (a wm.controller.Controller); params (B, n_params): one controller per
    rollout; z0 (B, Z): start latents. Each step: act on [z, h], step the LSTM, add the
    predicted reward, sample the next z at temperature `tau`. A rollout stops counting once its
    predicted done probability passes 0.5. Returns (B,) predicted returns.
    """
    layers = controller.batch(params)
    cell = lstm_cell(mdnrnn)
    batch = len(z0)
    h = c = torch.zeros(batch, mdnrnn.hidden)
    z, total = z0, torch.zeros(batch)
    alive = torch.ones(batch)
    for _ in range(steps):
        action = apply(layers, _inputs(controller, z, h))
        h, c = cell(torch.cat([z, action], 1), (h, c))
        log_pi, mu, log_sigma, reward, done_logit = mdnrnn.split_head(mdnrnn.head(h)[:, None])
        total += reward[:, 0] * alive
        alive = alive * (done_logit[:, 0] < 0).float()  # sigmoid(logit) < 0.5
        z = sample_z(log_pi[:, 0], mu[:, 0], log_sigma[:, 0], tau, generator)
    return total
