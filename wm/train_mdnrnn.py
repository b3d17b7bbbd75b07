"""The MDN-RNN's training loop: stream shuffled sequence batches (z re-sampled every epoch),
forward, loss, step, log a line per epoch to dvclive."""

import numpy as np
import torch
from tqdm import tqdm

from wm.data import sequence_batches
from wm.mdnrnn import mdnrnn_loss

LOSS_NAMES = ("loss", "nll", "reward_mse", "done_bce")  # wm.mdnrnn.Losses' fields as logged (total: loss)


def _on(batch, device):
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


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
):
    """Train `mdnrnn` on sequences cut from the latent files, streamed `buffer_episodes` at a
    time, z re-sampled from (mu, logvar) every epoch; log train and validation losses per
    epoch. Returns the last epoch's metrics."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(mdnrnn.parameters(), lr=learning_rate)
    z_dim = mdnrnn.z_dim
    mdnrnn.to(device)
    for epoch in range(epochs):
        mdnrnn.train()
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        count = 0
        batches = tqdm(
            sequence_batches(train_files, z_dim, seq_len, batch_size, buffer_episodes, rng),
            desc=f"mdnrnn epoch {epoch + 1}/{epochs}",
            unit="batch",
        )
        for batch in batches:
            batch = _on(batch, device)
            z = batch["z"]  # (B, L+1, Z)
            prediction, _ = mdnrnn(z[:, :-1], batch["action"])
            losses = mdnrnn_loss(prediction, z[:, 1:], batch["reward"], batch["done"], batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(mdnrnn.parameters(), grad_clip)
            optimizer.step()
            for key, value in zip(sums, losses):
                sums[key] += value.item() * len(z)
            count += len(z)
            batches.set_postfix(nll=f"{losses.nll.item():.3f}")
        metrics = {f"train/{key}": value / count for key, value in sums.items()}
        # validation sequences are drawn with the same seed every epoch, so val/nll is comparable
        val = sequence_batches(
            val_files,
            z_dim,
            seq_len,
            batch_size,
            buffer_episodes,
            np.random.default_rng(seed + 1),
            shuffle=False,
        )
        metrics.update(evaluate_mdnrnn(mdnrnn, val, device))
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()
    return metrics


@torch.inference_mode()
def evaluate_mdnrnn(mdnrnn, batches, device):
    """Mean losses over batches of sequences (dicts of arrays from sequence_batches)."""
    mdnrnn.eval()
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    count = 0
    for batch in batches:
        batch = _on(batch, device)
        prediction, _ = mdnrnn(batch["z"][:, :-1], batch["action"])
        losses = mdnrnn_loss(prediction, batch["z"][:, 1:], batch["reward"], batch["done"], batch["mask"])
        for key, value in zip(sums, losses):
            sums[key] += value.item() * len(batch["z"])
        count += len(batch["z"])
    return {f"val/{key}": value / count for key, value in sums.items()} if count else {}
