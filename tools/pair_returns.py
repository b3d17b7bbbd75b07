"""Two or more runs' returns on the same tracks, side by side and paired with the first:

    python -m tools.pair_returns BASE.json OTHER.json [...]  [--out reports/NAME.json]

Each file is a `tools.quick_eval --out` report (its "returns"), a `tools.levers` report
(`FILE.json:SEED`, that seed's run; the only run when no seed is given) or a `tools.horizon`
report (`FILE.json:GENERATIONS`, CMA-ES's mean after that many; the only point when not given).
Every run must be on the same tracks in the same order (the reports' seeds, where they hold
them). Printed per run: mean, std, min, median, the tracks below 700 and above 900; and, against
the first, the paired mean difference with its standard error, the tracks better and worse, the
correlation of the per-track returns, the median absolute and the median per-track difference, and
the base's tracks below 700 that this run brings to 700 or more (`recovered`) and its own new
ones (`new_below_700`). Two runs of one controller on two envs tell how far the envs agree track by
track, not only on the mean.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from tools.levers import FAILED, paired, summary
from wm.errors import UserError, main
from wm.io import write_json


def load_run(spec):
    """(seeds or None, returns (N,)) of a quick_eval report, `levers.json[:SEED]` or
    `horizon.json[:GENERATIONS]`."""
    path, _, seed = spec.rpartition(":") if ":" in spec and not Path(spec).is_file() else (spec, "", "")
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable JSON report ({err})") from None
    if not isinstance(report, dict):
        raise UserError(f"{path}: not a tools.quick_eval, tools.levers or tools.horizon report")
    if "runs" in report:  # tools.levers
        runs = report["runs"]
        if not seed and len(runs) != 1:
            raise UserError(f"{path}: holds the runs of seeds {', '.join(runs)}; name one as {path}:SEED")
        run = runs.get(seed or next(iter(runs)))
        if run is None or "returns" not in run:
            raise UserError(f"{path}: no returns for seed {seed} (it has {', '.join(runs)})")
        return None, np.asarray(run["returns"], np.float64)
    if "points" in report:  # tools.horizon: CMA-ES's means, not averaged over generations
        points = {str(p["generations"]): p for p in report["points"] if p.get("averaged", 1) == 1}
        if not seed and len(points) != 1:
            raise UserError(f"{path}: holds the means after {', '.join(points)} generations; name one")
        point = points.get(seed or next(iter(points)))
        if point is None:
            raise UserError(f"{path}: no mean after {seed} generations (it has {', '.join(points)})")
        return report.get("validate_seeds"), np.asarray(point["returns"], np.float64)
    if "returns" not in report:
        raise UserError(f"{path}: not a tools.quick_eval, tools.levers or tools.horizon report")
    return report.get("seeds"), np.asarray(report["returns"], np.float64)


def describe(returns):
    """tools.levers' summary, with the median and the tracks above 900 (as tools.horizon reports)."""
    return {
        **summary(returns),
        "median": round(float(np.median(returns)), 1),
        "above_900": int((returns > 900).sum()),
    }


def against(returns, base):
    diff = returns - base
    difference = paired(returns, base)
    return {
        "paired_mean": difference["mean"],
        "paired_se": difference["se"],
        "tracks_better": int((diff > 0).sum()),
        "tracks_worse": int((diff < 0).sum()),
        "correlation": round(float(np.corrcoef(returns, base)[0, 1]), 2),
        "median_abs_difference": round(float(np.median(np.abs(diff))), 1),
        "median_difference": round(float(np.median(diff)), 1),
        # the tail, track by track: the base's failures this run finishes, and its own new ones
        "recovered": int(((base < FAILED) & (returns >= FAILED)).sum()),
        "new_below_700": int(((base >= FAILED) & (returns < FAILED)).sum()),
    }


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs",
        nargs="+",
        help="quick_eval, levers.json[:SEED] or horizon.json[:GENERATIONS] reports; base first",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this JSON file")
    args = parser.parse_args()
    if len(args.runs) < 2:
        raise UserError("name at least two runs: a base and one to pair with it")
    loaded = [load_run(spec) for spec in args.runs]
    base_seeds, base = loaded[0]
    rows = {}
    for spec, (seeds, returns) in zip(args.runs, loaded):
        other_seeds = seeds is not None and base_seeds is not None and seeds != base_seeds
        if len(returns) != len(base) or other_seeds:
            raise UserError(f"{spec}: not the tracks of {args.runs[0]} (other seeds or another count)")
        row = describe(returns)
        if rows:
            row |= against(returns, base)
        rows[spec] = row
        text = ", ".join(f"{key} {value}" for key, value in row.items())
        print(f"{spec}: {text}")
    if args.out:
        write_json(args.out, {"tracks": len(base), "base": args.runs[0], "runs": rows})


if __name__ == "__main__":
    run()
