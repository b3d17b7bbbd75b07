"""Stage evaluate: the rows of evaluate.policies on the same fixed test tracks (a seed block no
training stage uses), plus a video of one real drive of the z+h controller. The rows: the
world-model controller on z and h (`controller`), the z-only one (`controller_z`), the PPO agent
of the collection (`ppo`), the PPO baseline given the world model's training time
(`ppo_baseline`), a random policy (`random`), the robustness rows below and `controller_envpool`.
The z+h controller is the last round's of the iterative procedure if params iterate.rounds
has any (iterate.agent), driving with that round's MDN-RNN; the z-only one is the
controller_z stage's. Robustness rows: the z+h controller on the same tracks seeing other
track and grass colours (`controller_colour`) or black bars on the frame's sides
(`controller_bars`), the tests of Tang et al. (2020) (wm.agents.Perturbed).

The reported returns are on gymnasium's CarRacing-v3, the reference, but for
`controller_envpool`: the z+h controller on envpool's port of the same seeds, to show how far
the faster backend's numbers can be trusted.

The rows of one env are driven as one stream of batches (wm.executor.drive_jobs), so that a
worker that finishes a row's last, smaller batch goes on with the next row. Each batch of
`env.batch_size` tracks of each row saves its returns when it and those before it are done
(JSON, in DVC's scratch directory), so a killed run resumes with the batches it had not saved:
the batches are the ones an uninterrupted run drives, so the results are the same bytes.

outs: metrics/eval.json; metrics/eval_drive.mp4
"""

import dataclasses
import json
from functools import partial

import numpy as np

from wm import paths
from wm.agents import Perturbed, build_policy
from wm.compute import use_threads
from wm.config import load_params
from wm.env import track_seeds
from wm.errors import main
from wm.executor import Job, batch_count, make_executor
from wm.io import Timer, resolve_device, run_fingerprint, write_json
from wm.rollout import drive
from wm.vector_env import SingleEnv
from wm.video import write_mp4
from wm.world_model import load_agent, load_world_model


def summary(episodes):
    """A row of eval.json from its episodes' [return, steps]."""
    returns = [round(total, 2) for total, _ in episodes]
    return {
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "min": float(np.min(returns)),
        "max": float(np.max(returns)),
        "mean_steps": float(np.mean([steps for _, steps in episodes])),
        "returns": returns,
    }


def saved_batches(path, key):
    """The batches a cut run of fingerprint `key` finished: {"row/first track": [[return, steps],
    ...]}; none from a missing or unreadable file or another run's."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved.get("batches", {}) if isinstance(saved, dict) and saved.get("key") == key else {}


@main
def run():
    params = load_params()
    use_threads(params.threads)
    cfg = params.evaluate
    last = len(params.iterate.rounds)  # the last round's M and C (0: the mdnrnn and controller stages')
    world_model = load_world_model(params.vae.z_dim, last)
    device = resolve_device(params.device)
    agent = load_agent(*world_model, device=device, round=last)
    seeds = track_seeds("test", cfg.episodes)
    policies = {  # how to make each row's policy, and its env
        "controller": (lambda: agent, "gymnasium"),
        "controller_z": (lambda: load_agent(*world_model, inputs="z", device=device), "gymnasium"),
        "controller_colour": (lambda: Perturbed(agent, "colour"), "gymnasium"),
        "controller_bars": (lambda: Perturbed(agent, "bars"), "gymnasium"),
        "ppo": (lambda: build_policy("ppo"), "gymnasium"),
        "ppo_baseline": (lambda: build_policy("ppo", ppo_path=paths.PPO_BASELINE_MODEL), "gymnasium"),
        "random": (lambda: build_policy("random"), "gymnasium"),
        "controller_envpool": (lambda: agent, "envpool"),
    }
    runs = [(name, make(), backend) for name, (make, backend) in policies.items() if name in cfg.policies]
    timer = Timer("evaluate")
    # what the run depends on: its params, its inputs, the code; saved batches of another are ignored
    run_params = {
        "threads": params.threads,
        "device": params.device,
        "env": dataclasses.asdict(params.env),
        "evaluate": dataclasses.asdict(cfg),
    }
    models = [
        paths.VAE,
        paths.round_models(last) / paths.MDNRNN.name,
        paths.round_models(last) / paths.CONTROLLER.name,
        paths.CONTROLLER_Z,
        paths.PPO_MODEL,
        paths.PPO_BASELINE_MODEL,
    ]
    key = run_fingerprint(__file__, run_params, models)
    progress = paths.PROGRESS / "evaluate.json"
    done = saved_batches(progress, key)
    if done:
        print(f"resuming evaluate: {len(done)} batches already driven ({progress})", flush=True)
    size = params.env.batch_size
    seconds = {}  # per env
    results = {"test_seeds": seeds}

    def save(names, job, start, rollouts):  # job `job`'s batch from its episode `start` is done
        done[names[job][start // size]] = [[r.total_reward, r.steps] for r in rollouts]
        write_json(progress, {"key": key, "batches": done})

    for backend in dict.fromkeys(backend for _, _, backend in runs):  # one executor at a time
        started = timer.seconds
        rows = [(name, policy) for name, policy, b in runs if b == backend]
        # per row, the batches still to drive; their seeds, re-cut by the executor, make the same
        # batches (only a row's last batch can be smaller, and it stays last)
        todo = [[s for s in range(0, len(seeds), size) if f"{name}/{s}" not in done] for name, _ in rows]
        names = [[f"{name}/{s}" for s in starts] for (name, _), starts in zip(rows, todo)]
        jobs = [
            Job(policy, [seed for s in starts for seed in seeds[s : s + size]])
            for (_, policy), starts in zip(rows, todo)
        ]
        count = sum(batch_count(len(job.seeds), size) for job in jobs)
        with make_executor(
            backend, params.env.max_steps, cfg.workers, params.threads, device=device, batches=count
        ) as executor:
            executor.drive_jobs(jobs, size, on_batch=partial(save, names), desc=f"evaluate on {backend}")
        for name, _ in rows:
            episodes = [e for s in range(0, len(seeds), size) for e in done[f"{name}/{s}"]]
            results[name] = summary(episodes)
        seconds[f"{backend}_seconds"] = round(timer.seconds - started, 1)
    with SingleEnv(params.env.max_steps, render_mode="rgb_array") as env:
        (video,) = drive(env, agent, seeds[:1], 1, render=True)
    write_mp4(paths.EVAL_VIDEO, video.renders, fps=50)
    results["video"] = {"seed": seeds[0], "return": round(video.total_reward, 2), "steps": video.steps}
    write_json(paths.EVAL_METRICS, results)
    progress.unlink(missing_ok=True)  # done: a forced rerun drives again
    timer.save(**seconds)


if __name__ == "__main__":
    run()
