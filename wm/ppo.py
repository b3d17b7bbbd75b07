"""Stable-Baselines3 PPO (CnnPolicy) on CarRacing-v3: the data-collection policy and the
model-free baseline. DVCLive has no SB3 integration, so a small callback logs to `Live`.

The trained policy is saved as a plain checkpoint, `{"config", "state_dict"}` of SB3's
ActorCriticCnnPolicy, not as SB3's zip (whose `PPO.load` unpickles, so a tampered zip from a
remote would run code, and whose bytes change with the save time): `load_ppo` rebuilds the
policy from the config and loads the weights with `weights_only=True`.
"""

import numpy as np
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecTransposeImage

from wm.env import ENV_ID, track_seeds
from wm.errors import UserError
from wm.io import load_checkpoint, save_checkpoint


class LiveCallback(BaseCallback):
    """After every rollout: log timesteps, the mean training return of recent episodes and the
    latest evaluation return to dvclive, one step per rollout."""

    def __init__(self, live, eval_callback):
        super().__init__()
        self.live, self.eval_callback = live, eval_callback

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        self.live.log_metric("timesteps", self.num_timesteps)
        if self.model.ep_info_buffer:
            self.live.log_metric(
                "train/ep_rew_mean", float(np.mean([info["r"] for info in self.model.ep_info_buffer]))
            )
        if np.isfinite(self.eval_callback.best_mean_reward):
            self.live.log_metric("eval/mean_reward", float(self.eval_callback.last_mean_reward))
            self.live.log_metric("eval/best_mean_reward", float(self.eval_callback.best_mean_reward))
        self.live.next_step()


class KeepBest(BaseCallback):
    """EvalCallback's `callback_on_new_best`: a copy of the policy's weights at its best evaluation."""

    state_dict = None

    def _on_step(self):
        self.state_dict = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        return True


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


def train_ppo(cfg, max_steps, seed, device, out, live):
    """Train PPO with the hyperparameters of `cfg` (a PPOConfig) and save the policy of its best
    evaluation (the last policy if no evaluation ran) as a checkpoint at `out`. Returns the best
    evaluation mean reward."""
    vec_env_cls = SubprocVecEnv if cfg.n_envs > 1 else DummyVecEnv
    env_kwargs = {"max_episode_steps": max_steps}
    env = make_vec_env(ENV_ID, n_envs=cfg.n_envs, seed=seed, vec_env_cls=vec_env_cls, env_kwargs=env_kwargs)
    # the same wrapping as PPO gives the training env (channels first), so evaluation sees alike
    eval_env = VecTransposeImage(
        make_vec_env(ENV_ID, n_envs=1, seed=track_seeds("ppo", 1)[0], env_kwargs=env_kwargs)
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
    try:
        model.learn(
            total_timesteps=cfg.timesteps,
            callback=[eval_callback, LiveCallback(live, eval_callback)],
            progress_bar=True,
        )
    finally:
        env.close()
        eval_env.close()
    state_dict = keep_best.state_dict or model.policy.state_dict()  # None: no evaluation ran
    save_checkpoint(out, policy_config(model.policy), {k: v.cpu() for k, v in state_dict.items()})
    return float(eval_callback.best_mean_reward)
