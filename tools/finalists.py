"""Would another rule for choosing among the controller stage's finalists drive better?

    python -m tools.finalists [--select 48] [--validate 100] [--out reports/finalists/NAME.json]

The stage keeps the finalist (CMA-ES's final mean, then the best candidates of its generations)
with the highest mean return on `select_tracks` tracks. A rule that looks at a low quantile of
those returns instead might keep a controller that fails fewer tracks. This tool replays the
stage's CMA-ES run from metrics/controller/fitness.tsv (no driving: the sampling is seeded;
`replay`), checks that the replay ends at models/controller.pt, then drives every
finalist on the stage's select tracks (their returns must match its select/return to the bit),
on the controller block's tracks after them up to `--select` in all, and on `--validate`
validate tracks, all on the stage's select_backend. It reports each finalist's returns and, for
each rule, the finalist it picks on the select tracks and that finalist's validate figures.

Run it in a workspace of a finished controller stage (round 0, real mode, components 0), under
the kernels that stage ran with (wm.compute: `NPY_DISABLE_CPU_FEATURES=` for a run made before
numpy's loops were pinned, `WM_KERNELS=native` for one made before any pin).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from tools.levers import read_fitness, summary
from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import UserError, main
from wm.evolve import evolve
from wm.executor import batch_count, make_executor
from wm.io import write_json
from wm.world_model import load_agent, load_world_model

RULES = {  # a finalist's score on its select returns (tracks,); the highest is kept
    "mean": np.mean,  # the stage's
    "quarter_mean": lambda r: np.sort(r)[: max(1, len(r) // 4)].mean(),  # the worst quarter's mean
    "p10": lambda r: np.percentile(r, 10),
    "min": np.min,
    "mean_minus_std": lambda r: np.mean(r) - np.std(r),
}


class Unlogged:
    """A dvclive stand-in that keeps nothing: a replay logs no curves."""

    def log_metric(self, *args, **kwargs):
        pass

    def next_step(self):
        pass


def replay(fitness, size, *, population, sigma0, seed, finalists):
    """A finished wm.evolve.evolve run again, its saved `fitness` ((generations, population), as
    read_fitness gives it) told in place of scoring: CMA-ES's sampling is seeded, so it asks the
    same candidates (under the same kernels: wm.compute), from zeros as the controller stage's
    run. Returns evolve's finalists and every candidate asked, (generations * population, size)
    float32, in fitness's order."""
    asked = []

    def saved(generation, candidates):
        asked.extend(np.asarray(c, np.float32) for c in candidates)
        return fitness[generation]

    chosen, _ = evolve(
        saved,
        size,
        population=population,
        generations=len(fitness),
        sigma0=sigma0,
        seed=seed,
        live=Unlogged(),
        finalists=finalists,
    )
    return chosen, np.stack(asked)


def finalists(params, agent):
    """The stage's finalists, (F, n_params), replayed from its fitness.tsv; the saved controller
    must be one of them (else the replay went another way: other kernels, or other params)."""
    cfg = params.controller
    if cfg.mode != "real" or cfg.components:
        raise UserError("tools.finalists replays a real-mode run over every weight (components: 0)")
    fitness_file = paths.CONTROLLER_METRICS["zh"] / "fitness.tsv"
    if not fitness_file.is_file():
        raise UserError(f"{fitness_file}: not found; run the controller stage first")
    controller = agent.controller
    chosen, _ = replay(
        read_fitness(fitness_file),
        controller.size,
        population=cfg.population,
        sigma0=cfg.sigma0,
        seed=params.seed,
        finalists=cfg.finalists,
    )
    chosen = np.stack(chosen)
    if not (chosen == controller.params).all(1).any():
        raise UserError(
            f"{fitness_file}: its replay does not end at {paths.CONTROLLER}; another params.yaml, "
            "or other kernels than the run's (wm.compute)"
        )
    return chosen


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", type=int, default=48, help="select tracks in all (>= select_tracks)")
    parser.add_argument("--validate", type=int, default=100, help="validate tracks")
    parser.add_argument("--out", type=Path, help="write the report to this JSON file")
    args = parser.parse_args()
    params = load_params()
    cfg, env = params.controller, params.env
    if args.select < cfg.select_tracks:
        raise UserError(f"--select {args.select}: at least controller.select_tracks ({cfg.select_tracks})")
    if args.validate < 1:
        raise UserError(f"--validate {args.validate}: at least 1 track")
    use_threads(params.threads)
    agent = load_agent(*load_world_model(params.vae.z_dim))
    chosen = finalists(params, agent)
    start = cfg.generations * cfg.rollouts  # the stage's select tracks, then the block's next ones
    stage_seeds = track_seeds("controller", cfg.select_tracks, start=start)
    more_seeds = track_seeds("controller", args.select - cfg.select_tracks, start=start + cfg.select_tracks)
    validate_seeds = track_seeds("validate", args.validate)
    saved = json.loads((paths.CONTROLLER_METRICS["zh"] / "metrics.json").read_text())["select"]
    stage_pick = int(saved["finalist"])
    with make_executor(
        cfg.select_backend,
        env.max_steps,
        cfg.workers,
        params.threads,
        device="cpu",
        batches=batch_count(len(chosen) * (args.select + args.validate), env.batch_size),
    ) as executor:

        def drive(seeds, desc):  # (finalists, tracks): each finalist's episodes in a row, as the stage's
            each = np.repeat(chosen, len(seeds), axis=0)
            rollouts = executor.drive(agent, seeds * len(chosen), env.batch_size, controllers=each, desc=desc)
            return np.array([r.total_reward for r in rollouts]).reshape(len(chosen), len(seeds))

        select = drive(stage_seeds, "the stage's select tracks")
        again = select[stage_pick].mean()
        if again != saved["return"]:
            raise UserError(
                f"finalist {stage_pick} drove the select tracks to {again}, the stage to {saved['return']}: "
                "another backend, batch size or kernels"
            )
        if more_seeds:
            select = np.concatenate([select, drive(more_seeds, "more select tracks")], axis=1)
        validate = drive(validate_seeds, "validate")
    report = {
        "seed": params.seed,
        "backend": cfg.select_backend,
        "stage_pick": stage_pick,
        "select_seeds": stage_seeds + more_seeds,
        "validate_seeds": validate_seeds,
        "finalists": [
            {"select": [round(float(r), 2) for r in s], "validate": [round(float(r), 2) for r in v]}
            for s, v in zip(select, validate)
        ],
        "validate": [summary(v) for v in validate],
        "rules": {},
    }
    print(f"seed {params.seed}: {len(chosen)} finalists (0: CMA-ES's mean), the stage kept {stage_pick}")
    for i, figures in enumerate(report["validate"]):
        print(f"  finalist {i}: select {summary(select[i])}; validate {figures}")
    for tracks in sorted({cfg.select_tracks, args.select}):
        for name, rule in RULES.items():
            pick = int(np.argmax([rule(s[:tracks]) for s in select]))
            report["rules"][f"{name}@{tracks}"] = {"finalist": pick, "validate": report["validate"][pick]}
            print(f"  {name}@{tracks}: finalist {pick}, validate {report['validate'][pick]}")
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    run()
