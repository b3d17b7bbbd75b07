"""Stage mdnrnn: train the MDN-RNN on (z_t, a_t) -> z_{t+1}, reward, done from the latents.

outs: models/mdnrnn.pt; metrics/mdnrnn/ (dvclive: metrics.json, loss curves)
"""

import torch

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.data import split_files
from wm.episodes import episode_length, list_files
from wm.errors import main
from wm.io import Timer, open_live, resolve_device, save_checkpoint
from wm.mdnrnn import MDNRNN
from wm.train_mdnrnn import train_mdnrnn


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.mdnrnn
    timer = Timer("mdnrnn")
    train_files, val_files = split_files(list_files(paths.LATENTS, "latent"), cfg.val_fraction)
    for path in train_files + val_files:  # a truncated file stops the stage before training
        episode_length(path)
    torch.manual_seed(params.seed)
    mdnrnn = MDNRNN(params.vae.z_dim, hidden=cfg.hidden, mixtures=cfg.mixtures)
    with open_live(paths.MDNRNN_METRICS) as live:
        train_mdnrnn(
            mdnrnn,
            train_files,
            val_files,
            epochs=cfg.epochs,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            buffer_episodes=cfg.buffer_episodes,
            learning_rate=cfg.learning_rate,
            grad_clip=cfg.grad_clip,
            device=resolve_device(params.device),
            live=live,
            seed=params.seed,
            carry_state=cfg.carry_state,
        )
    save_checkpoint(paths.MDNRNN, mdnrnn.config, mdnrnn.cpu().state_dict())
    timer.save()


if __name__ == "__main__":
    run()
