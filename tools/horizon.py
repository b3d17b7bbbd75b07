"""How would CMA-ES's mean drive had the controller stage stopped after fewer generations?

    python -m tools.horizon --at 30 40 [--average K ...] [--validate 100] [--out reports/horizon/NAME.json]

CMA-ES's sampling is seeded and generation g drives the controller block's tracks from g *
rollouts on, whatever the run's length: the first g generations of a longer run are the run of
`controller.generations: g`. So one long run says what each shorter one would have given, on the
same draws. This tool replays the stage's CMA-ES from metrics/controller/fitness.tsv
(tools.finalists.replay: no driving), checks that the whole replay ends at models/controller.pt,
then drives CMA-ES's mean after each `--at` generation count and after the run's last one on
`--validate` validate tracks, on gymnasium, each point's tracks in batches of env.batch_size as
tools.quick_eval cuts them. It reports each point's figures and its per-track difference from the
first point (mean and standard error). CMA-ES's mean is what the stage kept in every run
tools.finalists checked; the point of the run's end is its mean, whichever finalist the stage kept.

With `--average K ...`, each point also drives, for each K, the average of CMA-ES's means after
its last K generations (Polyak averaging: the hope is that the average of a noisy walk's last
steps sits nearer the middle of where it went; docs/results.md measured it and it did not help).
The search is not driven again: the means come from the same replay.

Run it in a workspace of a finished controller stage (round 0, real mode, components 0), under
the kernels the stage ran with (see tools.finalists), e.g. a `tools.levers` seed's workspace.
"""

import argparse

import numpy as np

from tools.finalists import finalists, replay
from tools.levers import paired, read_fitness, summary
from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import UserError, main
from wm.executor import Job, batch_count, make_executor
from wm.io import write_json
from wm.world_model import load_agent, load_world_model


def window(g, k):
    """Generations g - k + 1 to g, from 1 on: the last k of a run stopped after g."""
    return range(max(1, g - k + 1), g + 1)


def averaged(means, g, k):
    """The average of `means` ({generations: CMA-ES's mean after them}) over `window(g, k)`; for
    k = 1, the mean after g itself."""
    return np.mean([means[i] for i in window(g, k)], axis=0, dtype=np.float32)


def means_at(fitness, points, size, cfg, seed):
    """CMA-ES's mean after each of `points` generations of the run whose fitness is `fitness`
    ((generations, population)), as (len(points), size) float32."""
    means = []
    for g in points:
        chosen, _ = replay(
            fitness[:g], size, population=cfg.population, sigma0=cfg.sigma0, seed=seed, finalists=0
        )
        means.append(chosen[0])  # evolve's finalists start with CMA-ES's mean
    return np.stack(means)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", type=int, nargs="+", required=True, help="generation counts to stop at")
    parser.add_argument(
        "--average",
        type=int,
        nargs="+",
        default=[],
        help="also drive each point's mean averaged over K generations",
    )
    parser.add_argument("--validate", type=int, default=100, help="validate tracks")
    parser.add_argument("--out", help="write the report to this JSON file")
    args = parser.parse_args()
    params = load_params()
    cfg, env = params.controller, params.env
    fitness = read_fitness(paths.CONTROLLER_METRICS["zh"] / "fitness.tsv")
    generations = len(fitness)
    bad = [g for g in args.at if not 1 <= g <= generations]
    if bad:
        raise UserError(f"--at {bad[0]}: the run has generations 1 to {generations}")
    if any(k < 1 for k in args.average):
        raise UserError(f"--average {min(args.average)}: at least 1 generation")
    if args.validate < 2:
        raise UserError(f"--validate {args.validate}: at least 2 tracks (a standard error)")
    use_threads(params.threads)
    agent = load_agent(*load_world_model(params.vae.z_dim))
    finalists(params, agent)  # the replay goes the stage's way (else one line naming why not)
    points = sorted({*args.at, generations})
    windows = sorted({1, *args.average})
    drives = [(g, k) for k in windows for g in points]
    needed = sorted({i for g, k in drives for i in window(g, k)})
    by_generation = dict(zip(needed, means_at(fitness, needed, agent.controller.size, cfg, params.seed)))
    means = [averaged(by_generation, g, k) for g, k in drives]
    seeds = track_seeds("validate", args.validate)
    with make_executor(
        "gymnasium",
        env.max_steps,
        params.evaluate.workers,
        params.threads,
        device="cpu",
        batches=len(drives) * batch_count(len(seeds), env.batch_size),
    ) as executor:
        jobs = [Job(agent, seeds, np.repeat(mean[None], len(seeds), axis=0)) for mean in means]
        driven = executor.drive_jobs(jobs, env.batch_size, desc="validate")
    returns = [np.array([r.total_reward for r in rollouts]) for rollouts in driven]
    plain = {g: r for (g, k), r in zip(drives, returns) if k == 1}
    report = {
        "seed": params.seed,
        "generations": generations,
        "validate_seeds": seeds,
        "points": [
            {
                "generations": g,
                "averaged": k,
                **summary(r),
                "median": round(float(np.median(r)), 1),
                "above_900": int((r > 900).sum()),
                "vs_first": paired(r, returns[0]),
                **({"vs_unaveraged": paired(r, plain[g])} if k > 1 else {}),
                "returns": [round(float(x), 2) for x in r],
            }
            for (g, k), r in zip(drives, returns)
        ],
    }
    for point in report["points"]:
        shown = {k: v for k, v in point.items() if k != "returns"}
        over = f", averaged over the last {point['averaged']}" if point["averaged"] > 1 else ""
        print(f"CMA-ES's mean after {point['generations']} generations{over}: {shown}")
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    run()
