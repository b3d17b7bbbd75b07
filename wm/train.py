"""The training loops of the VAE and the MDN-RNN, and batched encoding. Each loop is one plain
function: shuffle, forward, loss, step, log a line per epoch to dvclive."""
import numpy as np
import torch
from tqdm import tqdm

from wm.data import make_sequences
from wm.mdnrnn import mdnrnn_loss
from wm.vae import to_input, vae_loss


def train_vae(vae, train_frames, val_frames, epochs, batch_size, learning_rate, kl_tolerance,
              device, live, seed):
    """Train `vae` on train_frames (N, 64, 64, 3) uint8; log train/val reconstruction and KL
    per epoch to `live`. Returns the last epoch's metrics."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    frames = torch.from_numpy(train_frames)
    vae.to(device)
    for epoch in range(epochs):
        vae.train()
        order = torch.randperm(len(frames), generator=generator)
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
        batches = tqdm(order.split(batch_size), desc=f"vae epoch {epoch + 1}/{epochs}", unit="batch")
        for index in batches:
            x = to_input(frames[index], device)  # (B, 3, 64, 64) in [0, 1]
            recon, mu, logvar = vae(x)
            loss, reconstruction, kl = vae_loss(recon, x, mu, logvar, kl_tolerance)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in zip(sums, (loss, reconstruction, kl)):
                sums[key] += value.item() * len(index)
            batches.set_postfix(recon=f"{reconstruction.item():.1f}", kl=f"{kl.item():.1f}")
        metrics = {f"train/{key}": value / len(frames) for key, value in sums.items()}
        metrics.update(evaluate_vae(vae, val_frames, batch_size, device))
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()
    return metrics


@torch.inference_mode()
def evaluate_vae(vae, frames, batch_size, device):
    """Mean reconstruction error (decoding mu) and KL over frames (N, 64, 64, 3) uint8."""
    vae.eval()
    if len(frames) == 0:
        return {}
    reconstruction = kl = 0.0
    for start in range(0, len(frames), batch_size):
        x = to_input(frames[start:start + batch_size], device)
        mu, logvar = vae.encode(x)
        _, batch_reconstruction, batch_kl = vae_loss(vae.decode(mu), x, mu, logvar)
        reconstruction += batch_reconstruction.item() * len(x)
        kl += batch_kl.item() * len(x)
    return {"val/reconstruction": reconstruction / len(frames), "val/kl": kl / len(frames)}


@torch.inference_mode()
def encode_frames(vae, frames, batch_size, device):
    """frames (N, 64, 64, 3) uint8 -> mu, logvar (N, Z) float32 numpy."""
    vae.eval().to(device)
    mus, logvars = [], []
    for start in range(0, len(frames), batch_size):
        mu, logvar = vae.encode(to_input(frames[start:start + batch_size], device))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def _tensors(sequences, device):
    return {key: torch.from_numpy(value).to(device) for key, value in sequences.items()}


def train_mdnrnn(mdnrnn, train_latents, val_latents, epochs, seq_len, batch_size, learning_rate,
                 grad_clip, device, live, seed):
    """Train `mdnrnn` on sequences cut from the latent episodes, z re-sampled from (mu, logvar)
    every epoch; log train and validation losses per epoch. Returns the last epoch's metrics."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(mdnrnn.parameters(), lr=learning_rate)
    # validation sequences are drawn once, so val/nll is comparable from epoch to epoch
    val = _tensors(make_sequences(val_latents, seq_len, np.random.default_rng(seed + 1)), device) \
        if val_latents else None
    mdnrnn.to(device)
    for epoch in range(epochs):
        mdnrnn.train()
        train = _tensors(make_sequences(train_latents, seq_len, rng), device)
        order = torch.from_numpy(rng.permutation(len(train["z"])))
        sums = dict.fromkeys(("loss", "nll", "reward_mse", "done_bce"), 0.0)
        batches = tqdm(order.split(batch_size), desc=f"mdnrnn epoch {epoch + 1}/{epochs}", unit="batch")
        for index in batches:
            z = train["z"][index]  # (B, L+1, Z)
            outputs = mdnrnn(z[:, :-1], train["action"][index])
            losses = mdnrnn_loss(outputs, z[:, 1:], train["reward"][index], train["done"][index],
                                 train["mask"][index])
            optimizer.zero_grad(set_to_none=True)
            losses[0].backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(mdnrnn.parameters(), grad_clip)
            optimizer.step()
            for key, value in zip(sums, losses):
                sums[key] += value.item() * len(index)
            batches.set_postfix(nll=f"{losses[1].item():.3f}")
        metrics = {f"train/{key}": value / len(order) for key, value in sums.items()}
        if val is not None:
            metrics.update(evaluate_mdnrnn(mdnrnn, val, batch_size))
        for key, value in metrics.items():
            live.log_metric(key, value)
        live.next_step()
    return metrics


@torch.inference_mode()
def evaluate_mdnrnn(mdnrnn, sequences, batch_size):
    """Mean validation losses over `sequences` (tensors from make_sequences)."""
    mdnrnn.eval()
    sums = dict.fromkeys(("loss", "nll", "reward_mse", "done_bce"), 0.0)
    n = len(sequences["z"])
    for start in range(0, n, batch_size):
        part = {key: value[start:start + batch_size] for key, value in sequences.items()}
        outputs = mdnrnn(part["z"][:, :-1], part["action"])
        losses = mdnrnn_loss(outputs, part["z"][:, 1:], part["reward"], part["done"], part["mask"])
        for key, value in zip(sums, losses):
            sums[key] += value.item() * len(part["z"])
    return {f"val/{key}": value / n for key, value in sums.items()}
