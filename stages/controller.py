"""Stage controller: CMA-ES over the controller on [z, h] (the paper's full world model).
Stage controller_z (`python -m stages.controller z`): the same on z alone (the paper's ablation).
Stage round_controller@N (`python -m stages.controller N`, iterate.rounds): round N of the
iterative procedure, CMA-ES for iterate.generations from round N-1's controller, with round N's
MDN-RNN (its dreams from round N's latents in dream mode; new tracks of the block in real mode).

controller.mode real: each candidate drives the real CarRacing-v3, the VAE encoding every frame
and the MDN-RNN carrying h; the whole population drives in batches of env.batch_size tracks.
controller.mode dream: each candidate drives batched dreams of the MDN-RNN, scored by its reward
and done heads at temperature dream_temperature, starting from real latents: each episode's start
line (dream_starts: line) or points along it (along); with mdnrnn.dropout > 0, each of a
generation's dreams has its own dropout mask on M's h, one dream world each (Dropout's Dream Land).
Either way CMA-ES's final mean and the `finalists` best candidates are then scored once more
and the best of them is saved: on `select_tracks` real tracks on `select_backend` (real mode), or
on `select_tracks` dreams from starts no generation drew (dream mode: the controller never meets
the real env). With `watch_tracks`, each generation's best candidate also drives that many fixed
validate tracks, a readout logged beside its fitness (`watch/real`, `watch/fitness`: the dream's
score against the real one in dream mode) that neither CMA-ES nor the selection sees.
Search levers (params, off by default): `race` (rollout racing, real mode: the better half of
each generation drives all `rollouts` tracks, the rest the first `race`; each of its two drives
is cut into a batch for each worker, as it is smaller than a generation's), `components` (CMA-ES
searches the first layer on the top k whitened principal components of C's inputs over the
collected episodes; the saved controller is a plain one), `z` (C and M read the VAE's mean or a
sample, saved with the controller).

outs: models/controller[_z].pt; metrics/controller[_z]/ (dvclive: fitness per generation, selection);
round N: models/rounds/N/controller.pt, metrics/rounds/N/controller/
"""

import dataclasses
import sys
from contextlib import ExitStack

from wm import paths
from wm.compute import use_threads
from wm.config import controller_tracks, load_params, parse_round
from wm.controller import Controller, Projection, load_controller, principal_components, save_controller
from wm.dream import dream_starts
from wm.env import track_seeds
from wm.errors import main
from wm.evolve import DreamScore, Progress, RealScore, evolve, mean_returns
from wm.executor import batch_count, make_executor
from wm.io import Timer, open_live, resolve_device, run_fingerprint, write_tsv
from wm.world_model import WorldModelAgent, input_moments, load_world_model


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run of this script makes: the controller on `inputs` ("zh" or "z") of round
    `round` (0: the controller stages), evolved for `generations`."""

    inputs: str
    round: int
    generations: int

    @property
    def stage(self):
        name = {"z": "controller_z", "zh": "controller"}[self.inputs]
        return f"{name}@{self.round}" if self.round else name

    @property
    def model(self):
        return (
            paths.round_models(self.round) / paths.CONTROLLER.name
            if self.round
            else paths.CONTROLLERS[self.inputs]
        )

    @property
    def metrics(self):
        return paths.controller_metrics(self.round, self.inputs)


def parse_run(args, params):
    """The Run of `python -m stages.controller [z | N]`."""
    if args == ["z"]:
        return Run("z", 0, params.controller.generations)
    n = parse_round(args, params, "python -m stages.controller [z | N]")
    return Run("zh", n, params.iterate.generations if n else params.controller.generations)


@main
def run():
    params = load_params()
    use_threads(params.threads)
    this = parse_run(sys.argv[1:], params)
    cfg = params.controller
    vae, mdnrnn = load_world_model(params.vae.z_dim, this.round)
    controller = Controller(vae.z_dim, mdnrnn.hidden if this.inputs == "zh" else 0, cfg.hidden, z=cfg.z)
    agent = WorldModelAgent(vae, mdnrnn, controller, resolve_device(params.device))
    search = search_space(params, this, controller, mdnrnn)
    x0, previous = None, []  # a round evolves on from the previous round's controller
    if this.round:
        previous = [paths.round_models(this.round - 1) / paths.CONTROLLER.name]
        x0 = load_controller(previous[0], vae.z_dim, (mdnrnn.hidden,)).params
        x0 = search.reduced(x0) if search else x0
    timer = Timer(this.stage)
    # what the run depends on: its params, its inputs, the code; saved progress of another is ignored
    latents = paths.round_latents(this.round)
    models = [paths.round_models(this.round) / paths.MDNRNN.name, *previous]
    depends = [paths.VAE, *models, *([latents] if cfg.mode == "dream" or cfg.components else [])]
    run_params = {
        "seed": params.seed,
        "threads": params.threads,
        "device": params.device,
        "env": dataclasses.asdict(params.env),
        "controller": dataclasses.asdict(cfg),
        "carry_state": params.mdnrnn.carry_state,  # dream mode's starts: warm or zeros
        "dropout": params.mdnrnn.dropout,  # dream mode's masks
        "run": dataclasses.asdict(this),
    }
    progress = Progress(paths.PROGRESS / f"{this.stage}.npz", run_fingerprint(__file__, run_params, depends))
    env = params.env
    with open_live(this.metrics) as live:
        with ExitStack() as stack:  # the real env, if anything drives it while CMA-ES runs
            executor = None
            # a generation's (first) drive: every candidate's tracks (racing: its first `race`),
            # or the watched candidate's
            episodes = cfg.population * (cfg.race or cfg.rollouts) if cfg.mode == "real" else cfg.watch_tracks
            batch_size = env.batch_size
            if cfg.mode == "real" and cfg.race:  # racing's two drives are small: a batch for each worker
                batch_size = min(batch_size, -(-episodes // cfg.workers))
            if episodes:
                executor = stack.enter_context(
                    make_executor(
                        env.backend,
                        env.max_steps,
                        cfg.workers,
                        params.threads,
                        device=agent.device,
                        batches=batch_count(episodes, batch_size),
                    )
                )
            if cfg.mode == "real":
                first = controller_tracks(params, this.round)
                score = RealScore(
                    executor,
                    agent,
                    batch_size=batch_size,
                    rollouts=cfg.rollouts,
                    race=cfg.race,
                    first_track=first,
                )
            else:
                score = dream_score(params, agent, cfg.rollouts, latents)
            watch = real_watch(params, agent, executor) if cfg.watch_tracks else None
            if search:  # CMA-ES searches the components; the env and the dream get controllers
                score, watch = searched(score, watch, search)
            size = search.size if search else controller.size
            finalists, fitness = evolve_controllers(params, this, score, size, live, progress, watch, x0)
        finalists = [search.full(f)[0] for f in finalists] if search else finalists
        returns = select_scores(params, this, agent, finalists)
        pick = int(returns.argmax())
        live.log_metric("select/return", float(returns[pick]), plot=False)
        live.log_metric("select/finalist", pick, plot=False)  # 0: CMA-ES's mean
        live.log_metric("select/mean_return", float(returns[0]), plot=False)
    save_controller(
        this.model, Controller(controller.z_dim, controller.h_dim, cfg.hidden, finalists[pick], cfg.z)
    )
    # every candidate's fitness, to find where two runs part (git-tracked beside the curves)
    write_tsv(
        this.metrics / "fitness.tsv",
        ["generation", "candidate", "fitness"],
        [(g, c, repr(float(f))) for g, row in enumerate(fitness) for c, f in enumerate(row)],
    )
    progress.path.unlink(missing_ok=True)  # done: a forced rerun computes again
    timer.save()


def search_space(params, this, controller, mdnrnn):
    """None (CMA-ES searches every parameter of the controller, the paper's way) or, with
    `controller.components` = k, a wm.controller.Projection onto the top k whitened principal
    components of what the controller reads (z, and h for [z, h]) along run `this`'s collected
    episodes, with its M."""
    k = params.controller.components
    if not k:
        return None
    latents = paths.round_latents(this.round)
    mean, cov = input_moments(mdnrnn, latents, params.vae.z_dim, with_h=bool(controller.h_dim))
    return Projection(controller, principal_components(mean, cov, k), mean)


def searched(score, watch, search):
    """`score(generation, candidates)` and `watch(candidate)` (or None), which take controllers'
    parameters, as functions of the vectors CMA-ES searches in `search` (a Projection)."""

    def score_searched(generation, candidates):
        return score(generation, search.full(candidates))

    def watch_searched(candidate):
        return watch(search.full(candidate)[0])

    return score_searched, watch_searched if watch else None


def dream_score(params, agent, rollouts, latents):
    """Scoring in the MDN-RNN's dream: `rollouts` dreams per candidate (wm.evolve.DreamScore),
    from starts in the latent episodes of directory `latents`."""
    cfg = params.controller
    warm, along = params.mdnrnn.carry_state, cfg.dream_starts == "along"
    return DreamScore(
        agent.mdnrnn,
        agent.controller,
        dream_starts(agent.mdnrnn, params.vae.z_dim, latents, warm=warm, along=along),
        rollouts=rollouts,
        steps=cfg.dream_steps,
        tau=cfg.dream_temperature,
        seed=params.seed,
        dropout=params.mdnrnn.dropout,
    )


def real_watch(params, agent, executor):
    """A readout of how a controller does in the real env: its mean return on the first
    `watch_tracks` validate tracks (the same every generation), through `executor`. Logged
    beside its fitness; CMA-ES and the selection never see it."""
    seeds = track_seeds("validate", params.controller.watch_tracks)

    def watch(candidate):
        return mean_returns(executor, agent, [candidate], seeds, batch_size=params.env.batch_size)[0]

    return watch


def select_scores(params, this, agent, finalists):
    """Each finalist's score for the final choice. Real mode: the mean return on `select_tracks`
    tracks after those CMA-ES drove, on `select_backend` (gymnasium by default: the env evaluate
    reports on, so that a failure of envpool's port alone does not decide). Dream mode:
    `select_tracks` dreams from starts no generation drew (the controller never meets the real
    env)."""
    cfg, env = params.controller, params.env
    if cfg.mode == "dream":
        score = dream_score(params, agent, cfg.select_tracks, paths.round_latents(this.round))
        return score(this.generations, finalists)  # starts no generation drew
    start = controller_tracks(params, this.round) + this.generations * cfg.rollouts
    seeds = track_seeds("controller", cfg.select_tracks, start=start)
    with make_executor(
        cfg.select_backend,
        env.max_steps,
        cfg.workers,
        params.threads,
        device=agent.device,
        batches=batch_count(len(finalists) * len(seeds), env.batch_size),
    ) as executor:
        return mean_returns(executor, agent, finalists, seeds, batch_size=env.batch_size, desc="select")


def evolve_controllers(params, this, score, size, live, progress, watch=None, x0=None):
    """CMA-ES's finalists and every generation's fitness (wm.evolve.evolve) for run `this` over
    `size` parameters, from `x0` (None: zeros), scored by `score`, each generation's best also
    scored by `watch` if given."""
    cfg = params.controller
    return evolve(
        score,
        size,
        population=cfg.population,
        generations=this.generations,
        sigma0=cfg.sigma0,
        seed=params.seed,
        live=live,
        finalists=cfg.finalists,
        progress=progress,
        watch=watch,
        x0=x0,
    )


if __name__ == "__main__":
    run()
