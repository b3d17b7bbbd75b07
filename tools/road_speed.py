"""gymnasium CarRacing-v3's step rate with its own drawing, with wm.env.FastRoad, and with FastRoad
and FastRender (what make_env gives), side by side in one run, and whether all gave the same frames:

    python -m tools.road_speed [--tracks 4] [--steps 1000] [--repeats 3] [--out reports/road_speed.json]

Each repeat drives `--tracks` validate tracks for up to `--steps` steps each way in turn (one
process, one env at a time, the same actions: collect's correlated random driving, which leaves
the road early, so more frames are grass than in a controller's drive), timing every `env.step`
and comparing every frame and reward. Reported: the median steps/s of each way over the repeats
and their ratios. Not a test (tests/test_driving.py checks the frames).
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from wm.agents import RandomPolicy
from wm.env import make_env, track_seeds
from wm.errors import main
from wm.io import write_json

WAYS = {  # make_env's drawing switches: gymnasium's own, FastRoad, FastRoad and FastRender
    "gymnasium": {"fast_road": False, "fast_text": False},
    "fast_road": {"fast_road": True, "fast_text": False},
    "fast_road_text": {"fast_road": True, "fast_text": True},
}


def drive(seed, way, steps):
    """(frames (T+1, 96, 96, 3) uint8, rewards (T,), seconds spent in env.step) of one track."""
    env = make_env(steps, **WAYS[way])
    policy = RandomPolicy()
    obs, _ = env.reset(seed=seed)
    policy.reset([seed])
    frames, rewards, seconds = [obs], [], 0.0
    for _ in range(steps):
        action = policy.act(obs[None])[0]
        start = time.perf_counter()
        obs, reward, terminated, truncated, _ = env.step(action)
        seconds += time.perf_counter() - start
        frames.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    return np.stack(frames), np.array(rewards), seconds


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/road_speed.json"))
    args = parser.parse_args()
    seeds = track_seeds("validate", args.tracks)
    rates = {way: [] for way in WAYS}
    identical = True
    for repeat in range(args.repeats):
        for seed in seeds:
            stock = drive(seed, "gymnasium", args.steps)
            rates["gymnasium"].append(len(stock[1]) / stock[2])
            for way in list(WAYS)[1:]:
                fast = drive(seed, way, args.steps)
                identical &= np.array_equal(stock[0], fast[0]) and np.array_equal(stock[1], fast[1])
                rates[way].append(len(fast[1]) / fast[2])
        print(f"repeat {repeat + 1}:", ", ".join(f"{way} {rates[way][-1]:.0f}" for way in WAYS), "steps/s")
    medians = {way: statistics.median(values) for way, values in rates.items()}
    result = {
        "tracks": seeds,
        "repeats": args.repeats,
        "steps_per_second_median": {way: round(rate, 1) for way, rate in medians.items()},
        "ratio_fast_road_over_gymnasium": round(medians["fast_road"] / medians["gymnasium"], 2),
        "ratio_fast_road_text_over_fast_road": round(medians["fast_road_text"] / medians["fast_road"], 2),
        "ratio_fast_road_text_over_gymnasium": round(medians["fast_road_text"] / medians["gymnasium"], 2),
        "identical_frames_and_rewards": bool(identical),
    }
    write_json(args.out, result)
    print(result)
    if not identical:
        raise SystemExit("error: FastRoad or FastRender drew other frames than gymnasium's own drawing")


if __name__ == "__main__":
    run()
