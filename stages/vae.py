"""Stage vae: train the ConvVAE on the collected frames, validating on held-out episodes.

outs: models/vae.pt; metrics/vae/ (dvclive: metrics.json, loss curves); metrics/vae_reconstruction.png
"""

import numpy as np
import torch

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.data import load_frames, split_files
from wm.episodes import episode_length, list_files
from wm.errors import main
from wm.io import Timer, open_live, resolve_device, save_checkpoint
from wm.train_vae import train_vae
from wm.vae import ConvVAE, to_frames, to_input
from wm.video import upscale, write_png


def reconstruction_grid(vae, frames, device):
    """Originals (top row) over reconstructions from mu (bottom row), as one RGB image."""
    with torch.inference_mode():
        mu, _ = vae.encode(to_input(frames, device))
        recon = to_frames(vae.decode(mu))
    rows = [np.concatenate(list(frames), axis=1), np.concatenate(list(recon), axis=1)]
    return upscale(np.concatenate(rows, axis=0), 256)


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.vae
    timer = Timer("vae")
    train_files, val_files = split_files(list_files(paths.ROLLOUTS, "episode"), cfg.val_fraction)
    # every file's header is checked before training: a truncated file stops the stage now
    lengths = {path: episode_length(path) + 1 for path in train_files + val_files}
    n_train = sum(lengths[path] for path in train_files)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    vae = ConvVAE(cfg.z_dim)
    with open_live(paths.VAE_METRICS) as live:
        train_vae(
            vae,
            train_files,
            val_files,
            n_train_frames=n_train,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            buffer_episodes=cfg.buffer_episodes,
            learning_rate=cfg.learning_rate,
            kl_tolerance=cfg.kl_tolerance,
            device=device,
            live=live,
            seed=params.seed,
        )
        live.log_metric("train_frames", n_train, plot=False)
        live.log_metric("val_frames", sum(lengths[path] for path in val_files), plot=False)
    save_checkpoint(paths.VAE, vae.config, vae.cpu().state_dict())
    shown = load_frames((val_files or train_files)[:1])
    picks = shown[np.linspace(0, len(shown) - 1, 8).astype(int)]
    write_png(paths.VAE_RECONSTRUCTION, reconstruction_grid(vae, picks, "cpu"))
    timer.save()


if __name__ == "__main__":
    run()
