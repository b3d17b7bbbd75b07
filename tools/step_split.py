"""Where one step of a CMA-ES batch goes, on one core: the env, the frames' resize, the VAE
encoder (as the agent runs it, and with channels_last), the MDN-RNN's LSTM step and the controller:

    python -m tools.step_split [--batch 32] [--repeats 5] [--out reports/step_split.json]

A worker of the `processes` executor drives a batch on one core this way (one env thread, one
torch thread), so the shares say what a cheaper encoder could save of a generation at most. Each
figure is the median over `--repeats` of the mean of 100 calls, after 60 steps of driving (the
zoom-in over); the models are this workspace's (models/), their sizes params.yaml's. Not a test.
"""

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from wm import paths
from wm.config import load_params
from wm.controller import Controller, apply
from wm.env import prepare_frame
from wm.errors import main
from wm.io import write_json
from wm.vae import to_input
from wm.vector_env import make_vector_env
from wm.world_model import load_world_model

CALLS = 100


def median_ms(fn, repeats):
    """Median over `repeats` of the mean milliseconds of CALLS calls of fn (after 10 unmeasured)."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        times.append((time.perf_counter() - start) / CALLS * 1000)
    return statistics.median(times)


@main
@torch.inference_mode()
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="reports/step_split.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params()
    vae, mdnrnn = load_world_model(params.vae.z_dim)
    vae, mdnrnn = vae.eval(), mdnrnn.eval()
    controller = Controller(vae.z_dim, mdnrnn.hidden)
    layers = controller.batch(np.zeros((args.batch, controller.size), np.float32))
    env = make_vector_env("envpool", params.env.max_steps, 1)
    obs = env.reset(list(range(args.batch)))
    drive = np.tile(np.float32([0.0, 0.3, 0.0]), (args.batch, 1))
    for _ in range(60):
        obs, *_ = env.step(drive)
    frames = np.stack([prepare_frame(frame) for frame in obs])
    x = to_input(frames, "cpu")
    fast = copy.deepcopy(vae).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    reference = vae.encode(x)[0]
    state = mdnrnn.initial_state(args.batch, torch.device("cpu"))
    step_input = torch.zeros(args.batch, 1, vae.z_dim + 3)
    features = torch.zeros(args.batch, vae.z_dim + mdnrnn.hidden)
    ms = {
        "env_step": median_ms(lambda: env.step(drive), args.repeats),
        "resize_frames": median_ms(lambda: [prepare_frame(frame) for frame in obs], args.repeats),
        "encoder": median_ms(lambda: vae.encode(x), args.repeats),
        "lstm_step": median_ms(lambda: mdnrnn.lstm(step_input, state), args.repeats),
        "controller": median_ms(lambda: apply(layers, features), args.repeats),
    }
    ms_last = median_ms(lambda: fast.encode(x_last), args.repeats)
    total = sum(ms.values())
    report = {
        "batch": args.batch,
        "ms_per_batch_step": {k: round(v, 3) for k, v in ms.items()},
        "share": {k: round(v / total, 3) for k, v in ms.items()},
        "encoder_channels_last_ms": round(ms_last, 3),
        "encoder_channels_last_speedup": round(ms["encoder"] / ms_last, 3),
        "channels_last_max_abs_diff_of_z": float((fast.encode(x_last)[0] - reference).abs().max()),
        "models": str(paths.VAE.parent),
    }
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    run()
