"""CMA-ES's real-env evaluation on the local path and on Ray, side by side in one run, and a model
of the paper profile's wall time on more CPUs:

    python -m tools.ray_cluster --isolated --nodes 2 -- python -m tools.bench_ray --out reports/scaling.json

(on a real cluster: `WM_EXECUTOR=ray RAY_ADDRESS=... python -m tools.bench_ray`). One generation
is what the `controller` stage scores: `population` x `rollouts` episodes of the world-model
agent (VAE + MDN-RNN sized from params.yaml, each episode its own controller, CMA-ES's first
generation around zero with sigma0) in batches of env.batch_size on env.backend, each with
max_steps steps at most. Measured, each the median of `--repeats` generations:

- local: the in-process path (wm.executor.LocalExecutor, `controller.workers` env threads);
- processes 2: wm.executor.ProcessExecutor, 2 worker processes of 1 CPU each on this machine;
- ray 1 / ray 2: RayExecutor with 1 and 2 actors of 1 CPU each (one per node on the test cluster);
- per-task overhead: the round trip of an empty actor call (median of 200);
- bytes per generation: the batches sent (pickled seeds and controllers) and the Rollouts returned,
  plus the agent, sent once per run.

From these: parallel efficiency from 1 to 2 actors, Ray's overhead against the local path on the
same CPUs, and the modelled seconds per generation on N 1-CPU actors,
ceil(batches / N) x (seconds per batch on one actor) + batches x overhead / N, and the whole
paper profile (2,000 generations of 64 x 16) on 16 and 64 CPUs. Not a test.
"""

import argparse
import math
import pickle
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from wm.config import load_params
from wm.controller import Controller
from wm.env import track_seeds
from wm.errors import main
from wm.executor import LocalExecutor, ProcessExecutor, RayExecutor, batches
from wm.io import write_json
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE
from wm.world_model import WorldModelAgent

PAPER = {"population": 64, "rollouts": 16, "generations": 2000}  # the paper's CMA-ES (DESIGN.md)
MODEL_CPUS = (16, 64)


def generation(executor, agent, candidates, generation, *, batch_size, rollouts):
    """(seconds, env steps) of one CMA-ES generation's scoring, as RealScore does it (every
    candidate on the generation's `rollouts` tracks)."""
    controllers = np.repeat(np.asarray(candidates, np.float32), rollouts, axis=0)
    seeds = track_seeds("controller", rollouts, start=generation * rollouts)
    start = time.perf_counter()
    driven = executor.drive(agent, seeds * len(candidates), batch_size, controllers=controllers)
    return time.perf_counter() - start, sum(r.steps for r in driven)


def task_overhead(executor, calls=200):
    actor = executor.workers[0]
    executor.ray.get(actor.node.remote())
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        executor.ray.get(actor.node.remote())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    cfg, env = params.controller, params.env
    torch.manual_seed(params.seed)
    vae = ConvVAE(params.vae.z_dim).eval()
    mdnrnn = MDNRNN(params.vae.z_dim, hidden=params.mdnrnn.hidden, mixtures=params.mdnrnn.mixtures).eval()
    controller = Controller(vae.z_dim, mdnrnn.hidden, cfg.hidden)
    agent = WorldModelAgent(vae, mdnrnn, controller)
    rng = np.random.default_rng(params.seed)
    candidates = list(rng.standard_normal((cfg.population, controller.size)) * cfg.sigma0)
    common = dict(batch_size=env.batch_size, rollouts=cfg.rollouts)

    torch.set_num_threads(params.threads)
    # the three paths take turns, generation by generation, so that a machine whose speed drifts
    # (shared hosts do) slows them alike; "ray 1" is the first actor of the two
    runs = {"local": [], "processes_2": [], "ray_1": [], "ray_2": []}
    with (
        LocalExecutor(env.backend, env.max_steps, cfg.workers) as local,
        ProcessExecutor(env.backend, env.max_steps, processes=2, threads=params.threads) as processes,
        RayExecutor(env.backend, env.max_steps, threads=params.threads, actors=2) as ray,
    ):
        both = ray.workers
        for repeat in range(args.repeats):
            runs["local"].append(generation(local, agent, candidates, repeat, **common))
            runs["processes_2"].append(generation(processes, agent, candidates, repeat, **common))
            ray.workers = both[:1]
            runs["ray_1"].append(generation(ray, agent, candidates, repeat, **common))
            ray.workers = both
            runs["ray_2"].append(generation(ray, agent, candidates, repeat, **common))
        overhead = task_overhead(ray)
    results = {name: figures(times) for name, times in runs.items()}
    results["task_overhead_ms"] = round(overhead * 1000, 2)

    # bytes moved per generation: the batches out, the Rollouts back, and the agent once per run
    episode_seeds = list(range(cfg.population * cfg.rollouts))
    controllers = np.repeat(np.asarray(candidates, np.float32), cfg.rollouts, axis=0)
    work = batches(episode_seeds, env.batch_size, controllers)
    with LocalExecutor(env.backend, env.max_steps, cfg.workers) as local:
        returned = [local.drive(agent, b.seeds, env.batch_size, controllers=b.controllers) for b in work]
    results["bytes_per_generation"] = {
        "batches_sent": sum(len(pickle.dumps(batch)) for batch in work),
        "results_returned": sum(len(pickle.dumps(rollouts)) for rollouts in returned),
    }
    results["agent_bytes_once"] = len(pickle.dumps(agent))

    one, two = (results[name]["seconds_per_generation"] for name in ("ray_1", "ray_2"))
    results["parallel_efficiency_1_to_2_actors"] = round(one / two / 2, 3)
    results["ray_2_over_local"] = round(two / results["local"]["seconds_per_generation"], 3)
    results["processes_2_over_local"] = round(
        results["processes_2"]["seconds_per_generation"] / results["local"]["seconds_per_generation"], 3
    )
    results["model"] = paper_model(one, len(work), overhead, env.batch_size)
    results["setup"] = {
        "population": cfg.population,
        "rollouts": cfg.rollouts,
        "batch_size": env.batch_size,
        "backend": env.backend,
        "max_steps": env.max_steps,
        "repeats": args.repeats,
    }
    write_json(args.out, results)
    print("| path | s per generation | env steps/s |\n|---|---|---|")
    for name in ("local", "processes_2", "ray_1", "ray_2"):
        row = results[name]
        print(f"| {name} | {row['seconds_per_generation']} | {row['env_steps_per_second']} |")
    print(
        f"efficiency 1->2 actors {results['parallel_efficiency_1_to_2_actors']}, ray 2 / local "
        f"{results['ray_2_over_local']}, task overhead {results['task_overhead_ms']} ms"
    )
    for cpus, model in results["model"].items():
        print(f"paper profile on {cpus}: {model['seconds_per_generation']} s/generation, {model['hours']} h")


def figures(runs):
    """Medians of (seconds, steps) runs, and each run's seconds."""
    seconds = statistics.median(s for s, _ in runs)
    return {
        "seconds_per_generation": round(seconds, 2),
        "env_steps_per_second": round(statistics.median(n / s for s, n in runs)),
        "each_seconds": [round(s, 2) for s, _ in runs],
    }


def paper_model(one_actor_seconds, batches_per_generation, overhead, batch_size):
    """The paper profile's time on N 1-CPU actors, from one actor's measured seconds per batch."""
    per_batch = one_actor_seconds / batches_per_generation
    paper_batches = math.ceil(PAPER["population"] * PAPER["rollouts"] / batch_size)
    model = {}
    for cpus in MODEL_CPUS:
        seconds = math.ceil(paper_batches / cpus) * per_batch + paper_batches * overhead / cpus
        model[f"{cpus}_cpus"] = {
            "seconds_per_generation": round(seconds, 1),
            "hours": round(seconds * PAPER["generations"] / 3600, 1),
        }
    return model


if __name__ == "__main__":
    run()
