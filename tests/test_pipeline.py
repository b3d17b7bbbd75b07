"""End to end, on the real things: a temporary copy of this repo (its own git and DVC), the smoke
profile, the real CarRacing-v3 (envpool for collect and CMA-ES, gymnasium and envpool in
evaluate), `dvc repro` of all 11 stages, an experiment, a push and pull through a temporary
local remote, and the stages' errors on bad inputs. Each test leaves the repo as the fixture
made it, so they pass in any order."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.e2e import (
    ENV,
    METRICS,
    OUTS,
    VAE_DOWNSTREAM,
    digest,
    edit_params,
    error_of,
    leftovers,
    processes,
    restore,
    run,
    stages_run,
)

pytestmark = pytest.mark.slow


def test_repro_makes_every_output_and_metric(repo):
    for out in OUTS:
        assert (repo / out).exists(), out
    assert len(list((repo / "data/rollouts").glob("episode_*.npz"))) == 4
    assert len(list((repo / "data/latents").glob("episode_*.npz"))) == 4
    for path in METRICS:
        assert json.loads((repo / path).read_text()), path
    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json").stdout)
    workspace = next(iter(shown.values()))["data"]  # keyed "" or "workspace" by DVC version
    assert set(METRICS) <= set(workspace), set(METRICS) - set(workspace)
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    policies = ("controller", "controller_z", "ppo", "ppo_baseline", "random", "controller_envpool")
    for policy in (*policies, "controller_colour", "controller_bars"):
        returns = evaluation[policy]["returns"]
        assert len(returns) == 2, policy
        assert evaluation[policy]["mean"] == pytest.approx(np.mean(returns))
        assert evaluation[policy]["std"] == pytest.approx(np.std(returns))
        assert (evaluation[policy]["min"], evaluation[policy]["max"]) == (min(returns), max(returns))
    # each row drove its own policy: the controller and the random policy do not drive alike
    assert evaluation["controller"]["returns"] != evaluation["random"]["returns"]
    for video in ("metrics/eval_drive.mp4", "metrics/dream.mp4"):
        assert b"ftyp" in (repo / video).read_bytes()[:16] and b"avc1" in (repo / video).read_bytes()
    assert (repo / "metrics/vae_reconstruction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot of each CMA-ES generation's best: its fitness, and no watched return (watch_tracks 0)
    plots = json.loads(run(repo, "dvc", "plots", "show", "--json").stdout)
    assert "errors" not in plots, plots["errors"]
    points = plots["data"]["dream_vs_real"][0]["content"]["data"]["values"]
    fitness = [float(p["fitness"]) for p in points if p["field"] == "fitness"]
    best = np.loadtxt(repo / "metrics/controller/plots/metrics/generation/best.tsv", skiprows=1)[:, 1]
    assert fitness == pytest.approx(best, abs=0.01) and len(fitness) == 2  # the smoke profile's generations
    assert {p["real"] for p in points} == {""}
    assert run(repo, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_evaluation_drove_none_of_the_collected_tracks(repo):
    collected = {int(np.load(f)["seed"]) for f in (repo / "data/rollouts").glob("*.npz")}
    tested = set(json.loads((repo / "metrics/eval.json").read_text())["test_seeds"])
    assert collected and tested and not collected & tested


def test_corrupt_episode_file_is_named(repo):
    victim = repo / "data/rollouts/episode_00001.npz"
    victim.write_bytes(victim.read_bytes()[:1000])
    (repo / "models/vae.pt").unlink()
    try:
        message = error_of(run(repo, "python", "-m", "stages.vae", check=False))
        assert "data/rollouts/episode_00001.npz: corrupt or truncated file" in message
        assert not (repo / "models/vae.pt").exists() and not leftovers(repo)
    finally:
        restore(repo)


def test_missing_input_is_named(repo):
    shutil.rmtree(repo / "data/latents")
    (repo / "models/mdnrnn.pt").unlink()
    try:
        message = error_of(run(repo, "python", "-m", "stages.mdnrnn", check=False))
        assert "data/latents: no latent files" in message
        assert not (repo / "models/mdnrnn.pt").exists()
    finally:
        restore(repo)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("z_dimm", 8, "params.yaml: unknown key vae.z_dimm"),
        ("z_dim", 0, "params.yaml: vae.z_dim must be in [1, 4096], got 0"),
    ],
)
def test_bad_params_stop_the_stage_before_it_writes(repo, key, value, message):
    # the stage alone (DVC itself deletes a stage's outs before running it)
    before = digest(repo, ["models/vae.pt", "metrics/vae", "metrics/vae_reconstruction.png"])
    edit_params(repo, "vae", **{key: value})
    try:
        assert message in error_of(run(repo, "python", "-m", "stages.vae", check=False))
        assert digest(repo, ["models/vae.pt", "metrics/vae", "metrics/vae_reconstruction.png"]) == before
        assert not leftovers(repo)
    finally:
        restore(repo)


@pytest.mark.parametrize("how", ["dvc repro", "dvc exp run -S"])
def test_a_bad_param_stops_dvc_before_any_output_is_deleted(repo, how):
    before = digest(repo, OUTS + METRICS)
    try:
        if how == "dvc repro":
            edit_params(repo, "vae", z_dim=-3)
            result = run(repo, "dvc", "repro", check=False)
        else:
            result = run(repo, "dvc", "exp", "run", "-S", "vae.z_dim=-3", check=False)
        assert result.returncode != 0
        assert "params.yaml: vae.z_dim must be in [1, 4096], got -3" in result.stdout + result.stderr
        assert digest(repo, OUTS + METRICS) == before  # every model, data file and metric in place
    finally:
        restore(repo)


def test_checkpoint_of_another_z_dim_is_named(repo):
    saved = torch.load(repo / "models/vae.pt", weights_only=True)["config"]["z_dim"]
    other = 4 if saved != 4 else 8
    edit_params(repo, "vae", z_dim=other)
    try:
        message = error_of(run(repo, "python", "-m", "stages.encode", check=False))
        assert f"models/vae.pt: checkpoint has z_dim={saved}, expected z_dim={other}" in message
    finally:
        restore(repo)


def test_corrupt_ppo_model_is_named(repo):
    victim = repo / "models/ppo.pt"
    victim.write_bytes(victim.read_bytes()[:2000])
    try:
        message = error_of(run(repo, "python", "-m", "stages.collect", check=False))
        assert "models/ppo.pt: truncated or damaged checkpoint" in message
        assert not leftovers(repo)
    finally:
        restore(repo)


def test_stage_run_by_a_python_without_the_packages_says_which(repo):
    bare = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter the venv was made from
    probe = subprocess.run([str(bare), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{bare} has torch, so it cannot stand for a Python outside the venv")
    result = subprocess.run(
        [str(bare), "-m", "stages.vae"], cwd=repo, env=ENV, capture_output=True, text=True
    )
    message = error_of(result)
    assert "has no torch module: activate the project's venv" in message


def test_controller_stage_evolves_in_the_dream(repo):
    edit_params(repo, "controller", mode="dream", dream_steps=10, rollouts=2)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    try:
        # no real env, not even for the final choice: an executor that cannot exist is never asked
        result = subprocess.run(
            ["python", "-m", "stages.controller"],
            cwd=repo,
            env={**ENV, "WM_EXECUTOR": "ray", "RAY_ADDRESS": nowhere},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        metrics = json.loads((repo / "metrics/controller/metrics.json").read_text())
        assert metrics["step"] == 1  # two generations logged, steps 0 and 1
        assert np.isfinite(metrics["generation"]["best"]) and "return" in metrics["select"]
        checkpoint = torch.load(repo / "models/controller.pt", weights_only=True)
        assert checkpoint["config"]["h_dim"] == 16  # the smoke MDN-RNN's hidden units
        assert checkpoint["state_dict"]["params"].shape == ((8 + 16) * 3 + 3,)  # (Z + H) x 3 + 3
        # the watch: each generation's best also drives a real validate track, logged beside its
        # dream score and not fed back (the same controller comes out)
        edit_params(repo, "controller", mode="dream", dream_steps=10, rollouts=2, watch_tracks=1)
        result = subprocess.run(
            ["python", "-m", "stages.controller"], cwd=repo, env=ENV, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        plots = repo / "metrics/controller/plots/metrics"
        real = np.loadtxt(plots / "watch/real.tsv", skiprows=1)
        dreamt = np.loadtxt(plots / "watch/fitness.tsv", skiprows=1)
        assert real.shape == dreamt.shape == (2, 2) and np.isfinite(real).all()
        assert (dreamt[:, 1] == np.loadtxt(plots / "generation/best.tsv", skiprows=1)[:, 1]).all()
        rewatched = torch.load(repo / "models/controller.pt", weights_only=True)
        assert rewatched["state_dict"]["params"].equal(checkpoint["state_dict"]["params"])
    finally:
        restore(repo)


def test_an_mdnrnn_of_whole_episodes_with_dropout_dreams_from_warm_states(repo):
    # mdnrnn.carry_state: M trains on whole episodes; dream mode and the dream video then start
    # from the LSTM state read up to each start (the start lines here), not from zeros; with
    # mdnrnn.dropout, M trains with it and each dream has its own mask (tests/test_models.py)
    edit_params(repo, "mdnrnn", carry_state=True, dropout=0.2)
    edit_params(repo, "controller", mode="dream", dream_steps=10, rollouts=2, dream_starts="line")
    try:
        for stage in ("mdnrnn", "controller", "dream"):
            result = subprocess.run(
                ["python", "-m", f"stages.{stage}"], cwd=repo, env=ENV, capture_output=True, text=True
            )
            assert result.returncode == 0, (stage, result.stderr[-2000:])
        dream = json.loads((repo / "metrics/dream.json").read_text())
        assert np.isfinite(dream["dream_reward"]) and 0 <= dream["road_agreement"] <= 1
        assert np.isfinite(
            json.loads((repo / "metrics/controller/metrics.json").read_text())["select"]["return"]
        )
    finally:
        restore(repo)


def test_a_round_of_the_iterative_procedure_collects_trains_on_and_evolves_on(repo):
    # iterate.rounds: round 1 drives the stages' agent plus noise on new tracks, adds the episodes
    # to the latents, trains M on and evolves C on from theirs; evaluate and dream use round 1's
    edit_params(repo, "iterate", rounds={"1": {"models": "models", "data": "data/latents"}})
    edit_params(repo, "iterate", agent="models/rounds/1")
    try:
        result = run(repo, "dvc", "repro")
        ran = re.findall(r"Running stage '([\w@]+)'", result.stdout)
        assert sorted(ran) == [
            "dream",
            "evaluate",
            "params",
            "round_controller@1",
            "round_data@1",
            "round_mdnrnn@1",
        ]
        base = sorted((repo / "data/latents").iterdir())
        latents = sorted((repo / "data/rounds/1").iterdir())
        assert len(latents) == len(base) + 2  # iterate.episodes new ones after the earlier data
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(base, latents))
        assert json.loads((repo / "metrics/rounds/1/collect.json").read_text())["episodes"] == 2
        for name in ("mdnrnn.pt", "controller.pt"):
            assert (repo / "models/rounds/1" / name).read_bytes() != (repo / "models" / name).read_bytes()
        assert "round_controller@1" in run(repo, "dvc", "dag").stdout
        # tools.timed_repro's stages when none are named: the round's, in the order they depend
        listed = run(repo, "python", "-c", "from tools.timed_repro import every_stage; print(*every_stage())")
        assert listed.stdout.split()[-5:] == [
            "round_data@1",
            "round_mdnrnn@1",
            "round_controller@1",
            "evaluate",
            "dream",
        ]
        # the dream stage's table of generations: the controller stage's 2, then the round's 1
        table = np.loadtxt(repo / "metrics/dream_vs_real.tsv", skiprows=1, usecols=(0, 1, 2), ndmin=2)
        assert table[:, :2].tolist() == [[0, 0], [1, 0], [2, 1]]
        round_best = np.loadtxt(
            repo / "metrics/rounds/1/controller/plots/metrics/generation/best.tsv", skiprows=1
        )
        assert table[2, 2] == pytest.approx(round_best[1], abs=0.01)
        assert "up to date" in run(repo, "dvc", "status").stdout
        run(repo, "python", "-m", "tools.page", "--out", "rounds.html")  # the page shows the round
        page = (repo / "rounds.html").read_text()
        assert "Round 1: CMA-ES" in page and "round 1 collect: mean_return" in page
        # tools.quick_eval drives the last round's agent, or an earlier round's (0: before any)
        for n in ("0", "1"):
            run(repo, "python", "-m", "tools.quick_eval", "2", "--round", n, "--out", f"round{n}.json")
            assert len(json.loads((repo / f"round{n}.json").read_text())["returns"]) == 2
        result = run(repo, "python", "-m", "tools.quick_eval", "2", "--round", "2", check=False)
        assert "--round 2: params.yaml has rounds 0 to 1" in error_of(result)
        for stage in ("evaluate", "dream"):  # driven by round 1's M and C (the path is in the error)
            (repo / "models/rounds/1/controller.pt").write_bytes(b"not a checkpoint")
            result = subprocess.run(
                ["python", "-m", f"stages.{stage}"], cwd=repo, env=ENV, capture_output=True, text=True
            )
            assert "models/rounds/1/controller.pt" in error_of(result)
    finally:
        for name in ("rounds.html", "round0.json", "round1.json"):
            (repo / name).unlink(missing_ok=True)
        for out in ("data/rounds", "models/rounds", "metrics/rounds"):
            shutil.rmtree(repo / out, ignore_errors=True)
        restore(repo)


@pytest.mark.parametrize("display", [None, ":99"], ids=["no DISPLAY", "a DISPLAY that is not there"])
def test_viewer_falls_back_to_mp4_without_a_display(repo, display):
    env = {
        key: value
        for key, value in ENV.items()
        if key not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")
    }
    if display:
        env["DISPLAY"] = display
    for agent in ("world_model", "ppo"):
        out = repo / f"play_{agent}_5.mp4"
        out.unlink(missing_ok=True)
        result = subprocess.run(
            ["python", "-m", "tools.play", "--agent", agent, "--seed", "5"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert f"wrote the drive to play_{agent}_5.mp4" in result.stdout
        assert b"avc1" in out.read_bytes()
        out.unlink()


def test_experiment_reruns_only_what_depends_on_the_vae(repo):
    try:
        result = run(repo, "dvc", "exp", "run", "-S", "vae.z_dim=4")
        # params.yaml changed, so the params check runs too (and passes the same bytes on)
        assert sorted(stages_run(result.stdout)) == sorted(VAE_DOWNSTREAM | {"params"})
        assert json.loads((repo / "metrics/vae/metrics.json").read_text())["train_frames"] > 0
        assert yaml.safe_load((repo / "params.yaml").read_text())["vae"]["z_dim"] == 4
        shown = run(repo, "dvc", "exp", "show", "--no-pager", "--csv").stdout
        assert "vae.z_dim" in shown.splitlines()[0] and "controller.mean" in shown.splitlines()[0]
    finally:
        restore(repo)


CONTROLLER_OUTS = ["models/controller.pt", "metrics/controller"]


@pytest.mark.parametrize("backend, components", [("envpool", 0), ("gymnasium", 0), ("envpool", 5)])
def test_controller_stage_gives_the_same_bytes_twice(repo, backend, components):
    """Also with CMA-ES on 5 principal components of [z, h]: it saves a plain controller."""
    edit_params(repo, "env", backend=backend)
    edit_params(repo, "controller", components=components)
    try:
        digests = []
        for _ in range(2):
            run(repo, "python", "-m", "stages.controller")
            digests.append(digest(repo, CONTROLLER_OUTS))
        assert digests[0] == digests[1]
        assert "metrics/controller/fitness.tsv" in digests[0]  # every candidate's fitness, compared too
        config = torch.load(repo / "models/controller.pt", weights_only=True)["config"]
        assert config["h_dim"] > 0 and config["hidden"] == 0  # the [z, h] controller, whatever was searched
    finally:
        restore(repo)


PROGRESS_FILES = {"controller": "controller.npz", "ppo": "ppo.pt", "evaluate": "evaluate.json"}


def saved_generations(path):
    try:
        with np.load(path) as saved:
            return len(saved["fitness"])
    except (OSError, ValueError, KeyError):
        return 0


def saved_timesteps(path):
    try:
        return torch.load(path, weights_only=True)["num_timesteps"]
    except Exception:  # not there yet, or being replaced
        return 0


def saved_batches(path):
    try:
        return len(json.loads(path.read_text())["batches"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize(
    "stage, edit, outs, saved_so_far, kill_after, total, said",
    [
        (
            "controller",
            {"controller": {"generations": 12}},
            CONTROLLER_OUTS,
            saved_generations,
            5,
            12,
            "resuming CMA-ES after generation {} of 12",
        ),
        *[
            (  # 6 rollouts of 64 steps on 60-step tracks: killed mid-episode, after an evaluation
                "ppo",
                {"ppo": {"timesteps": 384, "eval_freq": 128, "backend": backend}},
                ["models/ppo.pt", "metrics/ppo"],
                saved_timesteps,
                192,
                384,
                "resuming PPO after {} of 384 timesteps",
            )
            for backend in ("gymnasium", "envpool")
        ],
        (  # 3 rows of 6 tracks in batches of 2: killed in the second row or so
            "evaluate",
            {
                "evaluate": {"episodes": 6, "policies": ["controller", "ppo", "random"]},
                "env": {"batch_size": 2},
            },
            ["metrics/eval.json", "metrics/eval_drive.mp4"],
            saved_batches,
            4,
            9,
            "resuming evaluate: {} batches already driven",
        ),
    ],
    ids=["controller", "ppo-gymnasium", "ppo-envpool", "evaluate"],
)
def test_a_stage_killed_mid_run_resumes_to_the_same_bytes(
    repo, stage, edit, outs, saved_so_far, kill_after, total, said
):
    for group, values in edit.items():
        edit_params(repo, group, **values)
    progress = repo / ".dvc/tmp/wm/progress" / PROGRESS_FILES[stage]
    try:
        run(repo, "python", "-m", f"stages.{stage}")
        whole = digest(repo, outs)
        assert not progress.exists()  # a finished run leaves no progress behind
        process = subprocess.Popen(
            ["python", "-m", f"stages.{stage}"],
            cwd=repo,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while saved_so_far(progress) < kill_after and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = saved_so_far(progress)
        assert kill_after <= killed_at < total, killed_at
        result = run(repo, "python", "-m", f"stages.{stage}")
        assert said.format(killed_at) in result.stdout + result.stderr
        if stage == "evaluate":  # the saved batches are not driven again (its progress bars name them)
            assert "evaluate controller from track 0:" not in result.stderr
        assert digest(repo, outs) == whole
        assert not progress.exists() and not leftovers(repo)
    finally:
        restore(repo)


def kill_stage_while_dvc_runs_it(repo, stage, sign):
    """`dvc repro -f -s stage`, its stage process killed with SIGKILL as soon as a file matching
    the glob `sign` shows that its work is under way; returns dvc's exit code."""
    for path in repo.glob(sign):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dvc = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", stage],
        cwd=repo,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(repo.glob(sign)) and dvc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    found = processes(rf"^\S*python\S* -m stages\.{stage}$", under=dvc.pid)  # this repo's stage only
    assert found, f"{stage} was not running when {sign} appeared"
    os.kill(found[0], signal.SIGKILL)
    return dvc.wait()


@pytest.mark.parametrize(
    "stage, sign, edit",
    [
        ("collect", ".dvc/tmp/wm/data__rollouts.tmp*", {}),  # its episodes' directory, being filled
        ("vae", "metrics/vae/metrics.json", {"vae": {"epochs": 4}}),  # after epoch 1 of 4
        ("mdnrnn", "metrics/mdnrnn/metrics.json", {}),  # after epoch 1 of 2
        ("controller", ".dvc/tmp/wm/progress/controller.npz", {}),  # after generation 1 of 2
    ],
)
def test_a_stage_killed_mid_run_reruns_cleanly(repo, stage, sign, edit):
    for group, values in edit.items():
        edit_params(repo, group, **values)
    try:
        assert kill_stage_while_dvc_runs_it(repo, stage, sign) != 0  # it died before finishing
        run(repo, "dvc", "repro", stage)  # the stage and what it needs (not the stages after it)
        assert run(repo, "dvc", "status", stage).stdout.strip() == "Data and pipelines are up to date."
        assert not leftovers(repo)
        assert not processes("multiprocessing.spawn", cwd=repo)  # no env worker outlived its stage
    finally:
        restore(repo)


def test_push_then_pull_restores_identical_files(repo):
    before = digest(repo)
    run(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    for out in OUTS:
        path = repo / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run(repo, "dvc", "pull")
    assert digest(repo) == before
    assert run(repo, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."


SECRET = f"wm-secret-{os.getpid()}-{time.time_ns()}"  # appears nowhere in the repo unless leaked


@pytest.fixture
def s3_server(tmp_path):
    """moto's standalone S3 server on 127.0.0.1 (as DVC's own tests use it), with one bucket;
    yields its endpoint URL, stops it after the test."""
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="wm-test",
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="worldmodels")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def use_s3_remote(repo, endpoint):
    """The S3 remote, its address and credentials in .dvc/config.local only (never in git)."""
    run(repo, "dvc", "remote", "add", "--local", "-f", "s3", "s3://worldmodels/store")
    run(repo, "dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint)
    run(repo, "dvc", "remote", "modify", "--local", "s3", "access_key_id", "wm-test")
    run(repo, "dvc", "remote", "modify", "--local", "s3", "secret_access_key", SECRET)


def test_push_to_s3_then_pull_into_a_fresh_clone_gives_identical_files(repo, s3_server, tmp_path):
    use_s3_remote(repo, s3_server)
    try:
        run(repo, "dvc", "push", "-r", "s3")
        clone = tmp_path / "clone"
        run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
        use_s3_remote(clone, s3_server)
        run(clone, "dvc", "pull", "-r", "s3")
        assert digest(clone) == digest(repo) and len(digest(repo)) > 10
        assert run(clone, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
        for checkout in (repo, clone):  # credentials stay out of what git tracks
            assert SECRET not in (checkout / ".dvc" / "config").read_text()
            assert not run(checkout, "git", "grep", "-I", SECRET, check=False).stdout
    finally:
        (repo / ".dvc" / "config.local").unlink(missing_ok=True)


def test_trained_models_are_fetched_by_artifact_name(repo, tmp_path):
    run(repo, "dvc", "push", "-r", "local")
    for name, path in (("controller", "models/controller.pt"), ("vae", "models/vae.pt")):
        # a version is registered with an annotated tag (as GTO writes it): name@vX.Y.Z
        run(repo, "git", "tag", "-a", f"{name}@v1.0.0", "-m", f"Registering artifact {name} version v1.0.0")
        try:
            out = tmp_path / name
            run(tmp_path, "dvc", "artifacts", "get", str(repo), name, "--rev", "v1.0.0", "-o", str(out))
            assert out.read_bytes() == (repo / path).read_bytes()
        finally:
            run(repo, "git", "tag", "-d", f"{name}@v1.0.0")
    only = tmp_path / "get"
    run(tmp_path, "dvc", "get", str(repo), "models/mdnrnn.pt", "-o", str(only))
    assert only.read_bytes() == (repo / "models/mdnrnn.pt").read_bytes()


def test_pull_from_an_empty_remote_says_to_build(repo, tmp_path):
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    (tmp_path / "empty").mkdir()
    run(clone, "dvc", "remote", "add", "--local", "-d", "empty", str(tmp_path / "empty"))
    result = run(clone, "make", "pull", f"BIN={Path(sys.executable).parent}", check=False)
    assert result.returncode != 0
    assert "if nobody pushed it to this remote, build it with 'make repro'" in result.stderr


def test_timed_repro_resumes_and_keeps_the_times_it_has(repo, tmp_path):
    out = tmp_path / "timings.json"
    out.write_text(json.dumps({"params": {"seconds": 1.5, "peak_memory_mb": 9}, "total_seconds": 1.5}))
    timed = ["python", "-m", "tools.timed_repro", "--stages", "params,dream", "--out", str(out)]
    result = run(repo, *timed, "--resume")
    assert "params: timed already" in result.stdout
    timings = json.loads(out.read_text())
    assert timings["params"] == {"seconds": 1.5, "peak_memory_mb": 9}  # kept, not run again
    assert timings["dream"]["seconds"] > 0
    assert timings["total_seconds"] == pytest.approx(timings["dream"]["seconds"] + 1.5)
    out.write_text("{cut")
    assert f"{out}: not valid JSON" in error_of(run(repo, *timed, "--resume", check=False))


def test_dream_check_reports_the_dream_against_the_real_runs(repo, tmp_path):
    out = tmp_path / "dream_check.json"
    run(repo, "python", "-m", "tools.dream_check", "--dreams", "2", "--steps", "5", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["teacher_forced"]["episodes"] == len(list((repo / "data/latents").glob("*.npz")))
    assert set(report["replayed"]) == {"tau 1.15, 5 steps, warm h", "tau 1.15, 5 steps, cold h"}
    dreams = report["dreams"]["tau 1.15, 5 steps"]
    assert dreams["controller"]["n"] == dreams["zeros"]["n"] == 2
    # every candidate of the controller stage's CMA-ES (2 generations x 4), ranked in the dream
    assert report["dreams"]["ranked_candidates"] == 8 and -1 <= dreams["rank_correlation_with_real"] <= 1


def test_finalists_replays_the_controller_run_and_scores_each_choice_rule(repo, tmp_path):
    from tools.finalists import RULES

    out = tmp_path / "finalists.json"
    run(repo, "python", "-m", "tools.finalists", "--select", "3", "--validate", "2", "--out", str(out))
    report = json.loads(out.read_text())
    # the smoke profile: CMA-ES's mean and 1 finalist, each on 2 select tracks + 1 more and 2 validate
    assert len(report["finalists"]) == 2 and len(report["select_seeds"]) == 3
    assert all(len(f["select"]) == 3 and len(f["validate"]) == 2 for f in report["finalists"])
    assert set(report["rules"]) == {f"{rule}@{n}" for rule in RULES for n in (2, 3)}
    assert report["rules"]["mean@2"]["validate"] == report["validate"][report["stage_pick"]]
    # the replay must end at the saved controller: a fitness.tsv of another run does not
    fitness = repo / "metrics/controller/fitness.tsv"
    saved = fitness.read_text()
    rows = [line.split("\t") for line in saved.splitlines()]
    try:  # generation 0 ranked the other way round
        other = [rows[0]] + [[g, c, repr(-float(f)) if g == "0" else f] for g, c, f in rows[1:]]
        fitness.write_text("\n".join("\t".join(row) for row in other) + "\n")
        result = run(repo, "python", "-m", "tools.finalists", "--select", "3", check=False)
        assert "fitness.tsv: its replay does not end at models/controller.pt" in error_of(result)
        fitness.write_text(saved + "1\t4\n")  # a row cut short
        result = run(repo, "python", "-m", "tools.finalists", "--select", "3", check=False)
        assert "fitness.tsv: not a table of generation, candidate, fitness" in error_of(result)
    finally:
        fitness.write_text(saved)


def test_horizon_drives_cma_es_mean_after_fewer_generations_of_the_same_run(repo, tmp_path):
    out, returns = tmp_path / "horizon.json", tmp_path / "returns.json"
    command = ["python", "-m", "tools.horizon", "--at", "1", "--validate", "2"]
    run(repo, *command, "--average", "2", "--out", str(out))
    points = json.loads(out.read_text())["points"]
    # --at, then the run's end (smoke: 2), then each averaged over its last 2 generations
    assert [(p["generations"], p["averaged"]) for p in points] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert points[0]["vs_first"] == {"mean": 0.0, "se": 0.0}
    assert points[0]["returns"] != points[1]["returns"]  # another controller
    assert points[2]["returns"] == points[0]["returns"]  # generation 1 has no generation before it
    assert points[3]["returns"] not in (points[0]["returns"], points[1]["returns"])  # the two means' average
    assert "vs_unaveraged" in points[3] and "vs_unaveraged" not in points[1]
    # the run's end is CMA-ES's mean: saved as the stage's controller, it drives the same returns
    saved = (repo / "models/controller.pt").read_bytes()
    as_mean = (
        "from tools.horizon import means_at; from tools.levers import read_fitness; "
        "from wm.config import load_params; from wm.controller import load_controller, save_controller; "
        "p = load_params(); c = load_controller('models/controller.pt', p.vae.z_dim, (p.mdnrnn.hidden,)); "
        "f = read_fitness('metrics/controller/fitness.tsv'); "
        "c.params = means_at(f, [len(f)], c.size, p.controller, p.seed)[0]; "
        "save_controller('models/controller.pt', c)"
    )
    try:
        run(repo, "python", "-c", as_mean)
        run(repo, "python", "-m", "tools.quick_eval", "2", "--backend", "gymnasium", "--out", str(returns))
    finally:
        (repo / "models/controller.pt").write_bytes(saved)
    expected = [round(r, 2) for r in json.loads(returns.read_text())["returns"]]
    assert points[1]["returns"] == expected
    assert "--at 3: the run has generations 1 to 2" in error_of(
        run(repo, "python", "-m", "tools.horizon", "--at", "3", check=False)
    )
    result = run(repo, *command, "--average", "0", check=False)
    assert "--average 0: at least 1 generation" in error_of(result)


def test_steer_check_holds_each_action_in_the_real_env_and_in_the_dream(repo, tmp_path):
    import cv2

    out, picture = tmp_path / "steer.json", tmp_path / "steer.png"
    command = ["python", "-m", "tools.steer_check", "--tracks", "1", "--start", "52", "--steps", "10"]
    run(repo, *command, "--dreams", "2", "--out", str(out), "--picture", str(picture))
    report = json.loads(out.read_text())
    assert (report["tracks"], report["dreams"]) == (1, 2)
    for side in ("real", "vae", "teacher", "dream"):
        shares = report[side]["road_under_car"]
        assert set(shares) == {"left", "straight", "right"}
        assert all(0 <= v <= 1 for branch in shares.values() for v in branch.values())
        assert set(shares["left"]) == {"1", "5", "10"}
    assert report["real"]["road_under_car"]["straight"]["1"] > 0.5  # the run-up keeps the car on the road
    # the picture: each branch's real row above its dream, at branch steps 1 and 10
    assert cv2.imread(str(picture)).shape == (3 * 2 * 64, 2 * 64, 3)
    assert "--tracks, --start, --steps and --dreams must be positive" in error_of(
        run(repo, *command[:-1], "0", check=False)
    )
