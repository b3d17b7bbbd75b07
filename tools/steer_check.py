"""Does the dream know what steering does, and where the road ends? In a workspace with models/
and params.yaml:

    python -m tools.steer_check [--tracks 16] [--start 80] [--steps 40] [--dreams 8] [--round N]
                                [--out reports/steer_check.json] [--picture PATH]

On `--tracks` gymnasium tracks of the dream seed block, a car starts at gas PREFIX_GAS, straight on,
up to step `--start` (the zoom-in and a run-up); from there it holds each of three actions for
`--steps` steps: hard left, straight on, hard right (gas BRANCH_GAS). The real env drives each branch
(the track replayed from its seed: CarRacing is deterministic); the MDN-RNN (round `--round`'s)
dreams each `--dreams` times from the same state (the LSTM state read from the real prefix, z the
real frame's mean), with the same held actions, at controller.dream_temperature, every step decoded
by the VAE. Per step of the branch, on the real and the dreamed 64x64 frames:

- `road_under_car`: the share of road pixels (wm.dream.road_mask) in the patch around the car
  (CAR_PATCH): does the car leave the road when it steers off, in the dream as in the real env?
- `road_shift`: the road's centre (the mean column of its pixels in the rows ahead of the car,
  AHEAD_ROWS, averaged over the tracks that show road there), hard left minus hard right: does the
  dream move the road as far as the real env when the car steers? (None where no track shows road
  ahead; it means little once the road leaves the view, after ~20 steps.)
- `steer_bar`, `gyro_bar`, `speed_bar`: the dashboard's indicators as the frame shows them
  (dashboard_bars): the front wheels' angle (green, signed: left negative), the car's spin (red,
  signed) and its speed (white). Does the dream steer as it is told, and keep the car's speed?

A dream that keeps road under the car while the real car is on grass is one a controller can
exploit by driving straight on. Report (`--out`, default reports/steer_check.json): per branch
and measure, the mean over tracks (and dreams) at each of REPORT_STEPS, for each of SIDES: the real
frames, the VAE's reconstructions of them, M's one-step predictions from the real frames (teacher
forced) and M's dreams; and `gap_to_real`, each side's distance from the real env in two numbers
(gaps). `--picture PATH`: the first track's three branches, each real above dream.
"""

import argparse
import warnings

import cv2
import numpy as np
import torch

from wm.compute import use_threads
from wm.config import load_params
from wm.dream import dream_steps, road_mask, states_at
from wm.env import make_env, prepare_frame, track_seeds
from wm.episodes import Latents
from wm.errors import UserError, main
from wm.io import write_json
from wm.mdnrnn import likeliest_mean
from wm.vae import encode_frames, to_frames
from wm.world_model import load_world_model

PREFIX_GAS = 0.2
BRANCH_GAS = 0.2
BRANCHES = {"left": -1.0, "straight": 0.0, "right": 1.0}  # steering held through the branch
CAR_PATCH = (slice(38, 52), slice(27, 37))  # rows, columns of a 64x64 frame around the car
AHEAD_ROWS = slice(20, 40)  # rows of a 64x64 frame ahead of the car
# CarRacing's dashboard (gymnasium's _render_indicators, in the 96x96 frame: W / 40 = 2.4 pixels a
# place) at the models' 64x64: its bottom rows, the zero columns of the horizontal bars (places 20
# and 30) and the speed bar's columns (place 5)
DASHBOARD_ROWS = slice(56, 64)
STEER_ZERO, GYRO_ZERO = 32, 48
SPEED_COLUMNS = slice(7, 11)
BAR_CONTRAST = 60  # a bar pixel: its colour's channel this far above the other two
REPORT_STEPS = (1, 5, 10, 20, 30, 40)
CURVES = {"road_under_car": 3, "steer_bar": 2, "gyro_bar": 2, "speed_bar": 2}  # per step: its digits
SIDES = ("real", "vae", "teacher", "dream")
STRIP_STEPS = (1, 10, 20, 30, 40)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=16)
    parser.add_argument("--start", type=int, default=80, help="the branches start at this step")
    parser.add_argument("--steps", type=int, default=40, help="steps each branch holds its action")
    parser.add_argument("--dreams", type=int, default=8, help="dreams per track and branch")
    parser.add_argument("--round", type=int, default=0, help="this round's MDN-RNN (0: the mdnrnn stage's)")
    parser.add_argument("--out", default="reports/steer_check.json")
    parser.add_argument("--picture", help="a PNG of the first track's branches, real above dream")
    args = parser.parse_args()
    if min(args.tracks, args.start, args.steps, args.dreams) < 1:
        raise UserError("--tracks, --start, --steps and --dreams must be positive")
    params = load_params()
    use_threads(params.threads)
    vae, mdnrnn = load_world_model(params.vae.z_dim, args.round)
    tau = params.controller.dream_temperature
    generator = torch.Generator().manual_seed(params.seed)
    measures = {side: {branch: [] for branch in BRANCHES} for side in SIDES}
    strips = []
    for seed in track_seeds("dream", args.tracks):
        prefix = [np.array([0.0, PREFIX_GAS, 0.0], np.float32)] * args.start
        for branch, steer in BRANCHES.items():
            held = np.array([steer, BRANCH_GAS, 0.0], np.float32)
            frames = real_frames(seed, prefix + [held] * args.steps, params.env.max_steps)
            measures["real"][branch].append(frame_measures(frames[args.start + 1 :]))
            mu, _ = encode_frames(vae, frames, 256, "cpu")
            if branch == "left":  # the prefix is the same for every branch: dream from its state
                start = dream_start(mdnrnn, mu, prefix, args.start)
            seen, predicted = one_step(vae, mdnrnn, mu, prefix + [held] * args.steps, args.start)
            measures["vae"][branch].append(frame_measures(seen))
            measures["teacher"][branch].append(frame_measures(predicted))
            dreamed = dream_frames(vae, mdnrnn, start, held, args.steps, args.dreams, tau, generator)
            measures["dream"][branch].extend(frame_measures(f) for f in dreamed)
            if args.picture and len(strips) < len(BRANCHES):
                strips.append(strip(frames[args.start + 1 :], dreamed[0]))
    write_json(args.out, report(measures, args))
    if args.picture:
        cv2.imwrite(args.picture, np.concatenate(strips, 0)[:, :, ::-1])  # at the models' 64x64
    print(f"{args.out}:")
    for key, step, title in (
        ("road_under_car", args.steps, "road under the car"),
        ("steer_bar", max(args.steps // 2, 1), "the steering bar (pixels, left negative)"),
    ):
        print(f"{title} at step {step} of the branch:", *SIDES)
        for branch in BRANCHES:
            values = [np.mean([m[key][step - 1] for m in measures[side][branch]]) for side in SIDES]
            print(f"  {branch:8s}", *(f"{value:+.2f}" for value in values))


def real_frames(seed, actions, max_steps):
    """The 64x64 frames of track `seed` driven by `actions`: the reset's, then one per action."""
    env = make_env(max_steps)
    try:
        obs, _ = env.reset(seed=seed)
        frames = [prepare_frame(obs)]
        for action in actions:
            obs, *_ = env.step(action)
            frames.append(prepare_frame(obs))
    finally:
        env.close()
    return np.stack(frames)


def dream_start(mdnrnn, mu, prefix, start):
    """z (1, Z) of the real frame at step `start` (`mu`: the real frames' means) and the LSTM state
    (h, c) after reading the real prefix up to it, as a driving agent's would be."""
    latents = Latents(mu[: start + 1], mu[: start + 1], np.stack(prefix), np.zeros(start), np.zeros(start))
    h, c = states_at(mdnrnn, [latents], [start])
    return torch.from_numpy(mu[start : start + 1]), (h[:, 0], c[:, 0])


@torch.inference_mode()
def one_step(vae, mdnrnn, mu, actions, start):
    """The branch's frames as the VAE sees them (its real frames' means, decoded) and as M predicts
    each from the real frames before it (teacher-forced: its likeliest component's mean, decoded)."""
    z = torch.from_numpy(mu[None, :-1])
    prediction, _ = mdnrnn(z, torch.from_numpy(np.stack(actions))[None])
    predicted = likeliest_mean(prediction)[0, start:]
    return to_frames(vae.decode(torch.from_numpy(mu[start + 1 :]))), to_frames(vae.decode(predicted))


@torch.inference_mode()
def dream_frames(vae, mdnrnn, start, action, steps, dreams, tau, generator):
    """`dreams` dreams of `steps` steps from `start` with `action` held: (dreams, steps, 64, 64, 3)."""
    z0, (h0, c0) = start
    held = torch.from_numpy(action)[None].repeat(dreams, 1)
    dream = dream_steps(
        mdnrnn,
        lambda z, h: held,
        z0.repeat(dreams, 1),
        steps=steps,
        tau=tau,
        generator=generator,
        state=(h0.repeat(dreams, 1), c0.repeat(dreams, 1)),
    )
    return np.stack([to_frames(vae.decode(z)) for z, _ in dream], 1)


def strip(real, dream):
    """The real branch's frames (64x64) above one dream's, at STRIP_STEPS within the branch."""
    steps = [s - 1 for s in STRIP_STEPS if s <= len(real)]
    return np.concatenate([np.concatenate([frames[s] for s in steps], 1) for frames in (real, dream)], 0)


def dashboard_bars(frames):
    """The dashboard's indicators in (T, 64, 64, 3) uint8 frames, each (T,), in pixels: the steering
    bar (green; pixels right of its zero column count positive, so hard left is negative), the
    spin bar (red, the same) and the speed bar (white pixels)."""
    bars = frames[:, DASHBOARD_ROWS].astype(np.int16)
    r, g, b = bars[..., 0], bars[..., 1], bars[..., 2]
    side = np.sign(np.arange(bars.shape[2]) - np.array([[STEER_ZERO], [GYRO_ZERO]]))  # (2, 64)
    green = g - np.maximum(r, b) > BAR_CONTRAST
    red = r - np.maximum(g, b) > BAR_CONTRAST
    white = bars[:, :, SPEED_COLUMNS].min(-1) > 2 * BAR_CONTRAST
    return (green * side[0]).sum((1, 2)), (red * side[1]).sum((1, 2)), white.sum((1, 2))


def frame_measures(frames):
    """Per frame of (T, 64, 64, 3): the road share around the car, the road's centre ahead and the
    dashboard's bars."""
    road = road_mask(frames)
    ahead = road[:, AHEAD_ROWS]
    columns = np.arange(road.shape[2])
    weight = ahead.sum((1, 2))
    centre = np.where(weight > 0, (ahead * columns).sum((1, 2)) / np.maximum(weight, 1), np.nan)
    steer, gyro, speed = dashboard_bars(frames)
    return {
        "road_under_car": road[:, CAR_PATCH[0], CAR_PATCH[1]].mean((1, 2)),
        "road_centre": centre,
        "steer_bar": steer,
        "gyro_bar": gyro,
        "speed_bar": speed,
    }


def per_step(means, key, steps):
    """{branch: {step: value}} of measure `key`'s per-branch mean curves (`means`) at `steps`."""
    return {b: {str(s): round(float(m[key][s - 1]), CURVES[key]) for s in steps} for b, m in means.items()}


def report(measures, args):
    steps = [s for s in REPORT_STEPS if s <= args.steps] or [args.steps]
    out = {"tracks": args.tracks, "start": args.start, "steps": args.steps, "dreams": args.dreams}
    out["round"] = args.round
    means = {}  # per side, branch and measure: the mean over tracks (and dreams) at each step
    for side, branches in measures.items():
        stacked = {b: {k: np.stack([m[k] for m in ms]) for k in ms[0]} for b, ms in branches.items()}
        means[side] = {b: {k: m[k].mean(0) for k in CURVES} for b, m in stacked.items()}
        with warnings.catch_warnings():  # a step where no track shows road ahead: no centre (None)
            warnings.simplefilter("ignore", RuntimeWarning)
            left, right = (np.nanmean(stacked[b]["road_centre"], 0) for b in ("left", "right"))
        shift = left - right
        curves = {key: per_step(means[side], key, steps) for key in CURVES}
        shifts = {str(s): round(float(shift[s - 1]), 2) if np.isfinite(shift[s - 1]) else None for s in steps}
        out[side] = {"road_under_car": curves.pop("road_under_car"), "road_shift": shifts, **curves}
    out["gap_to_real"] = {side: gaps(means[side], means["real"]) for side in SIDES[1:]}
    return out


def gaps(side, real):
    """How far a side's mean curves are from the real env's, two numbers to compare M's by: the road
    under the car straight on at the branch's last step (side minus real: positive, a dream that
    keeps road the real car left) and the steering bar's mean absolute difference over every step
    of the three branches (pixels: does the dream steer as it was told?)."""
    steer = np.mean([np.abs(side[b]["steer_bar"] - real[b]["steer_bar"]).mean() for b in BRANCHES])
    road = side["straight"]["road_under_car"][-1] - real["straight"]["road_under_car"][-1]
    return {"road_under_car_straight": round(float(road), 3), "steer_bar": round(float(steer), 2)}


if __name__ == "__main__":
    run()
