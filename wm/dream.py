"""Dreaming: controllers drive inside the MDN-RNN's hallucination, one loop (dream_steps) for
CMA-ES's batched scoring, the dream video (decoded by the VAE) and the dream checks."""

import numpy as np
import torch

from wm import paths
from wm.controller import apply
from wm.env import ZOOM_STEPS
from wm.episodes import list_files, load_latents
from wm.errors import UserError
from wm.mdnrnn import sample_z
from wm.vae import to_frames, to_input

# dream mode's start latents along the track (controller.dream_starts: along): every 25th step
# (0.5 s) of each episode after the zoom-in; a 1,000-step episode gives 38 starts
START_EVERY = 25


def lstm_cell(mdnrnn):
    """An LSTMCell sharing the MDN-RNN's LSTM weights: one step costs less than nn.LSTM on T=1."""
    lstm = mdnrnn.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    cell.weight_ih, cell.weight_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    cell.bias_ih, cell.bias_hh = lstm.bias_ih_l0, lstm.bias_hh_l0
    return cell


@torch.inference_mode()
def dream_steps(mdnrnn, act, z0, *, steps, tau, generator=None, state=None, masks=None):
    """The one dream loop: B rollouts inside the MDN-RNN at once, yielding each step's new z (B, Z)
    and the wm.mdnrnn.Prediction (T = 1) it was drawn from.

    act(z, h) -> (B, A): the actions at the current z (B, Z) and LSTM output h (B, H); a controller
    (dream_returns) or actions held or replayed (tools.steer_check, tools.dream_check). z0 (B, Z):
    start latents; `state`: the LSTM's (h, c) there, each (B, H) (default zeros; see warm_states).
    Each step: act, step the LSTM, predict, sample the next z at temperature `tau`. `masks` (B, H)
    (dropout_masks), if given, multiply h before M's heads all along a rollout: each its own dream
    world (`act` still sees h itself). Runs on the MDN-RNN's device (`generator` must be there too).
    """
    device = next(mdnrnn.parameters()).device
    masks = None if masks is None else masks.to(device)
    cell = lstm_cell(mdnrnn)
    if state is None:
        h = c = torch.zeros(len(z0), mdnrnn.hidden, device=device)
    else:
        h, c = (x.to(device) for x in state)
    z = z0.to(device)
    for _ in range(steps):
        h, c = cell(torch.cat([z, act(z, h)], 1), (h, c))
        prediction = mdnrnn.predict((h if masks is None else h * masks)[:, None])
        z = sample_z(prediction.log_pi[:, 0], prediction.mu[:, 0], prediction.log_sigma[:, 0], tau, generator)
        yield z, prediction


@torch.inference_mode()
def dream_returns(
    mdnrnn, controller, params, z0, *, steps, tau, generator=None, on_step=None, state=None, masks=None
):
    """B controllers driving in the dream at once (dream_steps), for CMA-ES's batched scoring.

    controller: the shape (a wm.controller.Controller); params (B, n_params), one controller per
    rollout, or None for the controller's own; each acts on [z, h] (z alone for a z-only
    controller). z0, state, masks, tau, generator: as dream_steps. Each step adds the predicted
    reward; `on_step(z, prediction)` sees each new z and its prediction. A rollout stops counting
    once its predicted done probability passes 0.5. Returns (B,) predicted returns, on the CPU.
    """
    device = next(mdnrnn.parameters()).device
    layers = [(w.to(device), b.to(device)) for w, b in controller.batch(params)]

    def act(z, h):
        return apply(layers, torch.cat([z, h], 1) if controller.h_dim else z)  # (B, 3)

    total = torch.zeros(len(z0), device=device)
    alive = torch.ones(len(z0), device=device)
    dream = dream_steps(mdnrnn, act, z0, steps=steps, tau=tau, generator=generator, state=state, masks=masks)
    for z, prediction in dream:
        total += prediction.reward[:, 0] * alive
        alive = alive * (prediction.done_logit[:, 0] < 0).float()  # sigmoid(logit) < 0.5
        if on_step is not None:
            on_step(z, prediction)
    return total.cpu()


def dropout_masks(count, hidden, dropout, generator):
    """`count` dropout masks (count, hidden) for dream_returns: each unit kept with probability
    1 - `dropout`, kept units scaled by 1 / (1 - dropout), as M saw h while it trained with
    mdnrnn.dropout (Dropout's Dream Land: one mask, one dream world). On `generator`'s device."""
    keep = torch.rand(count, hidden, generator=generator, device=generator.device) >= dropout
    return keep.float() / (1.0 - dropout)


@torch.inference_mode()
def dream_rollout(vae, mdnrnn, controller, start_frame, *, steps, tau, seed, state=None):
    """The controller's own dream from `start_frame` (64, 64, 3) uint8 (encoded to its mean z)
    and the LSTM state `state` ((h, c), each (1, H); default zeros), every step decoded by the VAE.

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
    dream_returns(
        mdnrnn, controller, None, z0, steps=steps, tau=tau, generator=generator, on_step=record, state=state
    )
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
def states_at(mdnrnn, latents, steps):
    """The LSTM state (h, c) after reading each of `latents` (wm.episodes.Latents, B of them) up
    to each of `steps` (sorted): its z means and actions, as a driving agent's state would be
    there. Two (B, len(steps), H) tensors; a state past its episode's end means nothing."""
    device = next(mdnrnn.parameters()).device
    length = max(steps)
    z = np.zeros((len(latents), length, mdnrnn.z_dim), np.float32)
    action = np.zeros((len(latents), length, mdnrnn.action_dim), np.float32)
    for i, episode in enumerate(latents):  # zeros past an episode's end
        n = min(len(episode.action), length)
        z[i, :n], action[i, :n] = episode.mu[:n], episode.action[:n]
    inputs = torch.from_numpy(np.concatenate([z, action], 2)).to(device)
    cell = lstm_cell(mdnrnn)
    h = c = torch.zeros(len(latents), mdnrnn.hidden, device=device)
    hs, cs = [], []
    for t in range(length + 1):
        if t in steps:
            hs.append(h)
            cs.append(c)
        if t < length:
            h, c = cell(inputs[:, t], (h, c))
    return torch.stack(hs, 1), torch.stack(cs, 1)


def warm_states(mdnrnn, latents, start):
    """The LSTM state (h, c), each (B, H), after reading each of `latents` up to step `start`
    (see states_at). None (dream_returns' zeros) for start 0."""
    if start == 0:
        return None
    h, c = states_at(mdnrnn, latents, [start])
    return h[:, 0], c[:, 0]


def dream_starts(mdnrnn, z_dim, directory=paths.LATENTS, *, warm, along=True):
    """Where dreams start: each latent episode's (in `directory`) start line (the end of the
    zoom-in, where a real drive starts), and if `along` every START_EVERY-th step after it.
    Returns (z0, state): z0 (M, Z) the real latents (means) there; state the LSTM's (h, c) there,
    each (M, H), read from the episode up to the start if `warm` (for an M trained on whole
    episodes, mdnrnn.carry_state), else None: zeros, where an M trained on windows that start
    from zeros (the paper's) is at home."""
    episodes = [load_latents(path, z_dim) for path in list_files(directory, "latent")]
    steps = list(range(ZOOM_STEPS, max((len(e.mu) for e in episodes), default=0), START_EVERY))
    steps = steps if along else steps[:1]
    starts = [(i, j) for i, e in enumerate(episodes) for j, step in enumerate(steps) if step < len(e.mu)]
    if not starts:
        raise UserError(f"{directory}: no episode is longer than the {ZOOM_STEPS}-step zoom-in")
    rows, columns = (list(x) for x in zip(*starts))
    z0 = torch.from_numpy(np.stack([episodes[i].mu[steps[j]] for i, j in starts]))
    if not warm:
        return z0, None
    h, c = states_at(mdnrnn, episodes, steps)
    return z0, (h[rows, columns].cpu(), c[rows, columns].cpu())
