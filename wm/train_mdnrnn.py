"""The MDN-RNN's training loop: stream shuffled sequence batches (z re-sampled every epoch),
forward, loss, step, log a line per epoch to dvclive. Sequences are independent windows, each
from a zero LSTM state (the paper's), or whole episodes in chunks with the state carried over."""

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wm.data import episode_chunks, sequence_batches
from wm.mdnrnn import mdnrnn_loss, sample_z

LOSS_NAMES = ("loss", "nll", "reward_mse", "done_bce")  # wm.mdnrnn.Losses' fields as logged (total: loss)


def _on(batch, device):
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


def batches(files, z_dim, *, seq_len, batch_size, buffer_episodes, rng, carry_state, shuffle=True):
    """(batch, first) pairs for the MDN-RNN: chunks of whole episodes (wm.data.episode_chunks) if
    `carry_state`, else independent windows (wm.data.sequence_batches), each one `first`."""
    if carry_state:
        return episode_chunks(files, z_dim, seq_len, batch_size, buffer_episodes, rng, shuffle)
    windows = sequence_batches(files, z_dim, seq_len, batch_size, buffer_episodes, rng, shuffle)
    return ((batch, True) for batch in windows)


def forward(mdnrnn, batch, first, state, dropout=0.0, own=0.0):
    """The MDN-RNN on a batch from `batches`, from a zero state where `first`, else from `state`
    (detached: gradients stop at the chunk's start), `dropout` on h before its heads, each step's
    input z M's own sample of it with probability `own` (see own_inputs). Returns (Losses, the
    new state)."""
    z = batch["z"]  # (B, L+1, Z)
    state = None if first else tuple(s.detach() for s in state)
    if own > 0:
        prediction, state = own_inputs(mdnrnn, z[:, :-1], batch["action"], state, dropout, own)
    else:
        prediction, state = mdnrnn(z[:, :-1], batch["action"], state, dropout)
    return mdnrnn_loss(prediction, z[:, 1:], batch["reward"], batch["done"], batch["mask"]), state


def own_inputs(mdnrnn, z, action, state, dropout, own):
    """Scheduled sampling (Bengio et al., 2015): M steps through z (B, L, Z) one step at a time,
    and each step's input is, with probability `own` (per sequence and step), M's own sample of
    it (drawn at temperature 1 from its prediction a step before, no gradient through it) instead
    of the real z. The targets stay the real next z, so M learns to predict the real future from
    the drifting inputs its dreams feed it, where teacher forcing only ever shows it real ones.
    The first step's input is always real. Returns (Prediction, the new state), as M's forward."""
    outputs, x = [], z[:, 0]
    for t in range(z.shape[1]):
        out, state = mdnrnn.lstm(torch.cat([x, action[:, t]], -1)[:, None], state)
        outputs.append(out)
        if t + 1 < z.shape[1]:
            with torch.no_grad():
                p = mdnrnn.predict(out)
                sample = sample_z(p.log_pi[:, 0], p.mu[:, 0], p.log_sigma[:, 0])
                use = torch.rand(len(x), 1, device=x.device) < own
            x = torch.where(use, sample, z[:, t + 1])
    out = torch.cat(outputs, 1)
    return mdnrnn.predict(F.dropout(out, dropout) if dropout else out), state


def train_mdnrnn(
    mdnrnn,
    train_files,
    val_files,
    *,
    epochs,
    seq_len,
    batch_size,
    buffer_episodes,
    learning_rate,
    grad_clip,
    device,
    live,
    seed,
    carry_state=False,
    dropout=0.0,
    scheduled_sampling=0.0,
):
    """Train `mdnrnn` on sequences cut from the latent files, streamed `buffer_episodes` at a
    time, z re-sampled from (mu, logvar) every epoch; `carry_state`: see `batches`; `dropout` on
    h before the heads; `scheduled_sampling`: the probability each step's input is M's own sample
    (own_inputs), ramped up linearly over the first half of the epochs (validation: neither, so
    val/nll stays comparable). Log train and validation losses per epoch. Returns the last
    epoch's metrics."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(mdnrnn.parameters(), lr=learning_rate)
    z_dim = mdnrnn.z_dim
    mdnrnn.to(device)
    sizes = dict(
        seq_len=seq_len, batch_size=batch_size, buffer_episodes=buffer_episodes, carry_state=carry_state
    )
    for epoch in range(epochs):
        mdnrnn.train()
        own = scheduled_sampling * min(1.0, (epoch + 1) / max(1, epochs // 2))
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        count = 0
        progress = tqdm(
            batches(train_files, z_dim, rng=rng, **sizes),
            desc=f"mdnrnn epoch {epoch + 1}/{epochs}",
            unit="batch",
        )
        state = None
        for batch, first in progress:
            batch = _on(batch, device)
            losses, state = forward(mdnrnn, batch, first, state, dropout, own)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(mdnrnn.parameters(), grad_clip)
            optimizer.step()
            steps = batch["mask"].sum().item()  # losses are means over valid steps
            for key, value in zip(sums, losses):
                sums[key] += value.item() * steps
            count += steps
            progress.set_postfix(nll=f"{losses.nll.item():.3f}")
        metrics = {f"train/{key}": value / count for key, value in sums.items()}
        # validation sequences are drawn with the same seed every epoch, so val/nll is comparable
        val = batches(val_files, z_dim, rng=np.random.default_rng(seed + 1), shuffle=False, **sizes)
        metrics.update(evaluate_mdnrnn(mdnrnn, val, device))
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()
    return metrics


@torch.inference_mode()
def evaluate_mdnrnn(mdnrnn, pairs, device):
    """Mean losses per valid step over (batch, first) pairs from `batches`."""
    mdnrnn.eval()
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    count = 0
    state = None
    for batch, first in pairs:
        batch = _on(batch, device)
        losses, state = forward(mdnrnn, batch, first, state)
        steps = batch["mask"].sum().item()
        for key, value in zip(sums, losses):
            sums[key] += value.item() * steps
        count += steps
    return {f"val/{key}": value / count for key, value in sums.items()} if count else {}
