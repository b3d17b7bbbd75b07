"""Stage controller: CMA-ES over the linear controller [z, h] -> action, each candidate driving
the real CarRacing-v3 with the VAE encoding every frame and the MDN-RNN carrying h (the paper's
method); the whole population drives in batches of env.batch_size tracks.

outs: models/controller.pt; metrics/controller/ (dvclive: best/mean/worst per generation)
"""
from wm import paths
from wm.config import load_params
from wm.controller import Controller, n_params, save_controller
from wm.errors import main
from wm.evolve import evolve_controller
from wm.agents import WorldModelAgent
from wm.io import Timer, load_model, open_live
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE
from wm.vector_env import make_vector_env


@main
def run():
    params = load_params()
    cfg = params.controller
    vae = load_model(paths.VAE, ConvVAE, z_dim=params.vae.z_dim)
    mdnrnn = load_model(paths.MDNRNN, MDNRNN, z_dim=vae.z_dim)
    timer = Timer()
    agent = WorldModelAgent(vae, mdnrnn)
    with make_vector_env(params.env.backend, params.env.max_steps, cfg.workers) as venv, \
            open_live("metrics/controller") as live:
        best_params, best_return = evolve_controller(
            venv, agent, params.env.batch_size, n_params(vae.z_dim, mdnrnn.hidden), cfg.population,
            cfg.rollouts, cfg.generations, cfg.sigma0, params.seed, live)
        live.log_metric("best_return", best_return, plot=False)
        live.log_metric("seconds", timer.seconds, plot=False)
    save_controller(paths.CONTROLLER, Controller(vae.z_dim, mdnrnn.hidden, best_params))


if __name__ == "__main__":
    run()
