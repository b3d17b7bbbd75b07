"""The on-disk contracts and params validation: round trips, and one-line errors naming the culprit."""

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wm.config import load_params, parse_params
from wm.controller import Controller, load_controller, n_params, save_controller
from wm.data import make_sequences, split_files
from wm.episodes import Episode, Latents, list_files, load_episode, load_latents, save_episode, save_latents
from wm.errors import UserError
from wm.io import atomic_path, load_model, resolve_device, save_checkpoint
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE

ROOT = Path(__file__).resolve().parents[1]


def make_episode(steps=5, seed=7, terminated=True):
    rng = np.random.default_rng(seed)
    return Episode(
        obs=rng.integers(0, 256, (steps + 1, 64, 64, 3), dtype=np.uint8),
        action=rng.standard_normal((steps, 3)).astype(np.float32),
        reward=rng.standard_normal(steps).astype(np.float32),
        terminated=terminated,
        truncated=not terminated,
        seed=seed,
    )


def make_latents(steps=5, z_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    done = np.zeros(steps, bool)
    done[-1] = True
    return Latents(
        mu=rng.standard_normal((steps + 1, z_dim)).astype(np.float32),
        logvar=rng.standard_normal((steps + 1, z_dim)).astype(np.float32),
        action=rng.standard_normal((steps, 3)).astype(np.float32),
        reward=rng.standard_normal(steps).astype(np.float32),
        done=done,
    )


def test_episode_round_trip(tmp_path):
    episode = make_episode()
    save_episode(tmp_path / "episode_00000.npz", episode)
    loaded = load_episode(tmp_path / "episode_00000.npz")
    for key in ("obs", "action", "reward"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(episode, key))
    assert (loaded.terminated, loaded.truncated, loaded.seed) == (True, False, 7)
    assert loaded.done.tolist() == [False] * 4 + [True]
    assert not make_episode(terminated=False).done.any()
    assert [p.name for p in tmp_path.iterdir()] == ["episode_00000.npz"]  # no temporary left


def test_latents_round_trip_and_width_check(tmp_path):
    latents = make_latents()
    save_latents(tmp_path / "episode_00000.npz", latents)
    loaded = load_latents(tmp_path / "episode_00000.npz", z_dim=4)
    for key in ("mu", "logvar", "action", "reward", "done"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(latents, key))
    with pytest.raises(UserError, match="episode_00000.npz.*mu has shape"):
        load_latents(tmp_path / "episode_00000.npz", z_dim=8)


def test_truncated_episode_file_names_the_file(tmp_path):
    path = tmp_path / "episode_00003.npz"
    save_episode(path, make_episode())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=r"episode_00003\.npz: corrupt or truncated"):
        load_episode(path)


def test_episode_with_inconsistent_lengths_is_corrupt(tmp_path):
    episode = make_episode()
    episode.reward = episode.reward[:-1]
    save_episode(tmp_path / "episode_00001.npz", episode)
    with pytest.raises(UserError, match=r"episode_00001\.npz: corrupt file, 6 frames for 5 actions"):
        load_episode(tmp_path / "episode_00001.npz")


def test_missing_or_empty_inputs(tmp_path):
    with pytest.raises(UserError, match="episode_00009.npz: file not found"):
        load_episode(tmp_path / "episode_00009.npz")
    with pytest.raises(UserError, match="no episode files"):
        list_files(tmp_path, "episode")


def test_atomic_path_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_the_directory_only_when_complete(tmp_path):
    from wm.io import atomic_dir

    target = tmp_path / "latents"
    target.mkdir()
    (target / "old.npz").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "new.npz").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents"]  # no temporary left
    assert [p.name for p in target.iterdir()] == ["old.npz"]  # the old output untouched
    with atomic_dir(target) as tmp:
        (tmp / "new.npz").write_bytes(b"new")
        assert not (target / "new.npz").exists()  # nothing shows before the block ends
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents"]
    assert [p.name for p in target.iterdir()] == ["new.npz"]


def test_temporaries_of_killed_runs_are_cleared_and_running_ones_kept(tmp_path):
    import subprocess

    from wm.io import atomic_dir

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs: a stage killed mid-write
    (tmp_path / f".latents.tmp{gone.pid}").mkdir()
    (tmp_path / f".x.npz.tmp{gone.pid}").write_bytes(b"half")
    (tmp_path / ".latents.tmp1").mkdir()  # process 1 runs: another writer's, kept
    with atomic_dir(tmp_path / "latents") as tmp:
        (tmp / "episode_00000.npz").write_bytes(b"new")
    with atomic_path(tmp_path / "x.npz") as tmp:
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".latents.tmp1", "latents", "x.npz"]


def test_seed_blocks_stay_apart_at_every_count_the_params_allow():
    from wm.config import CollectConfig, EvaluateConfig
    from wm.env import SEED_BLOCK_SIZE, SEED_BLOCKS, track_seeds

    most = {
        "collect": CollectConfig.__dataclass_fields__["episodes"].metadata["hi"],
        "test": EvaluateConfig.__dataclass_fields__["episodes"].metadata["hi"],
        "controller": SEED_BLOCK_SIZE,
        "ppo": 1,
        "dream": 1,
        "validate": SEED_BLOCK_SIZE,
    }  # controller: _cross_check's bound
    used = {use: set(track_seeds(use, count)) for use, count in most.items()}
    assert set(used) == set(SEED_BLOCKS)
    for a in used:
        for b in used:
            assert a == b or not used[a] & used[b], (a, b)
    with pytest.raises(ValueError, match="leave the block"):
        track_seeds("collect", 10, start=SEED_BLOCK_SIZE - 9)


def test_split_files_holds_out_whole_episodes():
    files = [f"e{i}" for i in range(10)]
    assert split_files(files, 0.2) == (files[:8], files[8:])
    assert split_files(files[:1], 0.5) == (files[:1], [])
    assert split_files(files, 0.0) == (files, [])


def windows(batches, episodes, seq_len, sampled=False):
    """{episode index: sorted [(start, length), ...]} of the training windows in `batches`, each
    found by its first action (actions are unique per step), after checking that every window
    holds its episode's steps start..start+length, padded with zeros and masked after them."""
    found = {}
    for batch in batches:
        for i, mask in enumerate(batch["mask"]):
            length = int(mask.sum())
            assert mask[:length].all() and 0 < length <= seq_len
            ((e, start),) = [
                (e, int(s))
                for e, ep in enumerate(episodes)
                for s in np.flatnonzero((ep.action == batch["action"][i, 0]).all(1))
            ]
            ep = episodes[e]
            np.testing.assert_array_equal(batch["action"][i, :length], ep.action[start : start + length])
            np.testing.assert_array_equal(batch["reward"][i, :length], ep.reward[start : start + length])
            np.testing.assert_array_equal(batch["done"][i, :length], ep.done[start : start + length])
            if not sampled:  # z targets line up with mu, one step ahead of the actions
                np.testing.assert_array_equal(batch["z"][i, : length + 1], ep.mu[start : start + length + 1])
            assert not batch["action"][i, length:].any() and not batch["z"][i, length + 1 :].any()
            found.setdefault(e, []).append((start, length))
    return {e: sorted(w) for e, w in found.items()}


def assert_windows_tile_from_an_offset(found, episodes, seq_len):
    """Each episode's windows tile its steps from one offset (< seq_len) to its end, in full
    windows but the last; returns the offsets."""
    offsets = []
    for e, ep in enumerate(episodes):
        starts = [start for start, _ in found[e]]
        ends = [start + length for start, length in found[e]]
        assert starts[1:] == ends[:-1] and ends[-1] == len(ep.action), (e, found[e])
        assert all(length == seq_len for _, length in found[e][:-1]) and starts[0] < seq_len
        offsets.append(starts[0])
    return offsets


def test_make_sequences_cut_every_step_into_masked_windows():
    episodes = [make_latents(steps=10, seed=1), make_latents(steps=3, seed=2), make_latents(steps=8, seed=3)]
    covered = [set() for _ in episodes]
    offsets = set()
    for call in range(30):
        batch = make_sequences(episodes, seq_len=4, rng=np.random.default_rng(call), sample=False)
        assert batch["z"].shape[1:] == (5, 4) and batch["action"].shape[1:] == (4, 3)
        found = windows([batch], episodes, seq_len=4)
        offsets.update(assert_windows_tile_from_an_offset(found, episodes, seq_len=4))
        for e, w in found.items():
            covered[e].update(s for start, length in w for s in range(start, start + length))
    assert found[1] == [(0, 3)]  # shorter than a window: one padded window, from its start
    assert offsets == {0, 1, 2, 3}  # the offset moves, so every step is seen at every position
    assert all(c == set(range(len(ep.action))) for c, ep in zip(covered, episodes))


def test_checkpoint_round_trip_and_z_dim_mismatch(tmp_path):
    vae = ConvVAE(8)
    save_checkpoint(tmp_path / "vae.pt", vae.config, vae.state_dict())
    loaded = load_model(tmp_path / "vae.pt", ConvVAE, z_dim=8)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(loaded.encode(x)[0], vae.eval().encode(x)[0])
    with pytest.raises(UserError, match=r"vae\.pt: checkpoint has z_dim=8, expected z_dim=32"):
        load_model(tmp_path / "vae.pt", ConvVAE, z_dim=32)
    with pytest.raises(UserError, match=r"vae\.pt: does not hold a MDNRNN"):
        load_model(tmp_path / "vae.pt", MDNRNN)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"bad\.pt: not a checkpoint"):
        load_model(tmp_path / "bad.pt", ConvVAE)
    whole = (tmp_path / "vae.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=r"cut\.pt: truncated or damaged checkpoint"):
        load_model(tmp_path / "cut.pt", ConvVAE)


def test_controller_checkpoint_round_trip(tmp_path):
    controller = Controller(4, 6, 5, np.arange(n_params(4, 6, 5), dtype=np.float32), z="sample")
    save_controller(tmp_path / "controller.pt", controller)
    loaded = load_controller(tmp_path / "controller.pt", 4, (0, 6))
    np.testing.assert_array_equal(loaded.params, controller.params)
    assert loaded.config == {"z_dim": 4, "h_dim": 6, "hidden": 5, "z": "sample"}
    checkpoint = torch.load(tmp_path / "controller.pt", weights_only=True)
    checkpoint["config"]["z"] = "median"
    torch.save(checkpoint, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other\.pt: z must be one of \('mean', 'sample'\), got 'median'"):
        load_controller(tmp_path / "other.pt", 4, (0, 6))
    with pytest.raises(UserError, match=r"controller\.pt: controller is for"):
        load_controller(tmp_path / "controller.pt", 8, (0, 6))
    with pytest.raises(UserError, match=r"rerun the controller stage"):
        load_controller(tmp_path / "controller.pt", 4, (0, 16))


ROUND_1 = {"models": "models", "data": "data/latents"}  # round 1 of iterate.rounds, as written


@pytest.fixture
def raw_params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(
    "profile", sorted((ROOT / "profiles").glob("*.yaml")) + [ROOT / "params.yaml"], ids=lambda p: p.name
)
def test_every_shipped_profile_is_valid(profile):
    load_params(profile)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["vae"].update(z_dim=-3), r"vae\.z_dim must be in \[1, 4096\], got -3"),
        (lambda p: p["vae"].update(z_dimm=3), r"unknown key vae\.z_dimm"),
        (lambda p: p["mdnrnn"].update(hidden="big"), r"mdnrnn\.hidden must be int, got 'big'"),
        (lambda p: p["collect"].update(policy="expert"), r"collect\.policy must be one of ppo, random, mix"),
        (lambda p: p["ppo"].update(n_envs=True), r"ppo\.n_envs must be int, got True"),
        (lambda p: p["controller"].pop("population"), r"missing key controller\.population"),
        (lambda p: p.update(typo=1), r"unknown key typo"),
        (lambda p: p["dream"].update(temperature=float("nan")), r"dream\.temperature must be finite"),
        (lambda p: p["env"].update(backend="mujoco"), r"env\.backend must be one of gymnasium, envpool"),
        # the rules that span keys (_cross_check), each just past its bound
        (
            lambda p: p["ppo"].update(batch_size=p["ppo"]["n_steps"] * p["ppo"]["n_envs"] + 1),
            r"ppo\.batch_size .* must be <= ppo\.n_steps \* ppo\.n_envs",
        ),
        (
            lambda p: p["controller"].update(generations=250_000, rollouts=4, select_tracks=1),
            r"controller\.generations \* controller\.rollouts \+ controller\.select_tracks "
            r"must be <= 1000000",
        ),
        (
            lambda p: p["controller"].update(rollouts=4, race=4),
            r"controller\.race \(4\) must be 0 or, in mode real, less than controller\.rollouts \(4\)",
        ),
        (lambda p: p["controller"].update(mode="dream", race=1), r"controller\.race \(1\) must be 0 or"),
        (
            lambda p: p["collect"].update(policy="ppo", random_takeover=0.2),
            r"collect\.random_takeover \(0\.2\) needs collect\.policy: mix .*, not ppo",
        ),
        (
            lambda p: p["mdnrnn"].update(seq_len=p["env"]["max_steps"] + 1),
            r"mdnrnn\.seq_len \(1001\) must be <= env\.max_steps",
        ),
        (lambda p: p["evaluate"].update(policies=[]), r"evaluate\.policies must be a non-empty list"),
        (
            lambda p: p["evaluate"].update(policies=["ppo", "expert"]),
            r"evaluate\.policies must be one of .*'expert'",
        ),
        (lambda p: p["evaluate"].update(policies=["ppo", "ppo"]), r"evaluate\.policies lists an item twice"),
        (
            lambda p: p["iterate"].update(noise_on=["steer", "clutch"]),
            r"iterate\.noise_on must be one of steer, gas, brake, got 'clutch'",
        ),
        (lambda p: p["collect"].update(noise_on=[]), r"collect\.noise_on must be a non-empty list"),
        # the rounds of the iterative procedure: named "1", "2"... (quoted), each from the last's
        (lambda p: p["iterate"].update(rounds=[ROUND_1]), r"iterate\.rounds must be a mapping"),
        (
            lambda p: p["iterate"].update(rounds={1: ROUND_1}),
            r'iterate\.rounds: key 1 must be quoted \("1"\)',
        ),
        (lambda p: p["iterate"].update(rounds={"2": ROUND_1}), r'round 1 must be named "1", got \'2\''),
        (
            lambda p: p["iterate"].update(rounds={"1": {**ROUND_1, "models": "models/rounds/0"}}),
            r"iterate\.rounds\.1\.models must be models \(round 0's",
        ),
        (
            lambda p: p["iterate"].update(rounds={"1": ROUND_1, "2": ROUND_1}, agent="models/rounds/2"),
            r"iterate\.rounds\.2\.models must be models/rounds/1 \(round 1's",
        ),
        (
            lambda p: p["iterate"].update(rounds={"1": {"models": "models"}}),
            r"missing key iterate\.rounds\.1\.data",
        ),
        (
            lambda p: p["iterate"].update(rounds={"1": ROUND_1}, agent="models"),
            r"iterate\.agent must be models/rounds/1 ",
        ),
        (
            lambda p: p["iterate"].update(rounds={"1": ROUND_1}, agent="models/rounds/1", episodes=999_999),
            r"collect\.episodes \+ iterate\.episodes per round must be <= 1000000",
        ),
    ],
)
def test_bad_params_name_the_key(raw_params, edit, message):
    raw = copy.deepcopy(raw_params)
    edit(raw)
    with pytest.raises(UserError, match=message):
        parse_params(raw)


def test_cross_checks_accept_their_bounds(raw_params):
    raw = copy.deepcopy(raw_params)
    raw["ppo"]["batch_size"] = raw["ppo"]["n_steps"] * raw["ppo"]["n_envs"]
    raw["iterate"].update(rounds={}, agent="models")  # the controller stage's seeds alone
    raw["controller"].update(generations=249_999, rollouts=4, select_tracks=4)  # 1,000,000 seeds
    raw["mdnrnn"]["seq_len"] = raw["env"]["max_steps"]
    parse_params(raw)


def test_rounds_of_the_iterative_procedure_parse(raw_params):
    raw = copy.deepcopy(raw_params)
    rounds = {"1": ROUND_1, "2": {"models": "models/rounds/1", "data": "data/rounds/1"}}
    raw["iterate"].update(rounds=rounds, agent="models/rounds/2")
    params = parse_params(raw)
    assert list(params.iterate.rounds) == ["1", "2"]
    assert params.iterate.rounds["2"].data == "data/rounds/1"


def test_params_file_errors(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("vae: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_frame_stream_yields_every_frame_once_in_shuffled_order(tmp_path):
    from wm.data import frame_batches

    files = []
    for i in range(5):
        episode = make_episode(steps=6, seed=i)
        episode.obs[:] = np.arange(7, dtype=np.uint8)[:, None, None, None] + 10 * i  # frame ids
        files.append(tmp_path / f"episode_{i:05d}.npz")
        save_episode(files[-1], episode)
    batches = list(frame_batches(files, batch_size=4, buffer_episodes=2, rng=np.random.default_rng(0)))
    ids = np.concatenate([b[:, 0, 0, 0] for b in batches])
    assert sorted(ids.tolist()) == sorted(j + 10 * i for i in range(5) for j in range(7))
    assert ids.tolist() != sorted(ids.tolist())
    assert max(len(b) for b in batches) == 4
    ordered = np.concatenate([b[:, 0, 0, 0] for b in frame_batches(files, 4, 2)])
    assert ordered.tolist() == [j + 10 * i for i in range(5) for j in range(7)]


def test_sequence_stream_covers_every_step(tmp_path):
    from wm.data import sequence_batches

    files = []
    for i, steps in enumerate([9, 4, 12]):
        files.append(tmp_path / f"episode_{i:05d}.npz")
        save_latents(files[-1], make_latents(steps=steps, seed=i))
    episodes = [load_latents(path) for path in files]
    batches = list(
        sequence_batches(
            files, 4, seq_len=5, batch_size=2, buffer_episodes=2, rng=np.random.default_rng(0), shuffle=False
        )
    )
    assert all(b["z"].shape[1:] == (6, 4) for b in batches) and max(len(b["z"]) for b in batches) == 2
    found = windows(batches, episodes, seq_len=5, sampled=True)
    assert sorted(found) == [0, 1, 2]  # every episode, each tiled from its offset to its end
    assert_windows_tile_from_an_offset(found, episodes, seq_len=5)
    # z is drawn from (mu, logvar), not mu itself
    start = found[0][0][0]
    z = next(
        b["z"][i]
        for b in batches
        for i in range(len(b["z"]))
        if np.array_equal(b["action"][i, 0], episodes[0].action[start])
    )
    assert not np.isclose(z[:2], episodes[0].mu[start : start + 2]).any()


def test_episode_chunks_carry_whole_episodes_in_order(tmp_path):
    from wm.data import episode_chunks

    files, lengths = [], [9, 4, 12]
    for i, steps in enumerate(lengths):
        files.append(tmp_path / f"episode_{i:05d}.npz")
        save_latents(files[-1], make_latents(steps=steps, seed=i))
    episodes = [load_latents(path) for path in files]
    heads = set()
    for seed in range(8):
        pairs = list(episode_chunks(files, 4, 5, 2, 3, np.random.default_rng(seed)))
        runs = []  # the chunks of one batch of episodes, from a first one to the next
        for chunk, first in pairs:
            assert chunk["action"].shape[1] <= 5 and chunk["z"].shape[1] == chunk["action"].shape[1] + 1
            if first:
                runs.append([])
            else:  # each chunk continues the last: its first z is the last one's last
                np.testing.assert_array_equal(chunk["z"][:, 0], runs[-1][-1]["z"][:, -1])
            runs[-1].append(chunk)
        heads.update(run[0]["action"].shape[1] for run in runs if len(run) > 1)
        found = []
        for run in runs:
            mask = np.concatenate([c["mask"] for c in run], 1)
            action = np.concatenate([c["action"] for c in run], 1)
            for row in range(len(mask)):  # each row: one whole episode, in order, then padding
                steps = int(mask[row].sum())
                assert mask[row, :steps].all() and not action[row, steps:].any()
                (e,) = [e for e, ep in enumerate(episodes) if np.array_equal(ep.action, action[row, :steps])]
                found.append(e)
        assert sorted(found) == [0, 1, 2]
    assert len(heads) > 2  # the first chunk's length moves between epochs


def test_carried_chunks_score_like_one_pass_over_whole_episodes(tmp_path):
    from wm.mdnrnn import MDNRNN
    from wm.train_mdnrnn import batches, evaluate_mdnrnn

    files = []
    for i, steps in enumerate([9, 4, 12]):
        files.append(tmp_path / f"episode_{i:05d}.npz")
        save_latents(files[-1], make_latents(steps=steps, seed=i))
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim=4, hidden=8, mixtures=2)

    def losses(seq_len, carry_state):
        pairs = batches(
            files, 4, seq_len=seq_len, batch_size=2, buffer_episodes=3, carry_state=carry_state,
            rng=np.random.default_rng(0), shuffle=False,
        )  # fmt: skip
        return evaluate_mdnrnn(mdnrnn, pairs, "cpu")

    whole = losses(12, carry_state=True)  # every episode in one chunk
    chunked = losses(5, carry_state=True)
    assert chunked.keys() == whole.keys()
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=1e-5), key
    windows = losses(5, carry_state=False)  # a zero state every 5 steps: another loss
    assert windows["val/nll"] != pytest.approx(whole["val/nll"], rel=1e-3)


class RunsCode:
    """Unpickled, this touches `marker`: what a tampered checkpoint from a remote would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("loader", ["vae", "mdnrnn", "controller", "ppo"])
def test_a_checkpoint_that_would_run_code_is_refused_by_every_loader(tmp_path, loader):
    from wm.ppo import load_ppo

    marker = tmp_path / "ran"
    path = tmp_path / f"{loader}.pt"
    # a well-formed checkpoint but for one value: a pickled call
    torch.save(
        {
            "config": {"z_dim": 4, "h_dim": 0, "hidden": 0},
            "state_dict": {"weight": torch.zeros(2), "payload": RunsCode(marker)},
        },
        path,
    )
    load = {
        "vae": lambda: load_model(path, ConvVAE),
        "mdnrnn": lambda: load_model(path, MDNRNN),
        "controller": lambda: load_controller(path, 4, (0,)),
        "ppo": lambda: load_ppo(path),
    }[loader]
    with pytest.raises(UserError, match=rf"{loader}\.pt: refused checkpoint \(it holds objects other than"):
        load()
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the same file loaded as pickles are: it does run code
    assert marker.exists()


def test_ppo_checkpoint_round_trip_acts_like_the_trained_policy(tmp_path):
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticCnnPolicy

    from wm.io import save_checkpoint
    from wm.ppo import load_ppo, policy_config

    torch.manual_seed(0)
    policy = ActorCriticCnnPolicy(
        spaces.Box(0, 255, (3, 96, 96), np.uint8),
        spaces.Box(np.float32([-1, 0, 0]), np.float32([1, 1, 1])),
        lambda _: 0.0,
    )
    save_checkpoint(tmp_path / "ppo.pt", policy_config(policy), policy.state_dict())
    loaded = load_ppo(tmp_path / "ppo.pt")
    obs = np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)  # env frames, HWC
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], policy.eval().predict(obs, deterministic=True)[0]
    )
    # same weights, same bytes (torch names the archive's records after the file: same name)
    save_checkpoint(tmp_path / "again" / "ppo.pt", policy_config(policy), policy.state_dict())
    assert (tmp_path / "again" / "ppo.pt").read_bytes() == (tmp_path / "ppo.pt").read_bytes()


def test_devices_resolve_or_are_named():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    for name, available in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available())):
        if available:
            assert resolve_device(name).type == name
        else:
            with pytest.raises(UserError, match=f"device is {name} but this machine has no {name.upper()}"):
                resolve_device(name)


def test_a_retrain_lever_links_what_it_does_not_make_and_never_writes_through(tmp_path, monkeypatch):
    from tools.levers import prepared

    monkeypatch.chdir(tmp_path)
    for name in ("models/ppo.pt", "models/vae.pt", "models/mdnrnn.pt"):
        Path(name).parent.mkdir(exist_ok=True)
        Path(name).write_bytes(b"this workspace's")
    for name in ("data/rollouts", "data/latents"):
        Path(name).mkdir(parents=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = prepared(Path("work"), raw, 3)  # a controller lever: every input linked
    assert all((work / name).is_symlink() for name in ("models/vae.pt", "models/mdnrnn.pt", "data/latents"))
    work = prepared(Path("work"), raw, 3, ["collect", "encode", "mdnrnn"])  # the same workspace, retraining
    assert (work / "models/ppo.pt").is_symlink() and (work / "models/vae.pt").is_symlink()
    for made in ("data/rollouts", "data/latents", "models/mdnrnn.pt"):
        assert not (work / made).exists()  # the lever's stages make them there
    assert Path("models/mdnrnn.pt").read_bytes() == b"this workspace's"
    assert yaml.safe_load((work / "params.yaml").read_text())["seed"] == 3
    work = prepared(Path("work"), raw, 3, ["ppo", "collect"])  # the data's driver too
    assert not (work / "models/ppo.pt").exists() and (work / "models/vae.pt").is_symlink()
    assert Path("models/ppo.pt").read_bytes() == b"this workspace's"


def test_a_cut_retrain_lever_goes_on_where_it_stopped(tmp_path, monkeypatch):
    import tools.levers as levers

    ran = []

    def fake_timed(work, command):  # a stage that makes its output
        stage = command[0].removeprefix("stages.")
        output = work / levers.RETRAIN[stage]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"made")
        ran.append(stage)
        return 1.0

    monkeypatch.setattr(levers, "timed", fake_timed)
    work, retrain = tmp_path / "work", ["collect", "encode", "mdnrnn"]
    assert levers.retrain_stages(work, retrain) == {"collect": 1.0, "encode": 1.0, "mdnrnn": 1.0}
    assert ran == retrain
    ran.clear()
    (work / levers.RETRAIN["mdnrnn"]).unlink()  # cut before M was saved
    levers.retrain_stages(work, retrain)
    assert ran == ["mdnrnn"]
    ran.clear()
    (work / levers.RETRAIN["collect"]).unlink()  # new episodes: everything after them runs again
    levers.retrain_stages(work, retrain)
    assert ran == retrain


def test_a_lever_report_keeps_the_watched_real_returns_beside_the_fitness(tmp_path, monkeypatch):
    import tools.levers as levers
    from wm.io import open_live, write_tsv

    fitness = [[10.0, 30.0], [20.0, 50.0], [40.0, 5.0]]  # (generations, population)
    watched = [100.0, 300.0, 200.0]  # each generation's best on the watched real tracks
    metrics = tmp_path / "metrics" / "controller"
    with open_live(metrics) as live:  # as the stage logs them (wm.evolve)
        for generation, real in enumerate(watched):
            live.log_metric("watch/fitness", max(fitness[generation]))
            live.log_metric("watch/real", real)
            live.next_step()
    write_tsv(
        metrics / "fitness.tsv",
        ["generation", "candidate", "fitness"],
        [(g, c, repr(f)) for g, row in enumerate(fitness) for c, f in enumerate(row)],
    )
    monkeypatch.setattr(levers, "validate_returns", lambda work, tracks: np.array([650.0, 900.0]))
    report = levers.figures(tmp_path, Path("metrics/controller"), 2)
    assert report["generation_best"] == [30.0, 50.0, 40.0]
    assert report["generation_watched"] == watched
    assert report["watched_fitness_correlation"] == round(float(np.corrcoef(watched, [30, 50, 40])[0, 1]), 2)
    assert report["below_700"] == 1


def test_a_lever_pairs_its_returns_with_another_levers_same_seed(tmp_path, monkeypatch):
    import json

    import tools.levers as levers

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports/levers").mkdir(parents=True)
    base = {"set": [], "tracks": 4, "runs": {"0": {"returns": [900.0, 800.0, 850.0, 870.0]}}}
    (tmp_path / "reports/levers/base.json").write_text(json.dumps(base))
    assert levers.against(None, 4) == {}
    returns = levers.against("base", 4)
    assert list(returns) == ["0"]
    # a lever 10 better on every track but one, which it fails
    assert levers.paired([910.0, 810.0, 860.0, 500.0], returns["0"]) == {"mean": -85.0, "se": 95.0}
    with pytest.raises(UserError, match=r"--against base: it drove 4 validate tracks, this lever 100"):
        levers.against("base", 100)
    with pytest.raises(
        UserError, match=r"--against other: reports/levers/other\.json is not a lever's report"
    ):
        levers.against("other", 4)
    (tmp_path / "reports/levers/cut.json").write_text(json.dumps({"tracks": 4, "runs": {"0": {}}}))
    with pytest.raises(UserError, match=r"--against cut: .*cut\.json is not a lever's report \(KeyError"):
        levers.against("cut", 4)


def test_stages_run_the_numpy_loops_an_avx2_cpu_runs():
    """numpy dispatches float64 exp, log and power to AVX-512 loops on a CPU that has them, and they
    round differently (pycma's updates use them: CMA-ES went another way); a stage's process runs
    the loops a CPU without AVX-512 runs (wm.compute.KERNEL_PINS)."""
    import json
    import os
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the pins are x86-64's")
    code = (
        "import json, stages; from numpy.lib.introspect import opt_func_info; "
        "print(json.dumps(opt_func_info(func_name='^(exp|log|power)$', signature='float64')))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "WM_KERNELS")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loops = {kind["current"] for ufunc in json.loads(result.stdout).values() for kind in ufunc.values()}
    assert len(loops) > 0 and not loops & {"X86_V4", "AVX512_ICL", "AVX512_SPR"}, loops


def test_pair_returns_pairs_runs_on_the_same_tracks_and_names_one_that_is_not(tmp_path, monkeypatch, capsys):
    import json

    import tools.pair_returns as pair_returns

    seeds = [5_000_000, 5_000_001, 5_000_002, 5_000_003]
    (tmp_path / "base.json").write_text(json.dumps({"seeds": seeds, "returns": [900, 800, 600, 910]}))
    (tmp_path / "other.json").write_text(json.dumps({"seeds": seeds, "returns": [910, 790, 700, 930]}))
    levers = {"runs": {"0": {"returns": [905, 800, 610, 900]}, "1": {"returns": [0, 0, 0, 0]}}}
    (tmp_path / "levers.json").write_text(json.dumps(levers))
    (tmp_path / "shifted.json").write_text(json.dumps({"seeds": seeds[1:] + [9], "returns": [1, 2, 3, 4]}))
    points = [{"generations": 30, "averaged": 1, "returns": [890, 800, 600, 910]}]
    points.append({"generations": 30, "averaged": 3, "returns": [0, 0, 0, 0]})  # not a mean of one run
    (tmp_path / "horizon.json").write_text(json.dumps({"validate_seeds": seeds, "points": points}))
    argv = ["pair_returns", "base.json", "other.json", "levers.json:0", "horizon.json", "--out", "t.json"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(tmp_path)
    pair_returns.run()
    runs = json.loads((tmp_path / "t.json").read_text())["runs"]
    assert runs["base.json"]["below_700"] == 1 and "paired_mean" not in runs["base.json"]
    other = runs["other.json"]
    assert other["paired_mean"] == 30.0 and other["tracks_better"] == 3
    assert other["median_abs_difference"] == 15.0
    assert other["tracks_worse"] == 1 and other["median_difference"] == 15.0
    assert other["recovered"] == 1 and other["new_below_700"] == 0  # 600 -> 700
    assert runs["levers.json:0"]["tracks_better"] == 2 and runs["levers.json:0"]["tracks_worse"] == 1  # a tie
    assert runs["levers.json:0"]["paired_mean"] == 1.2 and runs["levers.json:0"]["mean"] == 803.8
    assert runs["horizon.json"]["paired_mean"] == -2.5
    for argv, culprit in (
        (["base.json", "shifted.json"], "shifted.json: not the tracks of base.json"),
        (["base.json", "levers.json"], "levers.json: holds the runs of seeds 0, 1; name one"),
        (["base.json", "levers.json:2"], "levers.json: no returns for seed 2"),
        (["base.json", "horizon.json:40"], "horizon.json: no mean after 40 generations"),
        (["base.json", "missing.json"], "missing.json: not a readable JSON report"),
    ):
        monkeypatch.setattr(sys, "argv", ["pair_returns", *argv])
        with pytest.raises(SystemExit) as stop:
            pair_returns.run()
        assert stop.value.code != 0 and culprit in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal")
def test_a_stopped_lever_stops_the_stage_it_runs():
    import signal
    import subprocess
    import time

    stage = (
        "from pathlib import Path; from tools.levers import step; "
        "step(Path('.'), 'timeit', '-n', '1', '-r', '1', '-s', 'import time', 'time.sleep(300)')"
    )
    lever = subprocess.Popen([sys.executable, "-c", stage], cwd=ROOT)
    children = Path(f"/proc/{lever.pid}/task/{lever.pid}/children")
    for _ in range(300):  # the lever starts its stage
        pids = children.read_text().split() if children.exists() else []
        if pids:
            break
        time.sleep(0.1)
    assert pids, "the lever started no stage"
    lever.send_signal(signal.SIGTERM)
    lever.wait(timeout=30)

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = alive(pids[0])
    if survived:  # leave no sleeper behind a failed test
        subprocess.run(["kill", "-9", pids[0]], check=False)
    assert not survived, "the stage drove on after its lever stopped"
