"""Stable-Baselines3 PPO (CnnPolicy) on CarRacing-v3: the data-collection policy and the
model-free baseline. DVCLive has no SB3 integration, so a small callback logs to `Live`.

The trained policy is saved as a plain checkpoint, `{"config", "state_dict"}` of SB3's
ActorCriticCnnPolicy, not as SB3's zip (whose `PPO.load` unpickles, so a tampered zip from a
remote would run code, and whose bytes change with the save time): `load_ppo` rebuilds the
policy from the config and loads the weights with `weights_only=True`.

A run resumes exactly (`SavedRun`): at the start of every rollout it saves what the rest of the
run depends on, and a rerun after a kill rebuilds that state and ends with the bytes of an
uninterrupted run. Weights, optimizer and random generators are saved as they are; an env's
state (a Box2D world) cannot be, so each env records how its episode began (the reset's seed, or
its generator's state before the reset) and the actions since, and the rerun plays them again.
"""

import random
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecTransposeImage
from tqdm import tqdm

from wm.env import ACTION_HIGH, ACTION_LOW, ENV_FRAME_SHAPE, ENV_ID, make_env, track_seeds
from wm.errors import UserError
from wm.io import atomic_path, load_checkpoint, save_checkpoint


class Replayable(gym.Wrapper):
    """An env that can make its current state again: it records how its episode began (the
    reset's seed, or its random generator's state before an unseeded reset) and every action
    since; `restore` resets it the same way and steps the same actions. Reading the generator's
    state draws nothing, so a recorded run is the run it would have been."""

    def __init__(self, env):
        super().__init__(env)
        self.began, self.actions = None, []

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.began = {"seed": seed}
        else:  # the generator a seeded reset made, as far as the episodes since have drawn from it
            self.began = {"rng": self.unwrapped.np_random.bit_generator.state}
        self.actions = []
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(np.array(action, np.float32))
        return super().step(action)

    def replay_state(self):
        """How the current episode began and its actions: plain data (None before any reset)."""
        if self.began is None:
            return None
        return {"began": self.began, "actions": torch.from_numpy(np.array(self.actions, np.float32))}

    def restore(self, state):
        """Make the state `replay_state` described again; returns the current observation."""
        if "seed" in state["began"]:
            observation, _ = self.reset(seed=state["began"]["seed"])
        else:
            self.unwrapped.np_random.bit_generator.state = state["began"]["rng"]
            observation, _ = self.reset()
        for action in state["actions"].numpy():
            observation, *_ = self.step(action)
        return observation


class EnvpoolVecEnv(VecEnv):
    """envpool's C++ port of CarRacing-v3 as a Stable-Baselines3 VecEnv, with SB3's semantics:
    an ended episode's env is reset within the same step (envpool would do it at the next one),
    its last frame in `info["terminal_observation"]` and its return and length in
    `info["episode"]`, as SB3's Monitor gives them. Env i drives seeds seed + i, ..., from its
    own generator (as make_vec_env seeds its envs). Every action is kept: envpool cannot save an
    env's state, so a resumed run makes it again by replaying them all (`replay`)."""

    def __init__(self, n_envs, seed, max_steps, threads):
        import envpool

        self.env = envpool.make_gymnasium(
            ENV_ID,
            num_envs=n_envs,
            batch_size=n_envs,
            num_threads=max(1, min(threads, n_envs)),
            seed=[seed + i for i in range(n_envs)],
            max_episode_steps=max_steps,
        )
        self.render_mode = None  # frames come from the observations
        observation_space = spaces.Box(0, 255, ENV_FRAME_SHAPE, np.uint8)  # gymnasium's CarRacing-v3 spaces
        action_space = spaces.Box(np.float32(ACTION_LOW), np.float32(ACTION_HIGH), dtype=np.float32)
        super().__init__(n_envs, observation_space, action_space)
        self.history, self.returns, self.lengths = [], np.zeros(n_envs), np.zeros(n_envs, np.int64)

    def reset(self):
        self.returns[:], self.lengths[:] = 0.0, 0
        return self.env.reset()[0]

    def step_async(self, actions):
        self.actions = np.asarray(actions, np.float32)

    def step_wait(self):
        self.history.append(self.actions.copy())
        obs, reward, terminated, truncated, _ = self.env.step(self.actions)
        reward = reward.astype(np.float32)
        dones = terminated | truncated
        self.returns += reward
        self.lengths += 1
        infos = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(dones)
        for i in ended:
            infos[i] = {
                "terminal_observation": obs[i].copy(),
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": round(float(self.returns[i]), 6), "l": int(self.lengths[i]), "t": 0.0},
            }
        if len(ended):
            obs[ended] = self.env.reset(ended.astype(np.int32))[0]
            self.returns[ended], self.lengths[ended] = 0.0, 0
        return obs, reward, dones, infos

    def replay(self, actions):
        """Reset, then step every action of `actions` (T, n_envs, 3) as the run did; returns the
        last observation and which envs start an episode with it."""
        obs, dones = self.reset(), np.ones(self.num_envs, dtype=bool)
        self.history = []
        for step in actions:
            self.step_async(step)
            obs, _, dones, _ = self.step_wait()
        return obs, dones

    def close(self):
        self.env.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        raise NotImplementedError("EnvpoolVecEnv has no per-env attributes to set")

    def env_method(self, method_name, *args, indices=None, **kwargs):
        raise NotImplementedError("EnvpoolVecEnv has no per-env methods")

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices


class LiveCallback(BaseCallback):
    """After every rollout: log timesteps, the mean training return of recent episodes and the
    latest evaluation return to dvclive, one step per rollout. `rows`: the steps of a run being
    resumed, logged again first (DVC deleted the files when the stage started)."""

    def __init__(self, live, eval_callback, rows=()):
        super().__init__()
        self.live, self.eval_callback, self.rows = live, eval_callback, []
        for row in rows:
            self._log(row)

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        row = {"timesteps": self.num_timesteps}
        if self.model.ep_info_buffer:
            row["train/ep_rew_mean"] = float(np.mean([info["r"] for info in self.model.ep_info_buffer]))
        if np.isfinite(self.eval_callback.best_mean_reward):
            row["eval/mean_reward"] = float(self.eval_callback.last_mean_reward)
            row["eval/best_mean_reward"] = float(self.eval_callback.best_mean_reward)
        self._log(row)

    def _log(self, row):
        for name, value in row.items():
            self.live.log_metric(name, value)
        self.live.next_step()
        self.rows.append(row)


class KeepBest(BaseCallback):
    """EvalCallback's `callback_on_new_best`: a copy of the policy's weights at its best evaluation."""

    state_dict = None

    def _on_step(self):
        self.state_dict = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        return True


class SavedRun:
    """The state of a PPO run at the start of a rollout, saved to `path` (outside the stage's outs)
    under `key`, the fingerprint of what the run depends on; tensors and plain data, loaded with
    `weights_only=True`. A file of another key, or one that does not load, is ignored (and said)."""

    def __init__(self, path, key):
        self.path, self.key = path, key

    def load(self):
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file (written atomically: rare)
            tqdm.write(f"{self.path}: unreadable saved progress ({type(err).__name__}); starting over")
            return None
        return state if isinstance(state, dict) and state.get("key") == self.key else None

    def save(self, state):
        with atomic_path(self.path) as tmp:
            torch.save({"key": self.key, **state}, tmp)

    def clear(self):
        self.path.unlink(missing_ok=True)


class SaveEachRollout(BaseCallback):
    """At the start of every rollout (after the previous one's training): save the run's state,
    everything the rest of it depends on, to `saved` (a SavedRun)."""

    def __init__(self, saved, eval_callback, keep_best, live_callback, *, last=None):
        super().__init__()
        self.saved, self.eval_callback, self.keep_best = saved, eval_callback, keep_best
        self.live_callback = live_callback
        self.last = last  # num_timesteps of the state last saved (or resumed from)

    def _on_step(self):
        return True

    def _on_rollout_start(self):
        if self.num_timesteps in (0, self.last):
            return
        self.saved.save(run_state(self.model, self.eval_callback, self.keep_best, self.live_callback))
        self.last = self.num_timesteps


def run_state(model, eval_callback, keep_best, live_callback):
    numpy_rng = np.random.get_state()
    version, python_rng, gauss = random.getstate()
    return {
        "num_timesteps": model.num_timesteps,
        "policy": model.policy.state_dict(),
        "optimizer": model.policy.optimizer.state_dict(),
        "envs": env_state(model.env.venv),
        "eval_env": eval_callback.eval_env.env_method("replay_state")[0],
        "eval": {
            "n_calls": eval_callback.n_calls,
            "best": float(eval_callback.best_mean_reward),
            "last": float(eval_callback.last_mean_reward),
        },
        "best_state_dict": keep_best.state_dict,
        "episodes": [dict(info) for info in model.ep_info_buffer],
        "rows": live_callback.rows,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": [torch.from_numpy(numpy_rng[1].astype(np.int64)), *numpy_rng[2:]],
            "python": [version, torch.tensor(python_rng, dtype=torch.int64), gauss],
        },
    }


def env_state(venv):
    """What makes the training envs' state again: every action (envpool), or each env's episode
    start and its actions since (gymnasium, wrapped in Replayable)."""
    if isinstance(venv, EnvpoolVecEnv):
        return {"actions": torch.from_numpy(np.array(venv.history, np.float32))}
    return {"episodes": venv.env_method("replay_state")}


def restore_envs(venv, state):
    """Make the state `env_state` saved; returns (observations, which envs start an episode)."""
    if isinstance(venv, EnvpoolVecEnv):
        return venv.replay(state["actions"].numpy())
    venv.reset()  # first: it takes the seeds the envs were made with, which the run used long ago
    episodes = state["episodes"]
    observations = [venv.env_method("restore", saved, indices=[i])[0] for i, saved in enumerate(episodes)]
    return np.stack(observations), np.array([len(saved["actions"]) == 0 for saved in episodes])


def restore_run(state, model, eval_callback, keep_best):
    """Put `model`, its envs, the evaluation and the random generators back as `state` has them."""
    model.policy.load_state_dict(state["policy"])
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps = state["num_timesteps"]
    model.ep_info_buffer = deque(state["episodes"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    observations, starts = restore_envs(model.env.venv, state["envs"])
    model._last_obs = model.env.transpose_observations(observations)
    model._last_episode_starts = starts
    if state["eval_env"] is not None:
        eval_callback.eval_env.reset()
        eval_callback.eval_env.env_method("restore", state["eval_env"])
    eval_callback.n_calls = state["eval"]["n_calls"]
    eval_callback.best_mean_reward = state["eval"]["best"]
    eval_callback.last_mean_reward = state["eval"]["last"]
    keep_best.state_dict = state["best_state_dict"]
    torch.set_rng_state(state["rng"]["torch"])
    keys, *rest = state["rng"]["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), *rest))
    version, python_rng, gauss = state["rng"]["python"]
    random.setstate((version, tuple(python_rng.tolist()), gauss))


def policy_config(policy):
    """What rebuilds an ActorCriticCnnPolicy with SB3's CnnPolicy defaults: its spaces, as plain data."""
    obs, action = policy.observation_space, policy.action_space
    return {
        "observation_shape": list(obs.shape),
        "observation_low": int(obs.low.min()),
        "observation_high": int(obs.high.max()),
        "action_low": action.low.tolist(),
        "action_high": action.high.tolist(),
    }


def load_ppo(path):
    """The policy saved by `train_ppo` at `path`, rebuilt from its config, in eval mode; its
    `predict(obs (N, 96, 96, 3) uint8, deterministic=True)` gives (N, 3) actions."""
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    try:
        observation_space = spaces.Box(
            config["observation_low"],
            config["observation_high"],
            tuple(config["observation_shape"]),
            np.uint8,
        )
        action_space = spaces.Box(
            np.float32(config["action_low"]), np.float32(config["action_high"]), dtype=np.float32
        )
        policy = ActorCriticCnnPolicy(observation_space, action_space, lr_schedule=lambda _: 0.0)
        policy.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(
            f"{path}: does not hold a PPO policy ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}); rerun its stage"
        ) from None
    return policy.eval()


def train_ppo(cfg, max_steps, seed, device, out, live, *, threads=1, saved=None):
    """Train PPO with the hyperparameters of `cfg` (a PPOConfig) on `cfg.backend` (envpool: with
    `threads` threads) and save the policy of its best evaluation (the last policy if no
    evaluation ran) as a checkpoint at `out`; the evaluations drive gymnasium, the reference.
    Returns the best evaluation mean reward. With `saved` (a SavedRun), the run's state is saved
    at the start of every rollout, and a run it holds is resumed."""
    env_kwargs = {"max_steps": max_steps}  # for wm.env.make_env (its fast road: the same frames)
    if cfg.backend == "envpool":
        env = EnvpoolVecEnv(cfg.n_envs, seed, max_steps, threads)
    else:
        env = make_vec_env(
            make_env,
            n_envs=cfg.n_envs,
            seed=seed,
            vec_env_cls=SubprocVecEnv if cfg.n_envs > 1 else DummyVecEnv,
            env_kwargs=env_kwargs,
            wrapper_class=Replayable,
        )
    # the same wrapping as PPO gives the training env (channels first), so evaluation sees alike
    eval_env = VecTransposeImage(
        make_vec_env(
            make_env, n_envs=1, seed=track_seeds("ppo", 1)[0], env_kwargs=env_kwargs, wrapper_class=Replayable
        )
    )
    keep_best = KeepBest()
    eval_callback = EvalCallback(
        eval_env,
        n_eval_episodes=cfg.eval_episodes,
        eval_freq=max(cfg.eval_freq // cfg.n_envs, 1),
        callback_on_new_best=keep_best,
        deterministic=True,
        verbose=0,
    )
    model = PPO(
        "CnnPolicy",
        env,
        learning_rate=cfg.learning_rate,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_range,
        ent_coef=cfg.ent_coef,
        seed=seed,
        device=device,
        verbose=0,
    )
    # our own silent logger: SB3's default makes an empty /tmp/SB3-<time> directory every run
    model.set_logger(Logger(folder=None, output_formats=[]))
    state = saved.load() if saved is not None else None
    live_callback = LiveCallback(live, eval_callback, rows=state["rows"] if state else ())
    callbacks = [eval_callback, live_callback]
    if saved is not None:
        last = state["num_timesteps"] if state else None
        callbacks.append(SaveEachRollout(saved, eval_callback, keep_best, live_callback, last=last))
    try:
        if state:
            done = state["num_timesteps"]
            tqdm.write(f"resuming PPO after {done} of {cfg.timesteps} timesteps ({saved.path})")
            restore_run(state, model, eval_callback, keep_best)
        model.learn(
            total_timesteps=cfg.timesteps - model.num_timesteps,
            callback=callbacks,
            progress_bar=True,
            reset_num_timesteps=not state,
        )
    finally:
        env.close()
        eval_env.close()
    state_dict = keep_best.state_dict or model.policy.state_dict()  # None: no evaluation ran
    save_checkpoint(out, policy_config(model.policy), {k: v.cpu() for k, v in state_dict.items()})
    return float(eval_callback.best_mean_reward)
