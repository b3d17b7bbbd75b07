"""Stage controller: CMA-ES over the controller on [z, h] (the paper's full world model).
Stage controller_z (`python -m stages.controller z`): the same on z alone (the paper's ablation).

controller.mode real: each candidate drives the real CarRacing-v3, the VAE encoding every frame
and the MDN-RNN carrying h; the whole population drives in batches of env.batch_size tracks.
controller.mode dream: each candidate drives batched dreams of the MDN-RNN, scored by its reward
and done heads at temperature dream_temperature, starting from real latents: each episode's start
line (dream_starts: line) or points along it (along).
Either way CMA-ES's final mean and the `finalists` best candidates are then scored once more
and the best of them is saved: on `select_tracks` real tracks on `select_backend` (real mode), or
on `select_tracks` dreams from starts no generation drew (dream mode: the controller never meets
the real env). With `watch_tracks`, each generation's best candidate also drives that many fixed
validate tracks, a readout logged beside its fitness (`watch/real`, `watch/fitness`: the dream's
score against the real one in dream mode) that neither CMA-ES nor the selection sees.

outs: models/controller[_z].pt; metrics/controller[_z]/ (dvclive: fitness per generation, selection)
"""

import dataclasses
import sys
from contextlib import ExitStack

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.controller import Controller, save_controller
from wm.dream import dream_starts
from wm.env import track_seeds
from wm.errors import UserError, main
from wm.evolve import DreamScore, Progress, RealScore, evolve, mean_returns
from wm.executor import make_executor
from wm.io import Timer, open_live, resolve_device, run_fingerprint, write_tsv
from wm.world_model import WorldModelAgent, load_world_model


@main
def run():
    which = sys.argv[1:] or ["zh"]
    if which not in (["zh"], ["z"]):
        raise UserError(f"usage: python -m stages.controller [z], got {' '.join(which)}")
    inputs = which[0]
    params = load_params()
    use_threads(params.threads)
    cfg = params.controller
    vae, mdnrnn = load_world_model(params.vae.z_dim)
    controller = Controller(vae.z_dim, mdnrnn.hidden if inputs == "zh" else 0, cfg.hidden)
    agent = WorldModelAgent(vae, mdnrnn, controller, resolve_device(params.device))
    stage = "controller" if inputs == "zh" else "controller_z"
    timer = Timer(stage)
    # what the run depends on: its params, its inputs, the code; saved progress of another is ignored
    depends = [paths.VAE, paths.MDNRNN, *([paths.LATENTS] if cfg.mode == "dream" else [])]
    run_params = {
        "seed": params.seed,
        "threads": params.threads,
        "device": params.device,
        "env": dataclasses.asdict(params.env),
        "controller": dataclasses.asdict(cfg),
        "carry_state": params.mdnrnn.carry_state,  # dream mode's starts: warm or zeros
        "inputs": inputs,
    }
    progress = Progress(paths.PROGRESS / f"{stage}.npz", run_fingerprint(__file__, run_params, depends))
    env = params.env
    with open_live(paths.CONTROLLER_METRICS[inputs]) as live:
        with ExitStack() as stack:  # the real env, if anything drives it while CMA-ES runs
            executor = None
            if cfg.mode == "real" or cfg.watch_tracks:
                executor = stack.enter_context(
                    make_executor(env.backend, env.max_steps, cfg.workers, params.threads)
                )
            if cfg.mode == "real":
                score = RealScore(executor, agent, batch_size=env.batch_size, rollouts=cfg.rollouts)
            else:
                score = dream_score(params, agent, cfg.rollouts)
            watch = real_watch(params, agent, executor) if cfg.watch_tracks else None
            finalists, fitness = evolve_controllers(params, score, agent, live, progress, watch)
        returns = select_scores(params, agent, finalists)
        pick = int(returns.argmax())
        live.log_metric("select/return", float(returns[pick]), plot=False)
        live.log_metric("select/finalist", pick, plot=False)  # 0: CMA-ES's mean
        live.log_metric("select/mean_return", float(returns[0]), plot=False)
    save_controller(
        paths.CONTROLLERS[inputs], Controller(controller.z_dim, controller.h_dim, cfg.hidden, finalists[pick])
    )
    # every candidate's fitness, to find where two runs part (git-tracked beside the curves)
    write_tsv(
        paths.CONTROLLER_METRICS[inputs] / "fitness.tsv",
        ["generation", "candidate", "fitness"],
        [(g, c, repr(float(f))) for g, row in enumerate(fitness) for c, f in enumerate(row)],
    )
    progress.path.unlink(missing_ok=True)  # done: a forced rerun computes again
    timer.save()


def dream_score(params, agent, rollouts):
    """Scoring in the MDN-RNN's dream: `rollouts` dreams per candidate (wm.evolve.DreamScore)."""
    cfg = params.controller
    return DreamScore(
        agent.mdnrnn,
        agent.controller,
        dream_starts(
            agent.mdnrnn, params.vae.z_dim, warm=params.mdnrnn.carry_state, along=cfg.dream_starts == "along"
        ),
        rollouts=rollouts,
        steps=cfg.dream_steps,
        tau=cfg.dream_temperature,
        seed=params.seed,
    )


def real_watch(params, agent, executor):
    """A readout of how a controller does in the real env: its mean return on the first
    `watch_tracks` validate tracks (the same every generation), through `executor`. Logged
    beside its fitness; CMA-ES and the selection never see it."""
    seeds = track_seeds("validate", params.controller.watch_tracks)

    def watch(candidate):
        return mean_returns(executor, agent, [candidate], seeds, batch_size=params.env.batch_size)[0]

    return watch


def select_scores(params, agent, finalists):
    """Each finalist's score for the final choice. Real mode: the mean return on `select_tracks`
    tracks after those CMA-ES drove, on `select_backend` (gymnasium by default: the env evaluate
    reports on, so that a failure of envpool's port alone does not decide). Dream mode:
    `select_tracks` dreams from starts no generation drew (the controller never meets the real
    env)."""
    cfg, env = params.controller, params.env
    if cfg.mode == "dream":
        return dream_score(params, agent, cfg.select_tracks)(cfg.generations, finalists)
    seeds = track_seeds("controller", cfg.select_tracks, start=cfg.generations * cfg.rollouts)
    with make_executor(cfg.select_backend, env.max_steps, cfg.workers, params.threads) as executor:
        return mean_returns(executor, agent, finalists, seeds, batch_size=env.batch_size, desc="select")


def evolve_controllers(params, score, agent, live, progress, watch=None):
    """CMA-ES's finalists and every generation's fitness (wm.evolve.evolve), scored by `score`,
    each generation's best also scored by `watch` if given."""
    cfg = params.controller
    return evolve(
        score,
        agent.controller.size,
        population=cfg.population,
        generations=cfg.generations,
        sigma0=cfg.sigma0,
        seed=params.seed,
        live=live,
        finalists=cfg.finalists,
        progress=progress,
        watch=watch,
    )


if __name__ == "__main__":
    run()
