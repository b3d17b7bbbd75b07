"""The env-bound stages on a real Ray cluster: two Ray nodes on this machine (tools/ray_cluster.py),
started and stopped by each test inside a network namespace of its own that has only loopback
(`unshare --net`, which needs root: CI runs as root), so that no packet leaves the machine. The
repo is the end-to-end tests' (tests/conftest.py); each test leaves it as it found it."""

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.e2e import ENV, OUTS, digest, edit_params, error_of, leftovers, processes, restore, run


def can_isolate():
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not can_isolate(), reason="needs a network namespace (unshare --net, as root)"),
]

CONTROLLER_OUTS = ["models/controller.pt", "metrics/controller"]
PROGRESS = ".dvc/tmp/wm/progress/controller.npz"


CLUSTER = ["python", "-m", "tools.ray_cluster", "--isolated", "--nodes", "2"]  # of 1 CPU each


def on_cluster(repo, script, check=True):
    """Run the shell `script` in `repo` with a two-node cluster of 1 CPU per node, isolated."""
    return run(repo, *CLUSTER, "--", "sh", "-c", script, check=check)


def test_env_bound_stages_on_two_nodes_make_the_local_bytes(repo):
    local = digest(repo)
    try:
        result = on_cluster(
            repo, "dvc repro -f -s collect && dvc repro -f -s controller && dvc repro -f -s evaluate"
        )
        # collect, controller (CMA-ES, then finalists) and evaluate (gymnasium, then envpool), on both nodes
        assert result.stderr.count("ray: 2 actors of 1 CPU on 2 node(s)") == 5, result.stderr[-3000:]
        assert digest(repo) == local
        assert not run(repo, "git", "status", "--porcelain").stdout.strip()  # dvc.lock and metrics too
        assert run(repo, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    finally:
        restore(repo)


@pytest.fixture
def longer_controller(repo):
    """Params for a controller run of several batches per generation, and its bytes run locally."""
    edit_params(repo, "controller", generations=4)
    edit_params(repo, "env", batch_size=2)  # the population of 4 drives in 2 batches per generation
    try:
        run(repo, "python", "-m", "stages.controller")
        yield digest(repo, CONTROLLER_OUTS)
    finally:
        restore(repo)


def test_a_killed_ray_worker_is_replaced_and_its_batch_rerun(repo, longer_controller):
    # as soon as generation 1 is saved, kill -9 one of this cluster's actors while it drives a batch
    cluster = subprocess.Popen(
        [*CLUSTER, "--", "python", "-m", "stages.controller"],
        cwd=repo,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed, deadline = False, time.monotonic() + 300
    while not killed and cluster.poll() is None and time.monotonic() < deadline:
        actors = processes(r"^ray::DriveActor\.run", under=cluster.pid) if (repo / PROGRESS).exists() else []
        if actors:
            os.kill(actors[0], signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    assert killed, "no actor of the cluster was driving after generation 1"
    assert cluster.wait() == 0
    assert digest(repo, CONTROLLER_OUTS) == longer_controller


def test_a_stage_killed_on_the_cluster_resumes_like_a_local_one(repo, longer_controller):
    result = on_cluster(
        repo,
        f"""python -m stages.controller & stage=$!
        while [ ! -f {PROGRESS} ]; do sleep 0.02; done
        kill -9 $stage; wait $stage
        python -m stages.controller""",
    )
    assert "resuming CMA-ES after generation" in result.stdout + result.stderr
    assert digest(repo, CONTROLLER_OUTS) == longer_controller
    assert not leftovers(repo)


def test_an_unreachable_cluster_is_named(repo):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = digest(repo, OUTS)
    result = run(
        repo,
        "unshare",
        "--net",
        "sh",
        "-c",
        f"ip link set lo up && WM_EXECUTOR=ray RAY_ADDRESS=127.0.0.1:{port} python -m stages.controller",
        check=False,
    )
    assert f"RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster answers there" in error_of(result)
    assert digest(repo, OUTS) == before
