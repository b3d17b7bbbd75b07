"""The training loops of the VAE and the MDN-RNN, and batched encoding. Each loop is one plain
function: stream shuffled batches, forward, loss, step, log a line per epoch to dvclive."""

import numpy as np
import torch
from tqdm import tqdm

from wm.data import frame_batches, sequence_batches
from wm.mdnrnn import mdnrnn_loss
from wm.vae import to_input, vae_loss

LOSS_NAMES = ("loss", "nll", "reward_mse", "done_bce")  # wm.mdnrnn.Losses' fields as logged (total: loss)


def train_vae(
    vae,
    train_files,
    val_files,
    *,
    n_train_frames,
    epochs,
    batch_size,
    buffer_episodes,
    learning_rate,
    kl_tolerance,
    device,
    live,
    seed,
):
    """Train `vae` on the frames of the episode files `train_files` (n_train_frames in all),
    streamed `buffer_episodes` at a time; log train/val reconstruction and KL per epoch to
    `live`. Returns the last epoch's metrics."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    vae.to(device)
    for epoch in range(epochs):
        vae.train()
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}  # the Losses fields, by position
        with tqdm(total=n_train_frames, desc=f"vae epoch {epoch + 1}/{epochs}", unit="img") as bar:
            for frames in frame_batches(train_files, batch_size, buffer_episodes, rng):
                x = to_input(frames, device)  # (B, 3, 64, 64) in [0, 1]
                recon, mu, logvar = vae(x)
                losses = vae_loss(recon, x, mu, logvar, kl_tolerance)
                optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                optimizer.step()
                for key, value in zip(sums, losses):
                    sums[key] += value.item() * len(x)
                bar.update(len(x))
                bar.set_postfix(recon=f"{losses.reconstruction.item():.1f}", kl=f"{losses.kl.item():.1f}")
        metrics = {f"train/{key}": value / n_train_frames for key, value in sums.items()}
        metrics.update(evaluate_vae(vae, frame_batches(val_files, batch_size, buffer_episodes), device))
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()
    return metrics


@torch.inference_mode()
def evaluate_vae(vae, batches, device):
    """Mean reconstruction error (decoding mu) and KL over batches of (B, 64, 64, 3) uint8 frames."""
    vae.eval()
    reconstruction = kl = 0.0
    count = 0
    for frames in batches:
        x = to_input(frames, device)
        mu, logvar = vae.encode(x)
        losses = vae_loss(vae.decode(mu), x, mu, logvar)
        reconstruction += losses.reconstruction.item() * len(x)
        kl += losses.kl.item() * len(x)
        count += len(x)
    return {"val/reconstruction": reconstruction / count, "val/kl": kl / count} if count else {}


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
