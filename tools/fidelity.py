"""How closely envpool's CarRacing-v3 follows gymnasium's, the reference:

    python -m tools.fidelity [--episodes 10] [--out metrics/fidelity.json]

For each track seed, an episode is driven in gymnasium by the correlated random policy and by
PPO if models/ppo exists; the same action sequence is then replayed in envpool on the same
seed. Reports the per-frame mean absolute pixel difference of the 64x64 model frames
(0-255 scale), at the first frame and over the episode, and the difference of the returns.
"""

import argparse
from pathlib import Path

import numpy as np

from wm import paths
from wm.agents import ReplayPolicy, build_policy
from wm.env import track_seeds
from wm.errors import main
from wm.io import write_json
from wm.rollout import drive
from wm.vector_env import make_vector_env


def replay(seed, actions):
    """Frames (T'+1, 64, 64, 3) and rewards (T',) of `actions` (T, 3) replayed on track `seed` in
    envpool, until they run out or the episode ends (T' <= T)."""
    with make_vector_env("envpool", len(actions), 1) as port:  # truncated once the actions run out
        (rollout,) = drive(port, ReplayPolicy(np.asarray(actions)[:, None]), [seed], 1, record=True)
    return np.stack(rollout.frames), np.array(rollout.rewards, dtype=np.float64)


def compare(policy, seeds, max_steps):
    with make_vector_env("gymnasium", max_steps, 1) as reference:
        rollouts = drive(reference, policy, seeds, batch_size=len(seeds), record=True)
    episodes = []
    for rollout in rollouts:
        frames, rewards = replay(rollout.seed, rollout.actions)
        reference_frames = np.stack(rollout.frames)
        steps = min(len(frames), len(reference_frames))
        mad = np.abs(frames[:steps].astype(np.int16) - reference_frames[:steps]).mean(axis=(1, 2, 3))
        episodes.append(
            {
                "seed": rollout.seed,
                "gymnasium_return": round(rollout.total_reward, 2),
                "envpool_return": round(float(rewards.sum()), 2),
                "gymnasium_steps": rollout.steps,
                "envpool_steps": len(rewards),
                "first_frame_mad": round(float(mad[0]), 3),
                "mean_frame_mad": round(float(mad.mean()), 3),
            }
        )
    differences = [abs(e["gymnasium_return"] - e["envpool_return"]) for e in episodes]
    return {
        "mean_first_frame_mad": float(np.mean([e["first_frame_mad"] for e in episodes])),
        "mean_frame_mad": float(np.mean([e["mean_frame_mad"] for e in episodes])),
        "mean_abs_return_difference": float(np.mean(differences)),
        "mean_gymnasium_return": float(np.mean([e["gymnasium_return"] for e in episodes])),
        "mean_envpool_return": float(np.mean([e["envpool_return"] for e in episodes])),
        "episodes": episodes,
    }


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("metrics/fidelity.json"))
    args = parser.parse_args()
    seeds = track_seeds("test", args.episodes)
    results = {"random": compare(build_policy("random"), seeds, args.max_steps)}
    if paths.PPO_MODEL.exists():
        results["ppo"] = compare(build_policy("ppo"), seeds, args.max_steps)
    for name, r in results.items():
        print(
            f"{name}: frame MAD first {r['mean_first_frame_mad']:.2f}, episode {r['mean_frame_mad']:.2f}; "
            f"return gymnasium {r['mean_gymnasium_return']:.1f} vs envpool {r['mean_envpool_return']:.1f} "
            f"(mean |difference| {r['mean_abs_return_difference']:.1f})"
        )
    write_json(args.out, results)


if __name__ == "__main__":
    run()
