"""Stage mdnrnn: train the MDN-RNN on (z_t, a_t) -> z_{t+1}, reward, done from the latents.
Stage round_mdnrnn@N (`python -m stages.mdnrnn N`, iterate.rounds): round N of the iterative
procedure trains round N-1's MDN-RNN on for iterate.mdnrnn_epochs on round N's latents (the
previous data and the round's new episodes).

outs: models/mdnrnn.pt; metrics/mdnrnn/ (dvclive: metrics.json, loss curves);
round N: models/rounds/N/mdnrnn.pt, metrics/rounds/N/mdnrnn/
"""

import sys

import torch

from wm import paths
from wm.compute import use_threads
from wm.config import load_params, parse_round
from wm.data import split_files
from wm.episodes import episode_length, list_files
from wm.errors import main
from wm.io import Timer, load_model, open_live, resolve_device, save_checkpoint
from wm.mdnrnn import MDNRNN
from wm.train_mdnrnn import train_mdnrnn


@main
def run():
    params = load_params()
    use_threads(params.threads)
    n = parse_round(sys.argv[1:], params, "python -m stages.mdnrnn [N]")
    cfg = params.mdnrnn
    timer = Timer(f"mdnrnn@{n}" if n else "mdnrnn")
    train_files, val_files = split_files(list_files(paths.round_latents(n), "latent"), cfg.val_fraction)
    for path in train_files + val_files:  # a truncated file stops the stage before training
        episode_length(path)
    torch.manual_seed(params.seed)
    if n:  # round N trains round N-1's on
        mdnrnn = load_model(paths.round_models(n - 1) / paths.MDNRNN.name, MDNRNN, z_dim=params.vae.z_dim)
    else:
        joint = cfg.mixture == "joint"
        mdnrnn = MDNRNN(params.vae.z_dim, hidden=cfg.hidden, mixtures=cfg.mixtures, joint=joint)
    metrics = paths.round_metrics(n) / "mdnrnn" if n else paths.MDNRNN_METRICS
    with open_live(metrics) as live:
        train_mdnrnn(
            mdnrnn,
            train_files,
            val_files,
            epochs=params.iterate.mdnrnn_epochs if n else cfg.epochs,
            seq_len=cfg.seq_len,
            batch_size=cfg.batch_size,
            buffer_episodes=cfg.buffer_episodes,
            learning_rate=cfg.learning_rate,
            grad_clip=cfg.grad_clip,
            device=resolve_device(params.device),
            live=live,
            seed=params.seed,
            carry_state=cfg.carry_state,
            dropout=cfg.dropout,
            scheduled_sampling=cfg.scheduled_sampling,
        )
    save_checkpoint(paths.round_models(n) / paths.MDNRNN.name, mdnrnn.config, mdnrnn.cpu().state_dict())
    timer.save()


if __name__ == "__main__":
    run()
