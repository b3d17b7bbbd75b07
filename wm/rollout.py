"""Driving episodes: the one loop that steps tracks and policies, for everything that drives
(collect, CMA-ES, evaluation, videos, the viewer, the benchmark and the fidelity check).

    rollouts = drive(venv, policy, seeds, batch_size)

`venv` is a vector env (wm.vector_env), `policy` anything with `reset(seeds)` and `act(obs)`
(wm.agents). Tracks are driven `batch_size` at a time, the policy acting on the whole batch
in one call per step.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from wm.env import ACTION_DIM, prepare_frame
from wm.episodes import Episode, episode_name, save_episode


@dataclass
class Rollout:
    seed: int
    total_reward: float = 0.0
    steps: int = 0
    terminated: bool = False
    truncated: bool = False
    frames: list = field(default_factory=list)  # (64, 64, 3) uint8 model frames, if recorded
    renders: list = field(default_factory=list)  # venv.render() frames, if rendered
    actions: list = field(default_factory=list)  # (3,) float32 each, if recorded
    rewards: list = field(default_factory=list)  # if recorded


def drive(
    venv,
    policy,
    seeds,
    batch_size,
    *,
    record=False,
    render=False,
    stop=None,
    on_step=None,
    on_result=None,
    desc=None,
):
    """One episode per seed, `batch_size` tracks at a time through the vector env `venv`.

    The batches are driven in seed order, each after one `policy.reset(batch_seeds)`. With
    `record`, each Rollout keeps its 64x64 frames, actions and rewards; with `render`, the
    frames of `venv.render()` (a wm.vector_env.SingleEnv). `on_step(obs)`, if given, sees the
    batch's (N, 96, 96, 3) observations after the reset and after every step (and can read the
    env's state then); `stop()`, if given, is asked after every step and ends the batch's
    episodes early when True. `on_result(index, rollout)` is
    called as each batch finishes, after which recorded data is dropped, so a caller can write
    episodes out instead of holding them all. A progress bar shows when `desc` is given.
    Returns the Rollouts in seed order.
    """
    results = []
    with tqdm(total=len(seeds), desc=desc, unit="ep", disable=desc is None) as bar:
        for start in range(0, len(seeds), batch_size):
            rollouts = _drive_batch(
                venv, policy, list(seeds[start : start + batch_size]), record, render, stop, on_step
            )
            for i, rollout in enumerate(rollouts):
                if on_result is not None:
                    on_result(start + i, rollout)
                    rollout.frames, rollout.actions, rollout.rewards = [], [], []
            results += rollouts
            bar.update(len(rollouts))
            bar.set_postfix(mean_return=f"{np.mean([r.total_reward for r in results]):.0f}")
    return results


def _drive_batch(venv, policy, seeds, record, render, stop, on_step):
    """Drive every track of `seeds` to the end of its episode, all in lockstep; an env's results
    after its episode ended are ignored (see wm.vector_env)."""
    obs = venv.reset(seeds)  # (N, 96, 96, 3) uint8
    policy.reset(seeds)
    if on_step is not None:
        on_step(obs)
    rollouts = [Rollout(seed=seed) for seed in seeds]
    running = np.ones(len(seeds), dtype=bool)
    if record:
        for rollout, frame in zip(rollouts, obs):
            rollout.frames.append(prepare_frame(frame))
    if render:
        for rollout, frame in zip(rollouts, venv.render()):
            rollout.renders.append(frame)
    while running.any():
        actions = policy.act(obs)  # (N, 3)
        obs, reward, terminated, truncated = venv.step(actions)
        if on_step is not None:
            on_step(obs)
        renders = venv.render() if render else None
        for i in np.flatnonzero(running):
            rollout = rollouts[i]
            rollout.total_reward += float(reward[i])
            rollout.steps += 1
            if record:
                rollout.frames.append(prepare_frame(obs[i]))
                rollout.actions.append(actions[i])
                rollout.rewards.append(reward[i])
            if render:
                rollout.renders.append(renders[i])
            if terminated[i] or truncated[i]:
                rollout.terminated, rollout.truncated = bool(terminated[i]), bool(truncated[i])
                running[i] = False
        if stop is not None and stop():
            break
    return rollouts


def collect(venv, policy, seeds, *, batch_size, out_dir, desc=None):
    """Drive one recorded episode per seed and write each to out_dir/episode_XXXXX.npz (XXXXX its
    index in `seeds`); files are compressed and written in a background thread while the next
    batch drives. Returns the Rollouts (without their frames)."""
    writes = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        rollouts = drive(
            venv,
            policy,
            seeds,
            batch_size,
            record=True,
            desc=desc,
            on_result=lambda i, rollout: writes.append(
                writer.submit(save_episode, out_dir / episode_name(i), to_episode(rollout))
            ),
        )
        for write in writes:
            write.result()
    return rollouts


def to_episode(rollout):
    """A recorded Rollout -> an Episode for the on-disk contract."""
    return Episode(
        obs=np.stack(rollout.frames),
        action=np.asarray(rollout.actions, dtype=np.float32).reshape(-1, ACTION_DIM),
        reward=np.asarray(rollout.rewards, dtype=np.float32),
        terminated=rollout.terminated,
        truncated=rollout.truncated,
        seed=rollout.seed,
    )
