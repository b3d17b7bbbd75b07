"""Does the controller's input already hold what the dashboard shows? Along the collected episodes,
a linear read (ridge) of z, of h and of [z, h] is fitted to the dashboard's three bars in each
frame (the car's speed, its spin and the front wheels' angle) on three episodes in four, and scored
(R^2) on the fourth:

    python -m tools.dashboard_read [--out reports/dashboard_read.json]

Run in a workspace with data/rollouts, data/latents and models/ (V and M). The bars are read from
the same 64x64 frames V encodes (`bars`: tools.steer_check.dashboard_bars' layout, but each bar's
pixels weighted by their colour's contrast, not counted past a threshold, so smoothed edges count
in part). h at a frame is the LSTM's after reading the episode up to it, as the driving agent's h
(wm.world_model.input_moments). An R^2 near 1 says C can already read that bar off its input; a
low one, that a controller given the bar would see something new. Also each bar's std along the
data, in its pixels. Not a test.
"""

import argparse

import numpy as np
import torch

from tools.steer_check import DASHBOARD_ROWS, GYRO_ZERO, STEER_ZERO
from wm import paths
from wm.config import load_params
from wm.episodes import list_files, load_episode, load_latents
from wm.errors import UserError, main
from wm.io import write_json
from wm.world_model import load_world_model

SPEED_COLUMNS = slice(8, 10)  # the speed bar's whole columns at 64x64 (steer_check's, less the edges)
BARS = ("speed", "spin", "steer")
HELD_OUT = 4  # every fourth episode is scored, the others fitted
RIDGE = 1e-3  # times the inputs' mean variance


def bars(frames):
    """(T, 64, 64, 3) uint8 -> (T, 3) float64: the speed, spin and steering bars, in pixels of
    full colour (spin and steer signed: right of their zero column positive)."""
    rgb = frames[:, DASHBOARD_ROWS].astype(np.float64) / 255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    side = np.sign(np.arange(rgb.shape[2]) - np.array([[STEER_ZERO], [GYRO_ZERO]]))  # (2, 64)
    red = np.clip(r - np.maximum(g, b), 0, None)
    green = np.clip(g - np.maximum(r, b), 0, None)
    speed = rgb[:, :, SPEED_COLUMNS].min(-1).sum((1, 2))
    return np.stack([speed, (red * side[1]).sum((1, 2)), (green * side[0]).sum((1, 2))], 1)


@torch.inference_mode()
def episode_inputs(mdnrnn, rollout, latent, z_dim):
    """z (T+1, Z), h (T+1, H) and the bars (T+1, 3) of one episode, frame by frame."""
    episode, latents = load_episode(rollout), load_latents(latent, z_dim)
    if len(episode.obs) != len(latents.mu):
        raise UserError(f"{latent}: {len(latents.mu)} frames, its rollout {rollout} has {len(episode.obs)}")
    read = torch.from_numpy(np.concatenate([latents.mu[:-1], latents.action], 1))[None]
    h = mdnrnn.lstm(read)[0][0].numpy()
    h = np.concatenate([np.zeros((1, mdnrnn.hidden), np.float32), h])
    return latents.mu.astype(np.float64), h.astype(np.float64), bars(episode.obs)


def r_squared(x_fit, y_fit, x_test, y_test):
    """Per column of y: R^2 on the test rows of a ridge fit on the fit rows (with an intercept)."""
    mean_x, mean_y = x_fit.mean(0), y_fit.mean(0)
    xc, yc = x_fit - mean_x, y_fit - mean_y
    gram = xc.T @ xc
    gram += RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    weight = np.linalg.solve(gram, xc.T @ yc)
    error = y_test - (x_test - mean_x) @ weight - mean_y
    return 1 - (error**2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/dashboard_read.json")
    args = parser.parse_args()
    z_dim = load_params().vae.z_dim
    mdnrnn = load_world_model(z_dim)[1].eval()
    rollouts, latents = list_files(paths.ROLLOUTS, "rollout"), list_files(paths.LATENTS, "latent")
    if [p.name for p in rollouts] != [p.name for p in latents]:
        raise UserError(f"{paths.LATENTS}: its episodes are not those of {paths.ROLLOUTS}; run encode")
    split = {True: [], False: []}  # held out: [(z, h, bars) per episode]
    for i, (rollout, latent) in enumerate(zip(rollouts, latents)):
        split[i % HELD_OUT == HELD_OUT - 1].append(episode_inputs(mdnrnn, rollout, latent, z_dim))
    fit, test = ([np.concatenate(column) for column in zip(*split[side])] for side in (False, True))
    inputs = {"z": lambda z, h: z, "h": lambda z, h: h, "z+h": lambda z, h: np.concatenate([z, h], 1)}
    report = {
        "episodes": {"fitted": len(split[False]), "held_out": len(split[True])},
        "frames_held_out": len(test[2]),
        "bar_std": dict(zip(BARS, np.round(np.concatenate([fit[2], test[2]]).std(0), 3).tolist())),
        "r2_held_out": {},
    }
    for name, read in inputs.items():
        scores = r_squared(read(*fit[:2]), fit[2], read(*test[:2]), test[2])
        report["r2_held_out"][name] = dict(zip(BARS, np.round(scores, 3).tolist()))
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    run()
