"""A controller lever against the CMA-ES seed spread: the controller stage run for several seeds with
some params changed, on this workspace's trained V and M, each result driven on validate tracks:

    python -m tools.levers NAME [--set controller.rollouts=8 ...] [--seeds 0 1 2] [--tracks 100] [--rounds R]
                               [--retrain collect,encode,mdnrnn]

For each seed, a scratch workspace gets this one's params.yaml with `seed` and the `--set` values
changed, links to its models/vae.pt, models/mdnrnn.pt, data/latents (dream mode) and code, and runs
`python -m stages.controller` there (the stage itself, with its own resume file: a cut run goes on
with the same command) then drives the new controller on `--tracks` validate tracks on gymnasium
(the env evaluate reports on; the test tracks stay unseen). `seed` only moves CMA-ES's sampling
here: the tracks each generation drives are the seed block's, whatever the seed. Per run: mean, std,
min of the returns, the tracks below 700, the stage's seconds, each generation's best and mean
fitness (with `controller.watch_tracks`, its best's real return too, and how the two correlate) and
the finalists' selection; over the seeds: the mean, lowest
and highest of the means, the mean std and the worst min; to
`reports/levers/NAME.json` (runs already there are kept, not rerun). WM_EXECUTOR applies as in the
stages. Not a test: each run is a controller stage's time.

`--retrain STAGES` (a lever on the data policy, the data, V or M: ppo, collect, vae, encode,
mdnrnn, comma-separated) first runs those stages in the scratch workspace, in the DAG's order, with
the lever's params; the outputs of the others stay links to this workspace's (`--retrain
collect,encode,mdnrnn`: new episodes encoded by this V, and M trained on them). The stages' seconds
are reported apart, and a retrained PPO's own returns on the same validate tracks (`ppo`). With
`--retrain ppo,collect,vae,encode,mdnrnn` a seed is the default pipeline of that `seed` up to its
controller, every stage's seed moved. A cut lever goes on with the same command: the retrained
stages that finished are kept (those after one that runs again run again too).

`--rounds R` then runs rounds 1..R of the paper's iterative procedure in the seed's workspace
(its stages round_data, mdnrnn and controller with `iterate.rounds`: collect with the last agent
plus noise, train M on on all the data, CMA-ES on from the last controller), each round's agent
driven on the same validate tracks; a seed already in the report gets only the rounds it lacks,
from its workspace's controller (so a lever's round is read against its own round 0).
`--evolve-only` makes those rounds the control: iterate.generations more CMA-ES generations on the
last M, no episode collected, M not trained (a workspace does one kind of round or the other).

`--against BASE` pairs each seed's validate returns with those of lever BASE's same seed
(reports/levers/BASE.json; the same tracks): the per-track difference's mean and standard error,
as `vs` in the report (for the controller stage's run; a round is read against its own round 0).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from wm import paths
from wm.config import parse_params
from wm.errors import UserError, main
from wm.io import write_json
from wm.vector_env import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(".dvc/tmp/wm/levers")  # inside the workspace, outside every out
FAILED = 700  # a track whose return is below this failed (the reports' `below_700`)


def with_values(raw, assignments):
    """params (a dict from params.yaml) with `key.sub=value` assignments (YAML values) applied."""
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise UserError(f"--set {assignment}: expected key=value")
        node, *path = raw, *key.split(".")
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            raise UserError(f"--set {assignment}: params.yaml has no key {key}")
        node[path[-1]] = yaml.safe_load(value)
    return raw


# the stages a lever may rerun before the controller's (--retrain), in the DAG's order: their outputs
RETRAIN = {
    "ppo": paths.PPO_MODEL,
    "collect": paths.ROLLOUTS,
    "vae": paths.VAE,
    "encode": paths.LATENTS,
    "mdnrnn": paths.MDNRNN,
}
INPUTS = {  # what each of them, and the controller stage, reads
    "ppo": [],
    "collect": [paths.PPO_MODEL],
    "vae": [paths.ROLLOUTS],
    "encode": [paths.VAE, paths.ROLLOUTS],
    "mdnrnn": [paths.LATENTS],
    "controller": [paths.VAE, paths.MDNRNN],
}


def prepared(work, raw, seed, retrain=()):
    """`work` with params `raw` (seed `seed`) and links to this workspace's inputs and code, but for
    the outputs of the `retrain` stages (a name of RETRAIN each), which the lever makes there."""
    params = dict(raw, seed=seed)
    parse_params(params, "params.yaml (with --set)")  # one line naming a bad key, before any work
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the inputs, and the code where the stage's resume fingerprint looks for it (wm.io.run_fingerprint)
    made = {RETRAIN[stage] for stage in retrain}
    links = {path: path for path in RETRAIN.values() if path not in made}
    links.update({Path(name): ROOT / name for name in ("wm", "stages", "tools")})
    for path in made:  # a link left by a run without --retrain: never written through
        if (work / path).is_symlink():
            (work / path).unlink()
    for name, target in links.items():
        link = work / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() and target.exists():
            link.symlink_to(target.resolve())
    return work


def step(work, *command):
    # the command dies with this tool: a lever stopped by a signal leaves no stage driving on
    # (stages resume where they stopped: README, Resume)
    if subprocess.run([sys.executable, "-m", *command], cwd=work, preexec_fn=die_with_parent).returncode != 0:
        raise UserError(f"{work}: python -m {' '.join(command)} failed (its output is above)")


def timed(work, *commands):
    """Seconds to run `commands` (each a `python -m` argument list) one after another in `work`."""
    start = time.perf_counter()
    for command in commands:
        step(work, *command)
    return time.perf_counter() - start


def controller_run(work, raw, seed, tracks, retrain=()):
    """Run the `retrain` stages (in RETRAIN's order) and the controller stage in `work` with params
    `raw` (its rounds dropped: the agent is this stage's, even in a profile with rounds) and seed
    `seed`, then drive its controller on `tracks` validate tracks on gymnasium; the run's figures."""
    prepared(work, with_rounds(raw, 0), seed, retrain)
    retrained = retrain_stages(work, retrain)
    seconds = timed(work, ["stages.controller"])
    return {
        "seed": seed,
        **({"retrain_seconds": retrained} if retrained else {}),
        **({"ppo": ppo_figures(work, tracks)} if "ppo" in retrain else {}),
        "controller_seconds": round(seconds, 1),
        **figures(work, paths.controller_metrics(0), tracks),
    }


def retrain_stages(work, retrain):
    """Run the `retrain` stages in `work` in RETRAIN's order; their seconds. A stage that finished
    in an earlier, cut run of this lever (its output there and its seconds in `retrained.json`) is
    not run again, unless a stage before it ran: a resumed lever goes on where it stopped (delete
    the seed's workspace to start over). An unreadable record counts as none."""
    record = work / "retrained.json"
    try:
        done = json.loads(record.read_text()) if record.exists() else {}
    except (OSError, ValueError):  # written atomically, so rare: run every stage again
        done = {}
    seconds, ran = {}, False
    for stage in (s for s in RETRAIN if s in retrain):
        output = work / RETRAIN[stage]
        if ran or stage not in done or not output.exists() or output.is_symlink():
            seconds[stage], ran = round(timed(work, [f"stages.{stage}"]), 1), True
            write_json(record, seconds)  # the stages after it are to run again
        else:
            seconds[stage] = done[stage]
    return seconds


def with_rounds(raw, n):
    """params `raw` with rounds 1..n of the iterative procedure, each from the one before."""
    rounds = {
        str(k): {"models": str(paths.round_models(k - 1)), "data": str(paths.round_latents(k - 1))}
        for k in range(1, n + 1)
    }
    return dict(raw, iterate=dict(raw["iterate"], rounds=rounds, agent=str(paths.round_models(n))))


def round_run(work, raw, seed, n, tracks, evolve_only=False):
    """Round `n` of the iterative procedure in `work` (whose controller stage, and rounds before
    `n`, ran): collect with the last agent plus noise, M trained on on all the data, CMA-ES on from
    the last controller (the `iterate` params); then its agent on `tracks` validate tracks.
    `evolve_only`: the CMA-ES generations alone, on the last round's M (no episode collected, M
    not trained): the control for what a round's data give."""
    if not (work / paths.round_models(n - 1) / paths.CONTROLLER.name).exists():
        raise UserError(f"{work}: round {n - 1}'s controller is not there (a fresh machine?); rerun the seed")
    prepared(work, with_rounds(raw, n), seed)
    stages = ["stages.round_data", "stages.mdnrnn", "stages.controller"]
    if evolve_only:
        stages = stages[-1:]
        mdnrnn = work / paths.round_models(n) / paths.MDNRNN.name
        mdnrnn.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / paths.round_models(n - 1) / paths.MDNRNN.name, mdnrnn)
    seconds = timed(work, *[[stage, str(n)] for stage in stages])
    return {
        "round": n,
        "evolve_only": evolve_only,
        "seconds": round(seconds, 1),
        **figures(work, paths.controller_metrics(n), tracks),
    }


def validate_returns(work, tracks, *agent):
    """The returns of the agent quick_eval drives in `work` (the z+h world model, or `agent`'s
    options) on `tracks` validate tracks on gymnasium, in track order."""
    step(work, "tools.quick_eval", str(tracks), *agent, "--backend", "gymnasium", "--out", "returns.json")
    return np.array(json.loads((work / "returns.json").read_text())["returns"])


def ppo_figures(work, tracks):
    """A retrained PPO agent's summary on `tracks` validate tracks (the data's driver)."""
    return summary(validate_returns(work, tracks, "--ppo", str(paths.PPO_MODEL)))


def paired(returns, base):
    """The per-track difference of `returns` from `base`: its mean and standard error."""
    diff = np.asarray(returns) - np.asarray(base)
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    return {"mean": round(float(diff.mean()), 1), "se": round(float(se), 1)}


def summary(returns):
    """Mean, std, min of `returns` and the tracks below 700."""
    returns = np.asarray(returns)
    return {
        "mean": round(float(returns.mean()), 1),
        "std": round(float(returns.std()), 1),
        "min": round(float(returns.min()), 1),
        "below_700": int((returns < FAILED).sum()),
    }


def read_fitness(path):
    """A controller run's fitness.tsv (generation, candidate, fitness rows) -> (generations,
    population) float64."""
    try:
        rows = np.loadtxt(path, skiprows=1, ndmin=2)
        return rows[:, 2].reshape(int(rows[:, 0].max()) + 1, -1)
    except (ValueError, IndexError) as err:
        raise UserError(f"{path}: not a table of generation, candidate, fitness ({err})") from None


def figures(work, metrics, tracks):
    """The figures of the controller `work`'s params point at (quick_eval's: the last round's),
    driven on `tracks` validate tracks on gymnasium; `metrics`: its CMA-ES run's dvclive directory."""
    returns = validate_returns(work, tracks)
    metrics = work / metrics
    fitness = read_fitness(metrics / "fitness.tsv")  # (generations, population)
    select = json.loads((metrics / "metrics.json").read_text()).get("select", {})
    out = {
        **summary(returns),
        "returns": [round(float(r), 2) for r in returns],
        # per generation, the best and the mean fitness (the curves two levers of one seed part on)
        "generation_best": [round(float(f), 1) for f in fitness.max(1)],
        "generation_mean": [round(float(f), 1) for f in fitness.mean(1)],
        "select": {key: round(float(value), 1) for key, value in select.items()},
    }
    watched = metrics / "plots" / "metrics" / "watch" / "real.tsv"  # dvclive's, with watch_tracks > 0
    if watched.exists():
        real = np.loadtxt(watched, skiprows=1, ndmin=2)[:, 1]  # step, value
        out["generation_watched"] = [round(float(r), 1) for r in real]
        # does the fitness CMA-ES climbs (a dream's, in dream mode) follow the real return?
        out["watched_fitness_correlation"] = round(float(np.corrcoef(real, fitness.max(1))[0, 1]), 2)
    return out


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the lever's name: reports/levers/NAME.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="then this many rounds of the iterative procedure (iterate.*) in each seed's workspace",
    )
    parser.add_argument(
        "--retrain",
        default="",
        help=f"comma-separated stages run first with the lever's params: {', '.join(RETRAIN)}",
    )
    parser.add_argument("--against", metavar="BASE", help="pair each seed with lever BASE's same seed")
    parser.add_argument(
        "--evolve-only",
        action="store_true",
        help="rounds of CMA-ES generations alone, on the last M (the control for a round's data)",
    )
    args = parser.parse_args()
    retrain = [stage for stage in args.retrain.split(",") if stage]
    if set(retrain) - set(RETRAIN):
        raise UserError(f"--retrain {args.retrain}: stages are {', '.join(RETRAIN)}")
    made = {RETRAIN[stage] for stage in retrain}
    for path in {path for stage in [*retrain, "controller"] for path in INPUTS[stage]} - made:
        if not path.exists():
            raise UserError(f"{path}: not found (dvc pull, or dvc repro the stage that makes it)")
    raw = with_values(yaml.safe_load(Path("params.yaml").read_text()), args.set)
    out = Path("reports/levers") / f"{args.name}.json"
    base = against(args.against, args.tracks)
    lever = {"set": args.set, "tracks": args.tracks, "retrain": retrain}
    report = json.loads(out.read_text()) if out.exists() else {**lever, "runs": {}}
    held = {"set": report["set"], "tracks": report["tracks"], "retrain": report.get("retrain", [])}
    if held != lever:
        raise UserError(f"{out}: holds another lever ({held}), not {lever}; choose another name")
    for seed in args.seeds:
        work = SCRATCH / args.name / str(seed)
        if str(seed) not in report["runs"]:
            report["runs"][str(seed)] = controller_run(work, raw, seed, args.tracks, retrain)
            report["over_seeds"] = over_seeds(report["runs"].values())
            write_json(out, report)
            this, summary = report["runs"][str(seed)], report["over_seeds"]
            print(f"{args.name} seed {seed}: {this['mean']} +- {this['std']} (over seeds: {summary})")
        if str(seed) in base:
            this = report["runs"][str(seed)]
            this.setdefault("vs", {})[args.against] = paired(this["returns"], base[str(seed)])
            write_json(out, report)
            print(f"{args.name} seed {seed} against {args.against}: {this['vs'][args.against]}")
        rounds = report["runs"][str(seed)].setdefault("rounds", [])
        if any(r.get("evolve_only", False) != args.evolve_only for r in rounds):
            kind = "evolve-only" if not args.evolve_only else "full"
            raise UserError(f"{out}: seed {seed} has {kind} rounds; one kind per lever (choose another name)")
        for n in range(len(rounds) + 1, args.rounds + 1):
            rounds.append(round_run(work, raw, seed, n, args.tracks, args.evolve_only))
            write_json(out, report)
            print(f"{args.name} seed {seed} round {n}: {rounds[-1]['mean']} +- {rounds[-1]['std']}")


def against(name, tracks):
    """{seed: validate returns} of lever `name`'s runs (none for None), which must have driven
    `tracks` tracks."""
    if name is None:
        return {}
    path = Path("reports/levers") / f"{name}.json"
    try:
        report = json.loads(path.read_text())
        held, returns = report["tracks"], {seed: run["returns"] for seed, run in report["runs"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"--against {name}: {path} is not a lever's report ({err!r})") from None
    if held != tracks:
        raise UserError(f"--against {name}: it drove {held} validate tracks, this lever {tracks}")
    return returns


def over_seeds(runs):
    """The controller stage's runs (round 0) summed up over their seeds."""
    runs = list(runs)
    means = [r["mean"] for r in runs]
    return {
        "mean_of_means": round(float(np.mean(means)), 1),
        "lowest_mean": min(means),
        "highest_mean": max(means),
        "mean_std": round(float(np.mean([r["std"] for r in runs])), 1),
        "worst_min": min(r["min"] for r in runs),
    }


if __name__ == "__main__":
    run()
