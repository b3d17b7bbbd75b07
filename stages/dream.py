"""Stage dream: the controller drives a real track and, from the same first frame, inside the
MDN-RNN's dream; both are written side by side as an H.264 video: the real drive as the env
renders it to the agent (96x96, not the model's 64x64), the dream as the VAE decodes it.
How long they stay alike: per step, the overlap of their road pixels (wm.dream.road_agreement);
`alike_steps`, the steps before it first falls below ALIKE. And, per CMA-ES generation of the
controller stage and of each round after it, the best candidate's fitness beside its real return on
the watched validate tracks (controller.watch_tracks): in dream mode, what the dream promised against
what the car did (dvc.yaml's plot dream_vs_real), and how well the one foretells the other.

outs: metrics/dream.mp4; metrics/dream.json; metrics/dream_vs_real.tsv
"""

from pathlib import Path

import numpy as np

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.dream import dream_rollout, road_agreement
from wm.env import prepare_frame, track_seeds
from wm.errors import UserError, main
from wm.io import Timer, resolve_device, write_json, write_tsv
from wm.rollout import drive
from wm.vector_env import SingleEnv
from wm.video import side_by_side, write_mp4
from wm.world_model import load_agent, load_world_model

VIDEO_HEIGHT = 384  # the 96x96 real frames x 4, the 64x64 dream x 6
ALIKE = 0.5  # road overlap below which the dream no longer shows the real road
GENERATIONS = Path("metrics/dream_vs_real.tsv")


def generations(rounds):
    """Rows (generation, round, fitness, real) for every CMA-ES generation of the controller stage
    and then of rounds 1..`rounds` (numbered on across them), from their dvclive logs: the best
    candidate's fitness (its dream score in dream mode, its tracks' mean in real mode) and its
    mean return on the watched validate tracks ("" without controller.watch_tracks)."""
    rows = []
    for n in range(rounds + 1):
        logs = paths.controller_metrics(n) / "plots/metrics"
        stage = f"round_controller@{n}" if n else "controller"
        if not (logs / "generation/best.tsv").exists():
            raise UserError(f"{logs / 'generation/best.tsv'}: not found (dvc repro {stage})")
        best = np.loadtxt(logs / "generation/best.tsv", skiprows=1, ndmin=2)[:, 1]
        watched = logs / "watch/real.tsv"
        real = np.loadtxt(watched, skiprows=1, ndmin=2)[:, 1] if watched.exists() else [None] * len(best)
        for f, r in zip(best, real):
            rows.append((len(rows), n, round(float(f), 2), "" if r is None else round(float(r), 2)))
    return rows


def real_drive(agent, seed, max_steps, steps):
    """The first `steps` steps of `agent` on track `seed`: its (96, 96, 3) observations (the
    first is the reset's), its rewards, and its LSTM state (h, c), each (1, H), as it saw each
    observation (before acting on it: what it had read of the drive until then)."""
    observations, states = [], []

    def seen(obs):
        observations.append(obs[0])
        states.append(tuple(x[0].clone() for x in agent.state))

    with SingleEnv(max_steps) as env:
        (real,) = drive(
            env, agent, [seed], 1, record=True, on_step=seen, stop=lambda: len(observations) > steps
        )
    return observations, real.rewards, states


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.dream
    last = len(params.iterate.rounds)  # the last round's M and C (0: the mdnrnn and controller stages')
    rows = generations(last)  # first: a missing CMA-ES log stops the stage before it writes anything
    world_model = load_world_model(params.vae.z_dim, last)
    agent = load_agent(*world_model, device=resolve_device(params.device), round=last)
    timer = Timer("dream")
    seed = track_seeds("dream", 1)[0]
    observations, real_rewards, states = real_drive(
        agent, seed, params.env.max_steps, cfg.start_step + cfg.steps
    )
    # start after the zoom-in animation of the first frames, where the car is already on the road
    start = min(cfg.start_step, len(observations) - 1)
    dream, rewards, dones = dream_rollout(
        agent.vae,
        agent.mdnrnn,
        agent.controller,
        prepare_frame(observations[start]),
        steps=cfg.steps,
        tau=cfg.temperature,
        seed=params.seed,
        # an M trained on whole episodes dreams on from the driver's own state (as dream mode starts)
        state=states[start] if params.mdnrnn.carry_state else None,
    )
    real = observations[start : start + len(dream)]
    real += [real[-1]] * (len(dream) - len(real))  # an episode that ended first holds its last frame
    agreement = road_agreement([prepare_frame(frame) for frame in real], dream)
    video = [side_by_side(frame, dreamt, height=VIDEO_HEIGHT) for frame, dreamt in zip(real, dream)]
    write_mp4(paths.DREAM_VIDEO, video, fps=30)
    watched = np.array([(fitness, real) for *_, fitness, real in rows if real != ""]).reshape(-1, 2)
    write_json(
        paths.DREAM_METRICS,
        {
            "seed": seed,
            "start_step": start,
            "steps": cfg.steps,
            "temperature": cfg.temperature,
            "dream_reward": round(float(np.sum(rewards)), 2),
            "real_reward": round(float(np.sum(real_rewards[start : start + cfg.steps])), 2),
            "max_done_probability": round(float(np.max(dones)), 4),
            "road_agreement": round(float(agreement.mean()), 4),
            "alike_steps": int(np.argmax(agreement < ALIKE)) if (agreement < ALIKE).any() else len(agreement),
            # over the watched generations: does the best's fitness foretell its real return?
            "generations_watched": len(watched),
            "fitness_real_correlation": (
                round(float(np.corrcoef(watched.T)[0, 1]), 3) if len(watched) > 2 else None
            ),
        },
    )
    write_tsv(GENERATIONS, ["generation", "round", "fitness", "real"], rows)
    timer.save()


if __name__ == "__main__":
    run()
