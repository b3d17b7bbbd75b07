"""Driving episodes: the batched loop that collect, controller and evaluate use (many tracks
stepped together, one policy call per step for all of them), and the single-episode loop
for drives that are rendered (videos, the viewer, the dream's real side).
"""
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from wm.env import prepare_frame


@dataclass
class Rollout:
    seed: int
    total_reward: float = 0.0
    steps: int = 0
    terminated: bool = False
    truncated: bool = False
    frames: list = field(default_factory=list)  # (64, 64, 3) uint8 model frames, if recorded
    renders: list = field(default_factory=list)  # env.render() frames, if rendered
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)


def drive(venv, policy, seeds, batch_size, params=None, record=False, desc=None, on_result=None):
    """One episode per seed, `batch_size` tracks at a time through the vector env `venv`.

    `params`, if given, holds one controller vector per seed (a WorldModelAgent policy).
    With `record`, each Rollout keeps its 64x64 frames, actions and rewards. `on_result(index,
    rollout)` is called as each batch finishes, after which recorded data is dropped, so a
    caller can write episodes out instead of holding them all. Returns Rollouts in seed order.
    """
    results = []
    with tqdm(total=len(seeds), desc=desc, unit="ep", disable=desc is None) as bar:
        for start in range(0, len(seeds), batch_size):
            batch = list(seeds[start:start + batch_size])
            if params is not None:
                policy.set_controllers(params[start:start + batch_size])
            rollouts = _drive_batch(venv, policy, batch, record)
            for i, rollout in enumerate(rollouts):
                if on_result is not None:
                    on_result(start + i, rollout)
                    rollout.frames, rollout.actions, rollout.rewards = [], [], []
            results += rollouts
            bar.update(len(batch))
            bar.set_postfix(mean_return=f"{np.mean([r.total_reward for r in results]):.0f}")
    return results


def _drive_batch(venv, policy, seeds, record):
    """Drive every track of `seeds` to the end of its episode, all in lockstep."""
    obs = venv.reset(seeds)  # (N, 96, 96, 3)
    policy.reset(seeds)
    rollouts = [Rollout(seed=seed) for seed in seeds]
    running = np.ones(len(seeds), dtype=bool)
    if record:
        for rollout, frame in zip(rollouts, obs):
            rollout.frames.append(prepare_frame(frame))
    while running.any():
        actions = policy.act(obs)  # (N, 3)
        obs, reward, terminated, truncated = venv.step(actions)
        for i in np.flatnonzero(running):
            rollout = rollouts[i]
            rollout.total_reward += float(reward[i])
            rollout.steps += 1
            if record:
                rollout.frames.append(prepare_frame(obs[i]))
                rollout.actions.append(actions[i])
                rollout.rewards.append(reward[i])
            if terminated[i] or truncated[i]:
                rollout.terminated, rollout.truncated = bool(terminated[i]), bool(truncated[i])
                running[i] = False
    return rollouts


def run_episode(env, policy, seed, record=False, render=False, stop=None):
    """Drive one episode on track `seed` in a single gymnasium env; with `record`, keep frames,
    actions and rewards; with `render`, keep env.render() frames (render_mode='rgb_array');
    `stop()`, if given, is asked after every step and ends the episode early when True."""
    obs, _ = env.reset(seed=seed)
    policy.reset([seed])
    rollout = Rollout(seed=seed)
    if record:
        rollout.frames.append(prepare_frame(obs))
    if render:
        rollout.renders.append(env.render())
    while True:
        action = policy.act(obs[None])[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        rollout.total_reward += float(reward)
        rollout.steps += 1
        if record:
            rollout.frames.append(prepare_frame(obs))
            rollout.actions.append(action)
            rollout.rewards.append(reward)
        if render:
            rollout.renders.append(env.render())
        if terminated or truncated or (stop is not None and stop()):
            rollout.terminated, rollout.truncated = bool(terminated), bool(truncated)
            return rollout


def collect(venv, policy, seeds, batch_size, out_dir, desc=None):
    """Drive one recorded episode per seed and write each to out_dir/episode_XXXXX.npz (XXXXX its
    index in `seeds`); files are compressed and written in a background thread while the next
    batch drives. Returns the Rollouts (without their frames)."""
    from concurrent.futures import ThreadPoolExecutor

    from wm.episodes import episode_name, save_episode

    writes = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        rollouts = drive(venv, policy, seeds, batch_size, record=True, desc=desc,
                         on_result=lambda i, rollout: writes.append(writer.submit(
                             save_episode, out_dir / episode_name(i), to_episode(rollout))))
        for write in writes:
            write.result()
    return rollouts


def build_policy(spec):
    """A policy from a plain spec:
    {"kind": "random"} | {"kind": "ppo", "path", "action_noise"} |
    {"kind": "mix", "path", "action_noise", "ppo_fraction"}
    (world-model agents: wm.agents.load_world_model)
    """
    from wm import agents

    kind = spec["kind"]
    if kind == "random":
        return agents.RandomPolicy()
    if kind == "ppo":
        return agents.PPOPolicy(spec["path"], spec.get("action_noise", 0.0))
    if kind == "mix":
        return agents.MixPolicy(agents.PPOPolicy(spec["path"], spec["action_noise"]),
                                agents.RandomPolicy(), spec["ppo_fraction"])
    raise ValueError(f"unknown policy kind {kind!r}")


def to_episode(rollout):
    """A recorded Rollout -> an Episode for the on-disk contract."""
    from wm.episodes import Episode

    return Episode(obs=np.stack(rollout.frames),
                   action=np.asarray(rollout.actions, dtype=np.float32).reshape(-1, 3),
                   reward=np.asarray(rollout.rewards, dtype=np.float32),
                   terminated=rollout.terminated, truncated=rollout.truncated, seed=rollout.seed)
