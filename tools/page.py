"""Write the results page: one self-contained HTML file with the training curves, the evaluation
table and every track's return, the VAE's reconstructions, the drive and dream videos, the
scalar metrics and the stage timings, from the files DVC tracks.

    python -m tools.page [--out results/index.html] [--rev REV [--rev REV]]

No --rev: the workspace. One --rev: the workspace beside REV; two: the first beside the second.
REV is anything git names (a commit, branch or tag) or a `dvc exp` name.

Charts are SVG drawn here by matplotlib and the image and videos are embedded as data: URIs, so
the page makes no network request when it opens (no chart library to fetch from a CDN, as
`dvc plots show`'s page does), works from a cluster's disk or an email attachment, and looks
the same in any browser. The cost is size: the videos make a page a few MB.
"""

import argparse
import base64
import html
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("results/index.html")
LINE_STYLES = ["-", "--"]  # one per revision shown
WORST_LABELLED = 5  # the z+h controller's worst tracks, labelled with their seeds


class Curve(NamedTuple):
    title: str
    directory: str  # a stage's dvclive directory
    series: tuple  # (file under plots/metrics, without .tsv; label)
    x_label: str


CMA_SERIES = (
    ("generation/best", "best"),
    ("generation/mean", "mean"),
    ("generation/worst", "worst"),
    ("watch/real", "best, on real validate tracks (controller.watch_tracks)"),
)
CURVES = [
    Curve(
        "PPO, the data policy",
        "metrics/ppo",
        (("eval/mean_reward", "evaluation return"), ("train/ep_rew_mean", "training return")),
        "rollout",
    ),
    Curve(
        "ConvVAE: reconstruction",
        "metrics/vae",
        (("train/reconstruction", "train"), ("val/reconstruction", "validation")),
        "epoch",
    ),
    Curve("ConvVAE: KL", "metrics/vae", (("train/kl", "train"), ("val/kl", "validation")), "epoch"),
    Curve(
        "MDN-RNN: latent NLL", "metrics/mdnrnn", (("train/nll", "train"), ("val/nll", "validation")), "epoch"
    ),
    Curve(
        "MDN-RNN: reward and done heads",
        "metrics/mdnrnn",
        (
            ("train/reward_mse", "reward MSE, train"),
            ("val/reward_mse", "reward MSE, validation"),
            ("train/done_bce", "done BCE, train"),
            ("val/done_bce", "done BCE, validation"),
        ),
        "epoch",
    ),
    Curve(
        "CMA-ES, controller on z and h",
        "metrics/controller",
        CMA_SERIES,
        "generation",
    ),
    Curve(
        "CMA-ES, controller on z only",
        "metrics/controller_z",
        CMA_SERIES,
        "generation",
    ),
    Curve(
        "PPO baseline (the world model's training time)",
        "metrics/ppo_baseline",
        (("eval/mean_reward", "evaluation return"), ("train/ep_rew_mean", "training return")),
        "rollout",
    ),
]
POLICIES = {  # metrics/eval.json's rows, in the order shown
    "controller": "World Models, z and h",
    "controller_z": "World Models, z only",
    "controller_envpool": "World Models, z and h, on envpool",
    "controller_colour": "World Models, z and h, other track and grass colours",
    "controller_bars": "World Models, z and h, black bars on the sides",
    "ppo": "PPO (data policy)",
    "ppo_baseline": "PPO, the world model's training time",
    "random": "random actions",
}
MEDIA = [
    ("metrics/eval_drive.mp4", "a real drive of the z+h controller (a test track)"),
    ("metrics/dream.mp4", "real (left) and dream (right), from the same frame"),
    ("metrics/vae_reconstruction.png", "validation frames (top) and the VAE's reconstructions (bottom)"),
]


class Source:
    """The files of one revision (None: the workspace), read through DVC: git-tracked metrics
    from git, cached outputs (the videos) from DVC's cache."""

    def __init__(self, rev):
        self.rev = rev
        if rev is None:
            self.label, self.fs = "workspace", None
        else:
            from dvc.api import DVCFileSystem

            commit = resolve(rev)
            self.label = rev if commit.startswith(rev) else f"{rev} ({commit[:7]})"
            self.fs = DVCFileSystem(str(ROOT), rev=commit)

    def read(self, path):
        """The bytes of `path`, or None if this revision has no such file or its data is not in
        the cache."""
        if self.fs is None:
            file = ROOT / path
            return file.read_bytes() if file.is_file() else None
        try:
            return self.fs.read_bytes(path)
        except Exception:  # missing at that revision, or not in the cache: DVC raises many types
            return None

    def json(self, path):
        data = self.read(path)
        try:
            return json.loads(data) if data is not None else None
        except ValueError as err:
            sys.exit(f"error: {path} ({self.label}): not valid JSON ({err}); rerun its stage (dvc repro)")

    def tsv(self, path):
        """(steps, values) of a dvclive TSV file, or None."""
        data = self.read(path)
        if data is None:
            return None
        try:
            rows = [line.split("\t") for line in data.decode().splitlines()[1:] if line]
            return np.array([float(r[0]) for r in rows]), np.array([float(r[-1]) for r in rows])
        except (ValueError, IndexError, UnicodeDecodeError) as err:
            sys.exit(f"error: {path} ({self.label}): not a dvclive TSV ({err}); rerun its stage (dvc repro)")


def resolve(rev):
    """The commit `rev` names: git's own names first, then a `dvc exp` name."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if found.returncode == 0:
        return found.stdout.strip()
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import resolve_name

    with Repo(str(ROOT)) as repo:
        ref = resolve_name(repo.scm, rev).get(rev)
        if ref is not None:
            return repo.scm.get_ref(str(ref))
    sys.exit(f"error: {rev}: neither a git revision nor a dvc experiment of this repo (dvc exp list)")


def svg(fig):
    """The figure as inline SVG markup (no XML prolog), with fixed ids and no date, so the same
    data gives the same page."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def curve_chart(curve, sources):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    drawn = 0
    for source, style in zip(sources, LINE_STYLES, strict=False):
        for index, (name, label) in enumerate(curve.series):
            data = source.tsv(f"{curve.directory}/plots/metrics/{name}.tsv")
            if data is None:
                continue
            suffix = f" ({source.label})" if len(sources) > 1 else ""
            ax.plot(
                *data,
                style,
                color=f"C{index}",
                label=label + suffix,
                marker="." if len(data[0]) < 30 else None,
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(curve.title)
    ax.set_xlabel(curve.x_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return svg(fig)


def returns_chart(evaluations, sources):
    """Every track's return, a row per policy (and revision), the z+h controller's worst tracks
    labelled with their seeds."""
    import matplotlib.pyplot as plt

    rows = [
        (policy, source, evaluation)
        for policy in POLICIES
        for source, evaluation in zip(sources, evaluations, strict=True)
        if evaluation and policy in evaluation
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.4))
    rng = np.random.default_rng(0)  # jitter only: fixed, so the same data draws the same page
    for y, (policy, _, evaluation) in enumerate(rows):
        returns = np.array(evaluation[policy]["returns"])
        color = f"C{list(POLICIES).index(policy)}"
        ax.scatter(returns, y + rng.uniform(-0.18, 0.18, len(returns)), s=9, alpha=0.6, color=color)
        ax.plot([returns.mean()] * 2, [y - 0.3, y + 0.3], color="black", linewidth=1.5)
        if policy == "controller" and "test_seeds" in evaluation:
            for rank, i in enumerate(np.argsort(returns)[:WORST_LABELLED]):
                ax.annotate(
                    str(evaluation["test_seeds"][i]),
                    (returns[i], y),
                    xytext=(0, 8 + 8 * (rank % 3)),  # staggered: close returns do not overprint
                    textcoords="offset points",
                    fontsize=7,
                    ha="center",
                )
    labels = [POLICIES[p] + (f" ({s.label})" if len(sources) > 1 else "") for p, s, _ in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("return per test track (bar: mean; numbers: seeds of the z+h controller's worst tracks)")
    ax.grid(axis="x", alpha=0.3)
    return svg(fig)


def flatten(data, prefix=""):
    """Scalar leaves of nested JSON as {"a.b": value}; lists are left out."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def metrics_files():
    """The metrics files the stages declare in dvc.yaml, but the evaluation (shown on its own)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    files = []
    for stage in stages.values():
        for entry in stage.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if path != "metrics/eval.json":
                files.append(path)
    return files


def table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def number(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def figure(content, caption, source, sources):
    """A figure captioned with the revision it shows when there are two."""
    caption += f" ({source.label})" if len(sources) > 1 else ""
    return f"<figure>{content}<figcaption>{html.escape(caption)}</figcaption></figure>"


def missing(path, source):
    where = html.escape(source.label)
    return f'<p class="missing">{html.escape(path)}: not in {where} (dvc pull, or dvc repro)</p>'


def evaluation_section(sources):
    evaluations = [s.json("metrics/eval.json") for s in sources]
    rows = []
    for policy, name in POLICIES.items():
        cells = [
            f"{r['mean']:.1f} +- {r['std']:.1f} ({r['min']:.1f}, {r['max']:.1f})" if r else ""
            for r in ((e or {}).get(policy) for e in evaluations)
        ]
        if any(cells):
            rows.append([name, *cells])
    if not rows:
        return "".join(missing("metrics/eval.json", s) for s in sources)
    tracks = next(len(e["test_seeds"]) for e in evaluations if e)
    header = ["policy", *(f"{s.label}: mean +- std (min, max)" for s in sources)]
    chart = returns_chart(evaluations, sources)
    return (
        f"<p>Returns on {tracks} test tracks that no stage trained or selected on "
        "(on gymnasium, but for the envpool row).</p>"
        + table(header, rows)
        + f'<div class="chart">{chart}</div>'
    )


def media_section(sources):
    rows = []
    for path, caption in MEDIA:
        cells = []
        for source in sources:
            data = source.read(path)
            if data is None:
                cells.append(missing(path, source))
            elif path.endswith(".mp4"):
                video = (
                    f'<video controls muted loop preload="auto" src="{data_uri(data, "video/mp4")}"></video>'
                )
                cells.append(figure(video, caption, source, sources))
            else:
                image = f'<img alt="{html.escape(caption)}" src="{data_uri(data, "image/png")}">'
                cells.append(figure(image, caption, source, sources))
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    return "".join(rows)


def rounds_of(sources):
    """The metrics directories of the rounds of the iterative procedure (iterate.rounds) that any
    of `sources` ran: metrics/rounds/1, 2, ... up to the first that none has."""
    found = []
    while any(s.read(f"metrics/rounds/{len(found) + 1}/collect.json") is not None for s in sources):
        found.append(f"metrics/rounds/{len(found) + 1}")
    return found


def round_curves(sources):
    """Each round's curves: the MDN-RNN trained on, and CMA-ES going on from the last controller."""
    curves = []
    for n, directory in enumerate(rounds_of(sources), 1):
        nll = (("train/nll", "train"), ("val/nll", "validation"))
        curves.append(Curve(f"Round {n}: MDN-RNN latent NLL", f"{directory}/mdnrnn", nll, "epoch"))
        curves.append(
            Curve(
                f"Round {n}: CMA-ES, controller on z and h",
                f"{directory}/controller",
                CMA_SERIES,
                "generation",
            )
        )
    return curves


def curves_section(sources):
    curves = CURVES + round_curves(sources)
    charts = [chart for chart in (curve_chart(curve, sources) for curve in curves) if chart]
    return "".join(f'<div class="chart">{c}</div>' for c in charts) or "<p>No stage has run yet.</p>"


def metrics_section(sources):
    flat = [{} for _ in sources]
    rounds = [
        f"{d}/{name}"
        for d in rounds_of(sources)
        for name in ("collect.json", "mdnrnn/metrics.json", "controller/metrics.json")
    ]
    for path in metrics_files() + rounds:
        stage = Path(path).parent.name if Path(path).name == "metrics.json" else Path(path).stem
        if path.startswith("metrics/rounds/"):  # "round 2 controller"
            stage = f"round {path.split('/')[2]} {stage}"
        for values, source in zip(flat, sources, strict=True):
            values.update(flatten(source.json(path) or {}, f"{stage}: "))
    keys = sorted(set().union(*flat))
    rows = [[key, *(number(values.get(key, "")) for values in flat)] for key in keys]
    return table(["metric", *(s.label for s in sources)], rows)


def timings_section(sources):
    files = sorted((ROOT / "timings").glob("*.json")) if any(s.rev is None for s in sources) else []
    if not files:
        return "<p>Timings are kept only in the workspace that ran the stages (timings/).</p>"
    rows = [
        [file.stem, ", ".join(f"{k}: {number(v)}" for k, v in sorted(json.loads(file.read_text()).items()))]
        for file in files
    ]
    return (
        "<p>This workspace's last run of each stage (timings/, outside git and DVC: wall-clock "
        "figures differ between identical runs).</p>" + table(["stage", "wall-clock figures"], rows)
    )


SECTIONS = [  # id, title, what draws it
    ("evaluation", "Evaluation", evaluation_section),
    ("videos", "Drive, dream and reconstructions", media_section),
    ("training", "Training curves", curves_section),
    ("metrics", "All metrics", metrics_section),
    ("timings", "Stage timings", timings_section),
]


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } .row { display: flex; gap: 1em; }
.row figure { flex: 1 1 0; min-width: 0; }
figure { margin: 0; } video, img { max-width: 100%; } .chart { display: inline-block; margin: .5em; }
.chart svg { max-width: 100%; height: auto; } .missing { color: #a00; } nav a { margin-right: 1em; }
"""


def page(sources):
    parts = [(id_, name, draw(sources)) for id_, name, draw in SECTIONS]
    title = "World Models on CarRacing-v3: " + " vs ".join(s.label for s in sources)
    nav = "".join(f'<a href="#{id_}">{html.escape(name)}</a>' for id_, name, _ in parts)
    body = "".join(
        f'<section id="{id_}"><h2>{html.escape(name)}</h2>{content}</section>' for id_, name, content in parts
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the page to write (default: {OUT})")
    parser.add_argument("--rev", action="append", default=[], help="a revision or dvc experiment; up to two")
    args = parser.parse_args()
    if len(args.rev) > 2:
        sys.exit("error: --rev: at most two revisions side by side")
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "wm"  # fixed element ids: same data, same page
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: smaller, and selectable
    revs = args.rev if len(args.rev) == 2 else [None, *args.rev]
    text = page([Source(rev) for rev in revs])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(text) / 1e6:.1f} MB): open it in a browser")


if __name__ == "__main__":
    main()
