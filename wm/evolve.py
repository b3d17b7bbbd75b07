"""CMA-ES (pycma) over the controller's flat parameter vector.

Candidates are scored in the real env (the paper's way) or inside the MDN-RNN's dream (batched,
thousands of rollouts per second); the stage then scores the finalists once more, the same way
on other tracks or dreams, and keeps the best (stages/controller.py).
"""

import hashlib
import warnings
import zipfile

import numpy as np
import torch
from tqdm import tqdm

warnings.filterwarnings("ignore", message="Could not import matplotlib")  # cma's plots are unused
import cma  # noqa: E402

from wm.dream import dream_returns, dropout_masks  # noqa: E402
from wm.env import track_seeds  # noqa: E402
from wm.errors import UserError  # noqa: E402
from wm.io import atomic_path  # noqa: E402


class RealScore:
    """Each generation, every candidate drives the same `rollouts` tracks of the controller's seed
    block (common random numbers, so candidates are compared on equal terms); the world-model
    `agent` drives all of the generation's episodes through `executor` (wm.executor),
    `batch_size` at a time, each with its own candidate's controller. Fitness: the mean return.
    Generation g drives the block's tracks from `first_track` + g * `rollouts` on.

    With `race` > 0 (rollout racing): every candidate drives the first `race` of the tracks, and
    only the better half (the candidates CMA-ES will recombine) drives the rest; a candidate's
    fitness is its mean over the tracks it drove. The budget goes where the ranking matters."""

    def __init__(self, executor, agent, *, batch_size, rollouts, race=0, first_track=0):
        self.executor, self.agent, self.batch_size, self.rollouts = executor, agent, batch_size, rollouts
        self.race = race
        self.first_track = first_track  # of the block: later rounds of the iterative procedure drive new ones

    def __call__(self, generation, candidates):
        seeds = track_seeds("controller", self.rollouts, start=self.first_track + generation * self.rollouts)
        desc = f"generation {generation + 1}"

        def drive(chosen, tracks):
            return mean_returns(
                self.executor, self.agent, chosen, tracks, batch_size=self.batch_size, desc=desc
            )

        if not self.race:
            return drive(candidates, seeds)
        fitness = drive(candidates, seeds[: self.race])
        better = np.argsort(-fitness, kind="stable")[: len(candidates) // 2]
        rest = drive([candidates[i] for i in better], seeds[self.race :])
        fitness[better] = (fitness[better] * self.race + rest * (self.rollouts - self.race)) / self.rollouts
        return fitness


class DreamScore:
    """Each generation, every candidate drives `rollouts` dreams of `steps` steps from the same
    starts (drawn from `starts`, wm.dream.dream_starts' (z0, state): real latents after the
    zoom-in and the LSTM state there or None), sampled at temperature `tau`, and with `dropout` > 0
    each of the rollouts in its own dream world (a dropout mask on M's h, wm.dream.dropout_masks;
    the same R masks for every candidate). Fitness: the mean predicted return."""

    def __init__(self, mdnrnn, controller, starts, *, rollouts, steps, tau, seed, dropout=0.0):
        self.mdnrnn, self.controller, self.starts = mdnrnn, controller, starts
        self.rollouts, self.steps, self.tau, self.seed, self.dropout = rollouts, steps, tau, seed, dropout

    def __call__(self, generation, candidates):
        device = next(self.mdnrnn.parameters()).device
        generator = torch.Generator(device).manual_seed(self.seed * 1_000_003 + generation)
        z0, state = self.starts
        pick = torch.randint(len(z0), (self.rollouts,), generator=generator, device=device)
        # common starts: candidate i's rollouts are rows i*R..(i+1)*R
        common = lambda x: x.to(device)[pick].repeat(len(candidates), 1)  # noqa: E731
        masks = None
        if self.dropout:
            masks = dropout_masks(self.rollouts, self.mdnrnn.hidden, self.dropout, generator)
            masks = masks.repeat(len(candidates), 1)
        params = np.repeat(np.asarray(candidates, np.float32), self.rollouts, axis=0)
        returns = dream_returns(
            self.mdnrnn,
            self.controller,
            params,
            common(z0),
            steps=self.steps,
            tau=self.tau,
            generator=generator,
            state=None if state is None else tuple(common(x) for x in state),
            masks=masks,
        )
        return returns.numpy().reshape(len(candidates), self.rollouts).mean(1)


def mean_returns(executor, agent, candidates, seeds, *, batch_size, desc=None):
    """(len(candidates),) mean real return of each candidate over the tracks `seeds`, driven by
    `executor` (wm.executor): candidate i's episodes are rows i*len(seeds)..(i+1)*len(seeds)."""
    rollout_seeds = [s for _ in candidates for s in seeds]
    rollout_params = np.stack([c for c in candidates for _ in seeds])
    results = executor.drive(agent, rollout_seeds, batch_size, controllers=rollout_params, desc=desc)
    return np.array([r.total_reward for r in results]).reshape(len(candidates), len(seeds)).mean(1)


class Progress:
    """The fitness of every candidate of every finished generation, saved after each one to
    `path` (outside the stage's outs; plain arrays, no pickles) under `key`, the fingerprint of
    what the run depends on. CMA-ES's sampling is seeded, so a rerun asks the same candidates
    again: `evolve` replays the saved fitness for them instead of scoring them, and a resumed run
    ends with the bytes of an uninterrupted one. A file of another key is ignored (and replaced)."""

    def __init__(self, path, key):
        self.path, self.key = path, key
        # per generation: (population,) float64, md5 of its candidates, the watched real return (or nan)
        self.fitness, self.digests, self.watched = [], [], []
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as saved:
                    if str(saved["key"]) == key:  # all three or none
                        fitness, digests = list(saved["fitness"]), [str(d) for d in saved["digests"]]
                        self.watched = [float(w) for w in saved["watched"]]
                        self.fitness, self.digests = fitness, digests
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # written atomically, so rare
                tqdm.write(f"{path}: unreadable saved progress ({type(err).__name__}); starting over")

    def __len__(self):
        return len(self.fitness)

    def add(self, candidates, fitness, watched=float("nan")):
        self.fitness.append(np.asarray(fitness, np.float64))
        self.digests.append(digest(candidates))
        self.watched.append(float(watched))
        if self.path is not None:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(
                    f,
                    key=np.str_(self.key),
                    fitness=np.stack(self.fitness),
                    digests=np.array(self.digests),
                    watched=np.array(self.watched),
                )


def digest(candidates):
    return hashlib.md5(np.ascontiguousarray(candidates, np.float64).tobytes()).hexdigest()


def evolve(
    score,
    n_params,
    *,
    population,
    generations,
    sigma0,
    seed,
    live,
    finalists,
    progress=None,
    watch=None,
    x0=None,
):
    """Run CMA-ES from `x0` (default: zeros) for `generations`, fitness `score(generation,
    candidates)`. Logs best/mean/worst fitness per generation to `live`. With `watch(candidate)
    -> float`, each generation's best candidate is also scored by it and logged as `watch/real`
    beside its fitness `watch/fitness` (a readout: CMA-ES never sees it). With `progress` (a
    Progress), generations it holds are replayed, not scored, and each new one is saved to it.
    Returns the finalists: CMA-ES's final mean, then the `finalists` best candidates of any
    generation, best first, as (n_params,) arrays, and the fitness of every candidate,
    (generations, population)."""
    progress = progress if progress is not None else Progress(None, "")
    es = cma.CMAEvolutionStrategy(
        np.zeros(n_params) if x0 is None else np.asarray(x0, np.float64),
        sigma0,
        {"popsize": population, "seed": seed + 1, "verbose": -9},
    )
    if len(progress):
        tqdm.write(f"resuming CMA-ES after generation {len(progress)} of {generations} ({progress.path})")
    best = []  # (fitness, params) of each generation's best candidate
    for generation in range(generations):
        candidates = es.ask()  # population x (n_params,)
        if generation < len(progress):
            if digest(candidates) != progress.digests[generation]:
                raise UserError(
                    f"{progress.path}: generation {generation + 1} asks other candidates than "
                    f"the saved run did; delete the file to start over"
                )
            fitness, watched = progress.fitness[generation], progress.watched[generation]
        else:
            fitness = np.asarray(score(generation, candidates), dtype=np.float64)
            top = np.asarray(candidates[int(fitness.argmax())], np.float32)
            watched = float(watch(top)) if watch is not None else float("nan")
            progress.add(candidates, fitness, watched)
        es.tell(candidates, (-fitness).tolist())
        best.append((float(fitness.max()), np.asarray(candidates[int(fitness.argmax())], np.float32)))
        if watch is not None:
            live.log_metric("watch/fitness", float(fitness.max()))
            live.log_metric("watch/real", watched)
        live.log_metric("generation/best", float(fitness.max()))
        live.log_metric("generation/mean", float(fitness.mean()))
        live.log_metric("generation/worst", float(fitness.min()))
        live.log_metric("best_so_far", max(f for f, _ in best))
        live.next_step()
    best.sort(key=lambda item: -item[0])
    chosen = [np.asarray(es.mean, np.float32)] + [params for _, params in best[:finalists]]
    return chosen, np.stack(progress.fitness[:generations])
