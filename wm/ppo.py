"""Stable-Baselines3 PPO (CnnPolicy) on CarRacing-v3: the data-collection policy and the
model-free baseline. DVCLive has no SB3 integration, so a small callback logs to `Live`."""

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecTransposeImage

from wm.env import ENV_ID, track_seeds


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


def train_ppo(cfg, max_steps, seed, device, out_dir, live):
    """Train PPO with the hyperparameters of `cfg` (a PPOConfig); save the best evaluated model
    as out_dir/best_model.zip and the last as out_dir/final_model.zip. Returns the best
    evaluation mean reward."""
    vec_env_cls = SubprocVecEnv if cfg.n_envs > 1 else DummyVecEnv
    env_kwargs = {"max_episode_steps": max_steps}
    env = make_vec_env(ENV_ID, n_envs=cfg.n_envs, seed=seed, vec_env_cls=vec_env_cls, env_kwargs=env_kwargs)
    # the same wrapping as PPO gives the training env (channels first), so evaluation sees alike
    eval_env = VecTransposeImage(
        make_vec_env(ENV_ID, n_envs=1, seed=track_seeds("ppo", 1)[0], env_kwargs=env_kwargs)
    )
    eval_callback = EvalCallback(
        eval_env,
        n_eval_episodes=cfg.eval_episodes,
        eval_freq=max(cfg.eval_freq // cfg.n_envs, 1),
        best_model_save_path=str(out_dir),
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
    model.save(out_dir / "final_model.zip")
    if not (out_dir / "best_model.zip").exists():  # no evaluation ran within the budget
        model.save(out_dir / "best_model.zip")
    return float(eval_callback.best_mean_reward)
