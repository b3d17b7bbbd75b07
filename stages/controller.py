"""Stage controller: CMA-ES over the controller on [z, h] (the paper's full world model).
Stage controller_z (`python -m stages.controller z`): the same on z alone (the paper's ablation).

controller.mode real: each candidate drives the real CarRacing-v3, the VAE encoding every frame
and the MDN-RNN carrying h; the whole population drives in batches of env.batch_size tracks.
controller.mode dream: each candidate drives batched dreams of the MDN-RNN, scored by its reward
and done heads at temperature dream_temperature, starting from real latents after the zoom-in.
Either way CMA-ES's final mean and the `finalists` best candidates then drive `select_tracks`
real tracks, and the best of them is saved.

outs: models/controller[_z].pt; metrics/controller[_z]/ (dvclive: fitness per generation, selection)
"""
import sys

import numpy as np
import torch

from wm import paths
from wm.agents import WorldModelAgent
from wm.config import load_params
from wm.controller import Controller, save_controller
from wm.episodes import list_files, load_latents
from wm.env import track_seeds
from wm.errors import UserError, main
from wm.evolve import DreamScore, RealScore, evolve, mean_returns
from wm.io import Timer, load_model, open_live
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE
from wm.vector_env import make_vector_env

ZOOM_STEPS = 50  # CarRacing's zoom-in animation lasts its first second (50 frames)
START_EVERY = 25  # dream start latents: every 25th step of each episode after the zoom-in


def dream_starts(z_dim):
    """(M, Z) real latents (means) to start dreams from: every START_EVERY-th step of every
    latent episode after the zoom-in."""
    starts = [load_latents(path, z_dim).mu[ZOOM_STEPS::START_EVERY]
              for path in list_files(paths.LATENTS, "latent")]
    starts = np.concatenate(starts)
    if not len(starts):
        raise UserError(f"{paths.LATENTS}: no episode is longer than the {ZOOM_STEPS}-step zoom-in")
    return torch.from_numpy(starts)


@main
def run():
    which = sys.argv[1:] or ["zh"]
    if which not in (["zh"], ["z"]):
        raise UserError(f"usage: python -m stages.controller [z], got {' '.join(which)}")
    z_only = which == ["z"]
    params = load_params()
    cfg = params.controller
    vae = load_model(paths.VAE, ConvVAE, z_dim=params.vae.z_dim)
    mdnrnn = load_model(paths.MDNRNN, MDNRNN, z_dim=vae.z_dim)
    controller = Controller(vae.z_dim, 0 if z_only else mdnrnn.hidden, cfg.hidden)
    agent = WorldModelAgent(vae, mdnrnn, controller)
    timer = Timer()
    with make_vector_env(params.env.backend, params.env.max_steps, cfg.workers) as venv, \
            open_live("metrics/controller_z" if z_only else "metrics/controller") as live:
        if cfg.mode == "real":
            score = RealScore(venv, agent, params.env.batch_size, cfg.rollouts)
        else:
            score = DreamScore(mdnrnn, controller, dream_starts(vae.z_dim), cfg.rollouts,
                               cfg.dream_steps, cfg.dream_temperature, params.seed)
        finalists = evolve(score, controller.size, cfg.population, cfg.generations, cfg.sigma0,
                           params.seed, live, cfg.finalists)
        # tracks after those the real mode trained on
        seeds = track_seeds("controller", cfg.select_tracks, start=cfg.generations * cfg.rollouts)
        returns = mean_returns(venv, agent, params.env.batch_size, finalists, seeds, desc="select")
        pick = int(returns.argmax())
        live.log_metric("select/return", float(returns[pick]), plot=False)
        live.log_metric("select/finalist", pick, plot=False)  # 0: CMA-ES's mean
        live.log_metric("select/mean_return", float(returns[0]), plot=False)
        live.log_metric("seconds", timer.seconds, plot=False)
    save_controller(paths.CONTROLLER_Z if z_only else paths.CONTROLLER,
                    Controller(controller.z_dim, controller.h_dim, cfg.hidden, finalists[pick]))


if __name__ == "__main__":
    run()
