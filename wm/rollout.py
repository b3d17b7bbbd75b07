"""The one rollout loop (used by collect, controller, evaluate, dream and the viewer) and the
worker pool that runs many rollouts in parallel processes.
"""
import multiprocessing
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from wm.env import make_env, prepare_frame


@dataclass
class Rollout:
    seed: int
    total_reward: float = 0.0
    steps: int = 0
    terminated: bool = False
    truncated: bool = False
    frames: list = field(default_factory=list)  # (64, 64, 3) uint8 model frames, if recorded
    renders: list = field(default_factory=list)  # env.render() frames, if recorded
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)


def run_episode(env, policy, seed, record=False, render=False, stop=None):
    """Drive one episode on track `seed`; with `record`, keep frames, actions and rewards;
    with `render`, also keep env.render() frames (the env must have render_mode='rgb_array');
    `stop()`, if given, is asked after every step and ends the episode early when True."""
    obs, _ = env.reset(seed=seed)
    policy.reset(seed)
    rollout = Rollout(seed=seed)
    if record:
        rollout.frames.append(prepare_frame(obs))
    if render:
        rollout.renders.append(env.render())
    while True:
        action = policy.act(obs)
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


def build_policy(spec):
    """A policy from a picklable spec, so worker processes can build their own copy.

    spec: {"kind": "random"} | {"kind": "ppo", "path", "action_noise"} |
          {"kind": "mix", "path", "action_noise", "ppo_fraction"} |
          {"kind": "world_model", "vae", "mdnrnn", "controller" (flat params or None)}
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
    if kind == "world_model":
        from wm.io import load_model
        from wm.mdnrnn import MDNRNN
        from wm.vae import ConvVAE

        vae = load_model(spec["vae"], ConvVAE)
        mdnrnn = load_model(spec["mdnrnn"], MDNRNN, z_dim=vae.z_dim)
        return agents.WorldModelAgent(vae, mdnrnn, spec.get("controller"))
    raise ValueError(f"unknown policy kind {kind!r}")


_worker = {}  # per-process env and policy, built once by _init_worker


def _init_worker(spec, max_steps):
    torch.set_num_threads(1)  # one core per worker process; the pool provides the parallelism
    _worker["env"] = make_env(max_steps)
    _worker["policy"] = build_policy(spec)


def _episode_task(task):
    """task: (index, seed, controller params or None, record) -> (index, Rollout)."""
    index, seed, params, record = task
    policy = _worker["policy"]
    if params is not None:
        policy.set_controller(params)
    return index, run_episode(_worker["env"], policy, seed, record=record)


class EpisodePool:
    """Worker processes, each with its own env and policy (built once from `spec`), that run
    one episode per task. With workers <= 1 everything runs in this process.

    Use as a context manager; `run` can be called many times (e.g. once per CMA-ES generation)
    without paying the start-up of the workers again.
    """

    def __init__(self, spec, max_steps, workers):
        self.spec, self.max_steps, self.workers = spec, max_steps, workers
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(self.workers, initializer=_init_worker,
                                     initargs=(self.spec, self.max_steps))
        else:
            _init_worker(self.spec, self.max_steps)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def run(self, seeds, params=None, record=False, desc=None, on_result=None):
        """One episode per seed; `params`, if given, holds one controller vector per seed.

        Returns the Rollouts in seed order. `on_result(index, rollout)` is called as each
        finishes, after which its recorded frames are dropped, so a caller can write episodes
        out as they come instead of holding them all in memory.
        """
        tasks = [(i, seed, None if params is None else params[i], record)
                 for i, seed in enumerate(seeds)]
        if self.pool is None:
            finished = map(_episode_task, tasks)
        else:
            finished = self.pool.imap_unordered(_episode_task, tasks)
        results = [None] * len(tasks)
        with tqdm(total=len(tasks), desc=desc, unit="ep", disable=desc is None) as bar:
            for index, rollout in finished:
                if on_result is not None:
                    on_result(index, rollout)
                    rollout.frames, rollout.actions, rollout.rewards = [], [], []
                results[index] = rollout
                bar.update(1)
                bar.set_postfix(ret=f"{rollout.total_reward:.0f}")
        return results


def run_episodes(spec, seeds, max_steps, workers, **kwargs):
    """One-shot `EpisodePool(spec, max_steps, workers).run(seeds, **kwargs)`."""
    with EpisodePool(spec, max_steps, min(workers, len(seeds))) as pool:
        return pool.run(seeds, **kwargs)


def to_episode(rollout):
    """A recorded Rollout -> an Episode for the on-disk contract."""
    from wm.episodes import Episode

    return Episode(obs=np.stack(rollout.frames),
                   action=np.asarray(rollout.actions, dtype=np.float32).reshape(-1, 3),
                   reward=np.asarray(rollout.rewards, dtype=np.float32),
                   terminated=rollout.terminated, truncated=rollout.truncated, seed=rollout.seed)
