"""The z+h controller's worst test tracks, filmed and diagnosed: what happens where it fails.

    python -m tools.worst_tracks [--count 5] [--validate N] [--out reports/worst_tracks.json]

Takes the lowest returns of the controller in metrics/eval.json (the evaluate stage's; with
`--validate N`, of N validate tracks it drives first: what to look at when choosing a fix), drives
each of those tracks again on gymnasium, one at a time, with the trained world-model agent, and
writes a video per track (reports/worst/<seed>.mp4, the env's own rendering) and, per track,
what the car did, read from the simulator at every step: how much of the lap it covered, when
and how long it was off the road (all four wheels on grass), how fast it turned on itself
(a spin-out), and how long it stood still. A track driven alone can end a few points away from
its return in evaluate's batch (batched float math rounds differently; README, Ray), so both
returns are given.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import UserError, main
from wm.executor import batch_count, make_executor
from wm.io import resolve_device, write_json
from wm.rollout import drive
from wm.vector_env import SingleEnv
from wm.video import write_mp4
from wm.world_model import load_agent, load_world_model

SPIN = 5.0  # rad/s of the hull about itself: laps of 917 stay under 4.5, the spin-outs seen pass 7
STILL = 1.0  # m/s: standing still
SETTLE = 50  # steps of the zoom-in at the start, when the car has not moved yet


def longest_run(flags):
    """(start, length) of the longest run of True in `flags` ((0, 0) if none)."""
    best, start = (0, 0), None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            best = max(best, (start, i - start), key=lambda run: run[1])
            start = None
    return best


def diagnose(record, tiles_total):
    """What went wrong on a track, from its per-step record."""
    off = np.array(record["off_road"])
    spin = np.abs(np.array(record["angular_velocity"])) > SPIN
    still = np.array(record["speed"]) < STILL
    still[:SETTLE] = False
    off_start, off_steps = longest_run(off)
    still_start, still_steps = longest_run(still)
    causes = []
    if spin.any():
        causes.append(f"spin-out at step {int(np.argmax(spin))}")
    if off_steps >= 20:
        causes.append(f"off the road for {off_steps} steps from step {off_start}")
    if still_steps >= 50:
        causes.append(f"stood still for {still_steps} steps from step {still_start}")
    covered = record["tiles"] / tiles_total
    if not record["lap_done"] and not causes:
        causes.append(f"too slow: {covered:.0%} of the lap when time ran out")
    return {
        "lap_covered": round(covered, 3),
        "lap_done": record["lap_done"],
        "off_road_steps": int(off.sum()),
        "longest_off_road": [off_start, off_steps],
        "max_angular_velocity": round(float(np.abs(record["angular_velocity"]).max()), 2),
        "longest_still": [still_start, still_steps],
        "causes": causes or ["none found"],
    }


def drive_and_watch(agent, seed, max_steps):
    """Drive `seed` alone with `agent`, filmed; (the Rollout, the car's state at the reset and
    after every step, the track's tile count)."""
    record = {"off_road": [], "angular_velocity": [], "speed": []}
    with SingleEnv(max_steps, render_mode="rgb_array") as env:
        car_racing = env.env.unwrapped

        def watch(obs):
            car = car_racing.car
            record["off_road"].append(all(not wheel.tiles for wheel in car.wheels))
            record["angular_velocity"].append(car.hull.angularVelocity)
            record["speed"].append(float(np.hypot(*car.hull.linearVelocity)))

        (rollout,) = drive(env, agent, [seed], 1, render=True, on_step=watch)
        record["tiles"], record["lap_done"] = car_racing.tile_visited_count, rollout.terminated
        return rollout, record, len(car_racing.track)


def scanned_returns(agent, params, tracks):
    """(seeds, returns) of `agent` on `tracks` validate tracks, driven as evaluate drives (batches
    of env.batch_size) on env.backend through the stages' executor."""
    seeds = track_seeds("validate", tracks)
    env = params.env
    with make_executor(
        env.backend,
        env.max_steps,
        params.evaluate.workers,
        params.threads,
        device=agent.device,
        batches=batch_count(len(seeds), env.batch_size),
    ) as executor:
        driven = executor.drive(agent, seeds, env.batch_size, desc="validate")
    return seeds, np.array([r.total_reward for r in driven])


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5, help="how many of the worst tracks")
    parser.add_argument(
        "--validate",
        type=int,
        metavar="N",
        help="scan N validate tracks (on env.backend) instead of reading evaluate's test returns",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/worst_tracks.json"))
    args = parser.parse_args()
    params = load_params()
    use_threads(params.threads)
    agent = load_agent(*load_world_model(params.vae.z_dim), device=resolve_device(params.device))
    if args.validate:
        seeds, returns = scanned_returns(agent, params, args.validate)
        source = f"{args.validate} validate tracks on {params.env.backend}"
    else:
        if not paths.EVAL_METRICS.exists():
            raise UserError(f"{paths.EVAL_METRICS}: not found (run the evaluate stage: dvc repro evaluate)")
        evaluation = json.loads(paths.EVAL_METRICS.read_text())
        seeds, returns = evaluation["test_seeds"], np.array(evaluation["controller"]["returns"])
        source = f"{paths.EVAL_METRICS} (test tracks, gymnasium)"
    tracks = []
    for i in np.argsort(returns)[: args.count]:
        seed = int(seeds[i])
        rollout, record, tiles_total = drive_and_watch(agent, seed, params.env.max_steps)
        video = args.out.parent / "worst" / f"{seed}.mp4"
        write_mp4(video, rollout.renders, fps=50)
        track = {
            "seed": seed,
            "scanned_return": float(returns[i]),
            "return_alone": round(rollout.total_reward, 2),
            "steps": rollout.steps,
            "video": str(video),
            **diagnose(record, tiles_total),
        }
        tracks.append(track)
        print(f"{seed}: {returns[i]:.1f} ({rollout.total_reward:.1f} alone): {'; '.join(track['causes'])}")
    summary = {"mean": float(returns.mean()), "std": float(returns.std()), "min": float(returns.min())}
    write_json(
        args.out,
        {"scanned": source, **summary, "tracks": tracks, "spin_threshold": SPIN, "still_threshold": STILL},
    )


if __name__ == "__main__":
    run()
