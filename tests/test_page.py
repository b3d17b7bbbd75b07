"""The results page (tools/page.py) of the smoke repo, opened from file:// in headless Chromium
with no network but loopback: every chart drew, every video loads, nothing was fetched, no
console error. The screenshot is kept in test-artifacts/."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import ENV, restore, run

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHARTS = 9  # the per-track returns and 8 training curves (tools/page.py CURVES)


def look(repo, page, name):
    """What tests.browser saw of `page`, run in a network namespace with only loopback."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    command = f"ip link set lo up && exec {sys.executable} -m tests.browser {page} {shot}"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", command],
        cwd=Path(__file__).resolve().parents[1],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert shot.stat().st_size > 10_000  # a real screenshot, kept for people to look at
    return json.loads(result.stdout)


def assert_drawn(seen, videos):
    assert len(seen["charts"]) == CHARTS, seen["charts"]
    for chart in seen["charts"]:
        assert chart["width"] > 100 and chart["height"] > 100 and chart["marks"] > 10, chart
    assert len(seen["videos"]) == videos and all(duration > 0 for duration in seen["videos"]), seen["videos"]
    assert seen["images"] and all(width > 0 for width in seen["images"]), seen["images"]
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
    assert seen["missing"] == 0  # no file the page shows was missing


def test_results_page_renders_offline_in_chromium(repo):
    assert shutil.which("chromium"), "Debian's chromium is needed: apt-get install chromium (.ci/run does)"
    run(repo, "python", "-m", "tools.page", "--out", "results/index.html")
    seen = look(repo, repo / "results/index.html", "results_page")
    assert_drawn(seen, videos=2)
    assert "World Models, z and h" in seen["text"] and "Stage timings" in seen["text"]


def test_results_page_shows_two_revisions_side_by_side(repo):
    run(repo, "python", "-m", "tools.page", "--rev", "HEAD", "--out", "results/diff.html")
    seen = look(repo, repo / "results/diff.html", "results_page_diff")
    assert_drawn(seen, videos=4)
    assert "workspace vs HEAD" in seen["title"]


def test_results_page_names_an_unknown_revision(repo):
    result = run(repo, "python", "-m", "tools.page", "--rev", "no-such-rev", check=False)
    assert result.returncode != 0
    assert (
        "no-such-rev: neither a git revision nor a dvc experiment" in result.stderr.strip().splitlines()[-1]
    )


def test_results_page_names_a_corrupt_metrics_file(repo):
    (repo / "metrics/eval.json").write_text("{ not json")
    try:
        result = run(repo, "python", "-m", "tools.page", "--out", "results/bad.html", check=False)
        assert result.returncode != 0
        assert "metrics/eval.json (workspace): not valid JSON" in result.stderr.strip().splitlines()[-1]
        assert not (repo / "results/bad.html").exists()
    finally:
        restore(repo)
