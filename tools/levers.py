"""A controller lever against the CMA-ES seed spread: the controller stage run for several seeds with
some params changed, on this workspace's trained V and M, each result driven on validate tracks:

    python -m tools.levers NAME [--set controller.rollouts=8 ...] [--seeds 0 1 2] [--tracks 100]

For each seed, a scratch workspace gets this one's params.yaml with `seed` and the `--set` values
changed, links to its models/vae.pt, models/mdnrnn.pt, data/latents (dream mode) and code, and runs
`python -m stages.controller` there (the stage itself, with its own resume file: a cut run goes on
with the same command) then drives the new controller on `--tracks` validate tracks on gymnasium
(the env evaluate reports on; the test tracks stay unseen). `seed` only moves CMA-ES's sampling
here: the tracks each generation drives are the seed block's, whatever the seed. Per run: mean, std,
min of the returns, the tracks below 700, the stage's seconds, each generation's best and mean
fitness and the finalists' selection; over the seeds: the mean, lowest
and highest of the means, the mean std and the worst min; to
`reports/levers/NAME.json` (runs already there are kept, not rerun). WM_EXECUTOR applies as in the
stages. Not a test: each run is a controller stage's time.
"""

import argparse
import json
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

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(".dvc/tmp/wm/levers")  # inside the workspace, outside every out


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


def controller_run(work, raw, seed, tracks):
    """Run the controller stage in `work` with params `raw` and CMA-ES seed `seed`, then drive its
    controller on `tracks` validate tracks on gymnasium; the run's figures."""
    params = dict(raw, seed=seed)
    parse_params(params, "params.yaml (with --set)")  # one line naming a bad key, before any work
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the inputs, and the code where the stage's resume fingerprint looks for it (wm.io.run_fingerprint)
    links = {path: path for path in (paths.VAE, paths.MDNRNN, paths.LATENTS)}
    links.update({Path(name): ROOT / name for name in ("wm", "stages", "tools")})
    for name, target in links.items():
        link = work / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink() and target.exists():
            link.symlink_to(target.resolve())

    def step(*command):
        if subprocess.run([sys.executable, "-m", *command], cwd=work).returncode != 0:
            raise UserError(f"{work}: python -m {' '.join(command)} failed (its output is above)")

    start = time.perf_counter()
    step("stages.controller")
    seconds = time.perf_counter() - start
    step("tools.quick_eval", str(tracks), "--backend", "gymnasium", "--out", "returns.json")
    returns = np.array(json.loads((work / "returns.json").read_text())["returns"])
    metrics = work / paths.CONTROLLER_METRICS["zh"]
    rows = np.loadtxt(metrics / "fitness.tsv", skiprows=1, ndmin=2)  # generation, candidate, fitness
    fitness = rows[:, 2].reshape(int(rows[:, 0].max()) + 1, -1)  # (generations, population)
    select = json.loads((metrics / "metrics.json").read_text()).get("select", {})
    return {
        "seed": seed,
        "mean": round(float(returns.mean()), 1),
        "std": round(float(returns.std()), 1),
        "min": round(float(returns.min()), 1),
        "below_700": int((returns < 700).sum()),
        "controller_seconds": round(seconds, 1),
        "returns": [round(float(r), 2) for r in returns],
        # per generation, the best and the mean fitness (the curves two levers of one seed part on)
        "generation_best": [round(float(f), 1) for f in fitness.max(1)],
        "generation_mean": [round(float(f), 1) for f in fitness.mean(1)],
        "select": {key: round(float(value), 1) for key, value in select.items()},
    }


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the lever's name: reports/levers/NAME.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tracks", type=int, default=100)
    args = parser.parse_args()
    for path in (paths.VAE, paths.MDNRNN):
        if not path.exists():
            raise UserError(f"{path}: not found (dvc pull, or dvc repro mdnrnn)")
    raw = with_values(yaml.safe_load(Path("params.yaml").read_text()), args.set)
    out = Path("reports/levers") / f"{args.name}.json"
    report = (
        json.loads(out.read_text()) if out.exists() else {"set": args.set, "tracks": args.tracks, "runs": {}}
    )
    if (report["set"], report["tracks"]) != (args.set, args.tracks):
        raise UserError(
            f"{out}: holds the lever {report['set']} on {report['tracks']} tracks, not {args.set} on "
            f"{args.tracks}; choose another name"
        )
    for seed in args.seeds:
        if str(seed) in report["runs"]:
            continue
        work = SCRATCH / args.name / str(seed)
        report["runs"][str(seed)] = controller_run(work, raw, seed, args.tracks)
        runs = list(report["runs"].values())
        means = [r["mean"] for r in runs]
        report["over_seeds"] = {
            "mean_of_means": round(float(np.mean(means)), 1),
            "lowest_mean": min(means),
            "highest_mean": max(means),
            "mean_std": round(float(np.mean([r["std"] for r in runs])), 1),
            "worst_min": min(r["min"] for r in runs),
        }
        write_json(out, report)
        this = report["runs"][str(seed)]
        print(
            f"{args.name} seed {seed}: {this['mean']} +- {this['std']} (over seeds: {report['over_seeds']})"
        )


if __name__ == "__main__":
    run()
