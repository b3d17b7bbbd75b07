"""Batched driving on the real CarRacing-v3, both backends: tracks follow their seeds, a batch
gives what the same episodes give one at a time, and the batched world-model agent acts as N
separate agents would."""

import numpy as np
import pytest
import torch

from wm.agents import (
    BAR_WIDTH,
    GRASS_COLOUR,
    HUD_ROWS,
    ROAD_COLOUR,
    MixPolicy,
    Noisy,
    Perturbed,
    PPOPolicy,
    RandomPolicy,
    ReplayPolicy,
    noise_std,
)
from wm.controller import Controller
from wm.env import BACKENDS, make_env, prepare_frame
from wm.errors import UserError
from wm.executor import Job, LocalExecutor, Population, ProcessExecutor, batches, make_executor
from wm.mdnrnn import MDNRNN
from wm.rollout import drive
from wm.vae import ConvVAE
from wm.vector_env import make_vector_env
from wm.world_model import WorldModelAgent


@pytest.mark.parametrize("seed", [3, 7])
def test_fast_drawing_makes_gymnasiums_frames_byte_for_byte(seed):
    """wm.env.FastRoad and FastRender against gymnasium's own drawing: the zoom-in, steering both
    ways at random, the grass and the edge of the playfield, every frame, video frame and reward the
    same."""
    rng = np.random.default_rng(seed)
    actions = np.stack([rng.uniform(-1, 1, 400), rng.uniform(0, 1, 400), rng.uniform(0, 0.2, 400)], axis=1)
    runs = []
    for fast in (False, True):
        env = make_env(1000, render_mode="rgb_array", fast_road=fast, fast_text=fast)
        frames, videos, rewards = [env.reset(seed=seed)[0]], [], []
        for t, action in enumerate(actions):
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(obs)
            rewards.append(reward)
            if t % 50 == 0:  # a video frame (600x400, the car's particles drawn) now and then
                videos.append(env.render())
            if terminated or truncated:
                break
        runs.append((np.array(frames), np.array(videos), rewards))
    (stock, stock_videos, stock_rewards), (fast, fast_videos, fast_rewards) = runs
    assert stock.shape == fast.shape and stock.shape[0] > 300
    assert (stock == fast).all() and stock_rewards == fast_rewards
    assert (stock_videos == fast_videos).all()
    assert len({f"{r:04.0f}" for r in np.cumsum(stock_rewards)}) > 10  # the score's text changed


@pytest.mark.parametrize("backend", BACKENDS)
def test_tracks_follow_their_seeds(backend):
    with make_vector_env(backend, max_steps=20, threads=2) as venv:
        first = venv.reset([11, 12, 11])
        assert first.shape == (3, 96, 96, 3) and first.dtype == np.uint8
        again = venv.reset([12, 11])
    # the zoom-in starts on the track's first tile, so different tracks differ from frame 0
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(again[0], first[1])
    assert np.abs(first[0].astype(int) - first[1]).max() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_drives_like_episodes_one_at_a_time(backend):
    seeds = [21, 22, 23]
    with make_vector_env(backend, max_steps=40, threads=2) as venv:
        together = drive(venv, RandomPolicy(), seeds, batch_size=3, record=True)
        alone = drive(venv, RandomPolicy(), seeds, batch_size=1, record=True)
    for a, b in zip(together, alone):
        assert a.seed == b.seed and a.steps == b.steps == 40 and a.truncated
        assert a.total_reward == pytest.approx(b.total_reward, abs=1e-4)
        np.testing.assert_array_equal(np.stack(a.frames), np.stack(b.frames))


class StraightOrCircle:
    """Full throttle: straight ahead on odd seeds, in a circle on even seeds. Straight ahead, the
    car leaves the playfield (which terminates the episode) after 187 steps on gymnasium's track
    11 and 171 on envpool's track 15; circling, it never ends early."""

    def reset(self, seeds):
        self.steer = np.float32([0.0 if seed % 2 else 1.0 for seed in seeds])

    def act(self, obs):
        return np.stack([self.steer, np.ones_like(self.steer), np.zeros_like(self.steer)], axis=1)


@pytest.mark.parametrize("backend, leaving", [("gymnasium", 11), ("envpool", 15)])
def test_an_episode_that_ends_early_stops_counting_while_the_batch_drives_on(backend, leaving):
    # after its end, envpool resets an env and drives a new episode, gymnasium returns zeros:
    # neither may reach the ended episode's return, steps or frames
    with make_vector_env(backend, max_steps=220, threads=2) as venv:
        together = drive(venv, StraightOrCircle(), [leaving, 6], batch_size=2, record=True)
        alone = drive(venv, StraightOrCircle(), [leaving, 6], batch_size=1, record=True)
    assert together[0].terminated and together[0].steps < 220  # ended while track 6 drove on
    assert together[1].truncated and together[1].steps == 220
    for a, b in zip(together, alone):
        assert (a.steps, a.terminated, a.truncated) == (b.steps, b.terminated, b.truncated)
        assert a.total_reward == pytest.approx(b.total_reward, abs=1e-4)
        assert len(a.frames) == a.steps + 1 and len(a.rewards) == a.steps
        np.testing.assert_array_equal(np.stack(a.frames), np.stack(b.frames))


def test_population_gives_each_episode_its_own_controller():
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(8).eval(), MDNRNN(8, hidden=16, mixtures=2).eval()
    controller = Controller(8, 16)
    params = np.random.default_rng(0).standard_normal((5, controller.size)).astype(np.float32)
    agent = WorldModelAgent(vae, mdnrnn, controller)
    seeds = [31, 32, 33, 34, 35]
    with make_vector_env("envpool", max_steps=30, threads=2) as venv:
        batched = drive(venv, Population(agent, params), seeds, batch_size=2)  # batches of 2, 2, 1
        for i, seed in enumerate(seeds):
            agent.set_controllers(params[i])
            (alone,) = drive(venv, agent, [seed], batch_size=1)
            assert batched[i].total_reward == pytest.approx(alone.total_reward, abs=1e-3), i
        with pytest.raises(ValueError, match="5 controllers"):
            drive(venv, Population(agent, params), seeds + [36], batch_size=2)
    assert len({round(r.total_reward, 3) for r in batched}) > 1


def test_executor_batches_are_the_batches_drive_forms():
    params = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    cut = batches([31, 32, 33, 34, 35], 2, params)
    assert [(b.start, b.seeds) for b in cut] == [(0, [31, 32]), (2, [33, 34]), (4, [35])]
    np.testing.assert_array_equal(np.concatenate([b.controllers for b in cut]), params)
    assert all(b.controllers is None for b in batches([1, 2, 3], 2))


def test_local_executor_drives_a_population_as_drive_does():
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(8).eval(), MDNRNN(8, hidden=16, mixtures=2).eval()
    controller = Controller(8, 16)
    params = np.random.default_rng(1).standard_normal((3, controller.size)).astype(np.float32)
    agent, seeds = WorldModelAgent(vae, mdnrnn, controller), [41, 42, 43]
    with LocalExecutor("envpool", 30, 2) as executor:
        returns = [r.total_reward for r in executor.drive(agent, seeds, 2, controllers=params)]
        expected = [r.total_reward for r in drive(executor.venv, Population(agent, params), seeds, 2)]
    assert returns == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_processes_drive_and_collect_as_this_process_does(backend, tmp_path):
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(8).eval(), MDNRNN(8, hidden=16, mixtures=2).eval()
    controller = Controller(8, 16)
    params = np.random.default_rng(1).standard_normal((5, controller.size)).astype(np.float32)
    agent, seeds = WorldModelAgent(vae, mdnrnn, controller), [41, 42, 43, 44, 45]
    runs = {}
    for name, executor in (
        ("local", LocalExecutor(backend, 30, 2)),
        ("processes", ProcessExecutor(backend, 30, processes=2, threads=2)),
    ):
        with executor:
            driven = executor.drive(agent, seeds, 2, controllers=params)
            executor.collect(RandomPolicy(), seeds[:3], 2, out_dir=tmp_path / name)
        files = {f.name: f.read_bytes() for f in sorted((tmp_path / name).iterdir())}
        runs[name] = ([(r.seed, r.total_reward, r.steps) for r in driven], files)
    assert runs["processes"] == runs["local"]  # the same batches, in the same order: the same bytes
    assert len(runs["local"][1]) == 3


@pytest.mark.parametrize("kind", ["local", "processes"])
def test_jobs_driven_together_give_what_each_gives_alone_and_hand_batches_over_in_order(kind):
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(8).eval(), MDNRNN(8, hidden=16, mixtures=2).eval()
    controller = Controller(8, 16)
    params = np.random.default_rng(1).standard_normal((5, controller.size)).astype(np.float32)
    agent = WorldModelAgent(vae, mdnrnn, controller)
    jobs = [
        Job(agent, [41, 42, 43], params[:3]),
        Job(RandomPolicy(), [44, 45, 46]),
        Job(agent, [47, 48], params[3:]),
    ]
    executor = (
        LocalExecutor("envpool", 30, 2)
        if kind == "local"
        else ProcessExecutor("envpool", 30, processes=2, threads=2)
    )
    handed = []
    with executor:
        together = executor.drive_jobs(
            jobs,
            2,
            on_batch=lambda job, start, rollouts: handed.append((job, start, [r.seed for r in rollouts])),
        )
        alone = [executor.drive(job.policy, job.seeds, 2, controllers=job.controllers) for job in jobs]
    outcome = lambda runs: [[(r.seed, r.total_reward, r.steps) for r in rollouts] for rollouts in runs]  # noqa: E731
    assert outcome(together) == outcome(alone)
    assert handed == [(0, 0, [41, 42]), (0, 2, [43]), (1, 0, [44, 45]), (1, 2, [46]), (2, 0, [47, 48])]


@pytest.mark.parametrize(
    "device, workers, batches, kind",
    [
        ("cpu", 2, 2, ProcessExecutor),
        ("cpu", 2, 5, ProcessExecutor),
        ("cpu", 2, 1, LocalExecutor),
        ("cpu", 1, 4, LocalExecutor),
        ("cuda", 2, 4, LocalExecutor),
        ("cuda:1", 4, 8, LocalExecutor),
    ],
)
def test_without_wm_executor_the_cpu_drives_through_worker_processes(
    monkeypatch, device, workers, batches, kind
):
    """Where each worker gets a batch. A GPU's policy stays in this process (the workers would get
    CPU copies), and so does a drive of one batch (one worker's one CPU, against all of them)."""
    monkeypatch.delenv("WM_EXECUTOR", raising=False)
    with make_executor("envpool", 30, workers, 2, device=torch.device(device), batches=batches) as executor:
        assert type(executor) is kind


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"WM_EXECUTOR": "spark"}, "WM_EXECUTOR=spark: unknown executor (known: local, processes, ray)"),
        ({"WM_EXECUTOR": "ray", "WM_RAY_ACTORS": "0"}, "WM_RAY_ACTORS=0: expected a whole number >= 1"),
        ({"WM_EXECUTOR": "ray", "WM_RAY_ACTOR_CPUS": "two"}, "WM_RAY_ACTOR_CPUS=two: expected"),
    ],
)
def test_bad_executor_settings_are_named(monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_executor("envpool", 30, 2, 2, device="cpu", batches=2)


@pytest.mark.parametrize("z", ["mean", "sample"])
def test_batched_world_model_agent_acts_like_separate_agents(z):
    """Each track acts as if driven alone; with z sampled, its noise is its track seed's."""
    torch.manual_seed(0)
    vae, mdnrnn = ConvVAE(8).eval(), MDNRNN(8, hidden=16, mixtures=2).eval()
    rng = np.random.default_rng(0)
    controller = Controller(8, 16, hidden=5, z=z)
    params = rng.standard_normal((3, controller.size)).astype(np.float32)
    frames = rng.integers(0, 256, (4, 3, 96, 96, 3), dtype=np.uint8)  # 4 steps of 3 tracks
    batched = WorldModelAgent(vae, mdnrnn, controller)
    batched.set_controllers(params)
    batched.reset([0, 1, 2])
    together = np.stack([batched.act(step) for step in frames])  # (4, 3, 3)
    for i in range(3):
        single = WorldModelAgent(vae, mdnrnn, Controller(8, 16, 5, params[i], z))
        single.reset([i])
        alone = np.stack([single.act(step[i : i + 1])[0] for step in frames])
        np.testing.assert_allclose(together[:, i], alone, atol=1e-5)
    assert together[:, :, 0].min() >= -1 and together[:, :, 1:].min() >= 0 and together.max() <= 1
    mean = WorldModelAgent(vae, mdnrnn, Controller(8, 16, 5, params[0]))
    mean.reset([0])
    by_mean = np.stack([mean.act(step[:1])[0] for step in frames])
    assert np.allclose(by_mean, together[:, 0], atol=1e-5) == (z == "mean")  # the noise reaches the actions


def test_random_policy_depends_only_on_the_seed():
    a, b = RandomPolicy(), RandomPolicy()
    a.reset([1, 2])
    b.reset([2])
    obs = np.zeros((2, 96, 96, 3), np.uint8)
    for _ in range(10):
        np.testing.assert_array_equal(a.act(obs)[1], b.act(obs[:1])[0])


class FixedPPO(PPOPolicy):
    def __init__(self):
        self.action_noise = 0.0

    def act(self, obs, rows=None):
        return np.tile(np.float32([0.0, 1.0, 0.0]), (len(obs) if rows is None else len(rows), 1))


def test_mix_policy_splits_tracks_by_seed():
    mix = MixPolicy(FixedPPO(), RandomPolicy(), ppo_fraction=0.5)
    seeds = list(range(200))
    mix.reset(seeds)
    actions = mix.act(np.zeros((200, 96, 96, 3), np.uint8))
    from_ppo = (actions == [0.0, 1.0, 0.0]).all(1)
    assert 0.35 < from_ppo.mean() < 0.65
    np.testing.assert_array_equal(from_ppo, mix.use_ppo)


def test_random_takeover_drives_its_share_of_ppo_steps_in_spells():
    obs = np.zeros((100, 96, 96, 3), np.uint8)
    mix, alone = MixPolicy(FixedPPO(), RandomPolicy(), 1.0, takeover=0.3), RandomPolicy()
    mix.reset(list(range(100)))
    alone.reset(list(range(100)))
    taken = []  # (steps, tracks): the random policy's action, not PPO's
    for _ in range(400):
        actions, random = mix.act(obs), alone.act(obs)
        from_ppo = (actions == [0.0, 1.0, 0.0]).all(1)
        np.testing.assert_array_equal(actions[~from_ppo], random[~from_ppo])  # the track's own random actions
        taken.append(~from_ppo)
    taken = np.array(taken)
    assert 0.25 < taken.mean() < 0.35
    starts = (taken[1:] & ~taken[:-1]).sum()
    assert 15 < taken[1:].sum() / starts < 25  # spells of TAKEOVER_STEPS (20) on average
    # no takeover: every step PPO's, as before the param
    mix = MixPolicy(FixedPPO(), RandomPolicy(), 1.0)
    mix.reset(list(range(100)))
    assert all((mix.act(obs) == [0.0, 1.0, 0.0]).all() for _ in range(50))


def test_perturbed_policy_sees_recoloured_or_barred_frames_of_the_same_track():
    class Seen:
        def reset(self, seeds):
            self.frames = []

        def act(self, obs):
            self.frames.append(obs)
            return np.zeros((len(obs), 3), np.float32)

    with make_vector_env("gymnasium", max_steps=60, threads=1) as venv:
        frames = venv.reset([7])
        for _ in range(50):  # past the zoom-in: grass, road, kerbs and the car in view
            frames, *_ = venv.step(np.zeros((1, 3), np.float32))
    field = frames[0, :-HUD_ROWS].astype(int)
    grass = (field[..., 1] >= field[..., 0] + 60) & (field[..., 1] >= field[..., 2] + 60)
    road = (np.ptp(field, -1) <= 2) & (field[..., 0] >= 90) & (field[..., 0] <= 120)
    assert grass.sum() > 1000 and road.sum() > 300  # both in view, so the test can fail

    seen = Seen()
    colour = Perturbed(seen, "colour")
    colour.reset([7, 8])
    colour.act(np.concatenate([frames, frames]))
    shifted = seen.frames[0].astype(int)
    for row, (grass_colour, road_colour) in enumerate(colour.colours):
        moved = shifted[row, :-HUD_ROWS] - field
        np.testing.assert_array_equal(moved[grass][0], grass_colour - GRASS_COLOUR)
        np.testing.assert_array_equal(moved[road][0], road_colour - ROAD_COLOUR)
        assert not moved[~(grass | road)].any()  # the car, kerbs and edges keep their colours
        np.testing.assert_array_equal(shifted[row, -HUD_ROWS:], frames[0, -HUD_ROWS:])
    assert not np.array_equal(colour.colours[0], colour.colours[1])  # each track its own colours
    again = Perturbed(Seen(), "colour")
    again.reset([8])
    np.testing.assert_array_equal(again.colours[0], colour.colours[1])  # drawn from the seed alone

    bars = Perturbed(seen, "bars")
    bars.reset([7])
    bars.act(frames)
    barred = seen.frames[0]
    assert not barred[:, :, :BAR_WIDTH].any() and not barred[:, :, -BAR_WIDTH:].any()
    np.testing.assert_array_equal(barred[:, :, BAR_WIDTH:-BAR_WIDTH], frames[:, :, BAR_WIDTH:-BAR_WIDTH])
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        Perturbed(seen, "fog")


def test_dashboard_bars_read_the_steering_the_spin_and_the_speed_the_car_was_given():
    from tools.dashboard_read import bars as weighed  # the contrast-weighted reading
    from tools.steer_check import dashboard_bars

    bars = {}
    for steer in (-1.0, 0.0, 1.0):
        with make_vector_env("gymnasium", max_steps=80, threads=1) as venv:
            frames = [venv.reset([7])]
            for t in range(70):  # the zoom-in at gas 0.3, then 20 steps of the steering held
                action = np.float32([[steer if t >= 50 else 0.0, 0.3, 0.0]])
                frames.append(venv.step(action)[0])
        frames = np.stack([prepare_frame(f[0]) for f in frames])
        bars[steer] = dashboard_bars(frames)
        # weighed (speed, spin, steer): each bar moves with its count (partial edge rows weigh less)
        for read, counted in zip(weighed(frames)[:, ::-1].T, bars[steer]):
            assert counted.std() == 0 or np.corrcoef(read, counted)[0, 1] > 0.9  # the count is coarse
            assert (np.sign(read[np.abs(counted) >= 4]) == np.sign(counted[np.abs(counted) >= 4])).all()
    (steer_left, gyro_left, speed), (steer_ahead, gyro_ahead, _), (steer_right, gyro_right, _) = bars.values()
    assert speed[0] == 0 and speed[-1] > 0  # the car stands at the reset and drives at the end
    assert (steer_ahead == 0).all() and (gyro_ahead == 0).all()
    assert steer_left[-1] < 0 < steer_right[-1] and gyro_left[-1] < 0 < gyro_right[-1]
    np.testing.assert_array_equal(steer_left[:50], steer_ahead[:50])  # the same frames before the turn


def test_steer_check_gaps_measure_a_dream_against_the_real_env():
    import argparse

    from tools.steer_check import BRANCHES, SIDES, report

    steps = 10
    steer = {"left": -20, "straight": 0, "right": 20}

    def branch(name, side):  # one track's measures: a dream that never steers and keeps the road
        dream = side == "dream"
        return {
            "road_under_car": np.full(steps, 0.9 if dream or name == "left" else 0.2),
            "road_centre": np.full(steps, 30.0),
            "steer_bar": np.full(steps, 0 if dream else steer[name]),
            "gyro_bar": np.zeros(steps),
            "speed_bar": np.ones(steps),
        }

    measures = {side: {name: [branch(name, side)] for name in BRANCHES} for side in SIDES}
    args = argparse.Namespace(tracks=1, start=52, steps=steps, dreams=1, round=0)
    gaps = report(measures, args)["gap_to_real"]
    assert gaps["vae"] == {"road_under_car_straight": 0.0, "steer_bar": 0.0}
    assert gaps["dream"]["road_under_car_straight"] == 0.7  # 0.9 kept where the real car had 0.2
    assert gaps["dream"]["steer_bar"] == round(40 / 3, 2)  # 20 pixels off in two branches of three


def test_action_noise_moves_only_the_components_it_is_on_and_clipped_brake_noise_brakes():
    steps, tracks = 2000, 2
    held = np.tile(np.array([0.0, 0.5, 0.0], np.float32), (steps, tracks, 1))  # straight on, half gas
    steer_only = Noisy(ReplayPolicy(held), noise_std(0.1, ["steer"]))  # quick_eval --noise-on steer
    steer_only.reset([7, 8])
    actions = np.stack([steer_only.act(None) for _ in range(steps)])  # (T, N, 3)
    assert actions[..., 1:].tolist() == held[..., 1:].tolist()
    assert 0.09 < actions[..., 0].std() < 0.11 and abs(actions[..., 0].mean()) < 0.01
    everywhere = Noisy(ReplayPolicy(held), noise_std(0.1))  # the default on: all three components
    everywhere.reset([7, 8])
    brake = np.stack([everywhere.act(None) for _ in range(steps)])[..., 2]
    # the brake cannot go below 0, so the noise is a brake of 0.1 / sqrt(2 pi) on average, half the time on
    assert abs(brake.mean() - 0.1 / np.sqrt(2 * np.pi)) < 0.005 and 0.45 < (brake > 0).mean() < 0.55


def test_gas_scale_multiplies_only_the_gas_and_keeps_it_in_its_range():
    """tools.quick_eval --gas-scale: the agent's gas times K, clipped to [0, 1]; steer and brake kept."""
    from tools.quick_eval import GasScaled

    held = np.array([[[-0.5, 0.3, 0.2], [0.5, 0.7, 0.0]]], np.float32)  # 1 step, 2 tracks
    faster = GasScaled(ReplayPolicy(held), 2.0)
    faster.reset([1, 2])
    actions = faster.act(None)
    np.testing.assert_allclose(actions[:, 1], [0.6, 1.0])  # 0.7 x 2 clipped to the gas's top
    np.testing.assert_array_equal(actions[:, [0, 2]], held[0][:, [0, 2]])
    assert held[0, 0, 1] == np.float32(0.3)  # the wrapped policy's own actions are not changed
