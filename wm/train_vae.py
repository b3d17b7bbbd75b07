"""The VAE's training loop: stream shuffled frame batches, forward, loss, step, log a line per
epoch to dvclive."""

import numpy as np
import torch
from tqdm import tqdm

from wm.data import frame_batches
from wm.vae import to_input, vae_loss


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
