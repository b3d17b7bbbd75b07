"""How the MDN-RNN's dream scores driving, against the real env: what a dream-trained controller
can trust. In a workspace with data/latents, models/ and params.yaml:

    python -m tools.dream_check [--dreams 64] [--out reports/dream_check.json]

1. Teacher-forced on the collected episodes (data/latents, their real frames and actions): per
   episode, the sum of the reward head's predictions against the real return; per step, the
   predicted reward where the car earned a tile (real reward > 0) and where it did not; the
   done head's probability at the real last step and before it.
2. Free-running: the trained z+h controller (models/controller.pt, a real-env controller) and a
   controller of zeros (no steering, gas 0.5) each drive `--dreams` dreams of `env.max_steps`
   steps from real starts at `controller.dream_temperature`, as dream mode scores candidates:
   a dream that ranks the good driver far above the idle one is one CMA-ES can learn from.
   (The z+h controller's real return: metrics/eval.json.) `--start-step 50` starts every
   dream at the start line (the end of the zoom-in), where a real drive begins; `--warm` starts
   them with the LSTM state read from the episode up to there, as a driver's is (as dream mode
   does for an M trained with mdnrnn.carry_state).

3. Ranking: the candidates of the real-env CMA-ES run (metrics/controller/fitness.tsv: every
   candidate's real fitness; CMA-ES is seeded, so replaying its tells asks the same candidates
   again) each drive `--dreams` dreams from the same starts; the Spearman correlation of their
   dream scores with their real fitness says how well the dream ranks controllers, which is
   all CMA-ES asks of it.

Both with `--taus` and `--steps` lists: the report has one entry per pair.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tools.finalists import replay
from tools.levers import read_fitness
from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.dream import dream_returns, dream_starts, dream_steps, warm_states
from wm.env import ZOOM_STEPS
from wm.episodes import list_files, load_latents
from wm.errors import main
from wm.world_model import load_agent, load_world_model


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dreams", type=int, default=64)
    parser.add_argument("--taus", help="comma-separated temperatures (default: controller.dream_temperature)")
    parser.add_argument("--steps", help="comma-separated dream lengths (default: env.max_steps)")
    parser.add_argument(
        "--start-step",
        type=int,
        help="dreams start at this step of each episode (default: dream mode's starts)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="dreams start with the LSTM state read from the episode up to the start",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    params = load_params()
    use_threads(params.threads)
    vae, mdnrnn = load_world_model(params.vae.z_dim)
    agent = load_agent(vae, mdnrnn, inputs="zh")
    loaded = [load_latents(path, vae.z_dim) for path in list_files(paths.LATENTS, "latent")]
    report = {"teacher_forced": teacher_forced(mdnrnn, loaded), "replayed": {}, "dreams": {}}
    taus = [float(t) for t in args.taus.split(",")] if args.taus else [params.controller.dream_temperature]
    lengths = [int(n) for n in args.steps.split(",")] if args.steps else [params.env.max_steps]
    for tau in taus:
        for steps in lengths:
            for warm in (True, False):
                key = f"tau {tau}, {steps} steps, {'warm' if warm else 'cold'} h"
                report["replayed"][key] = replayed(mdnrnn, loaded, steps=steps, tau=tau, warm=warm)
    state = None  # the LSTM's state at the starts: zeros unless --warm
    if args.start_step is None:  # as dream mode draws them: every 25th step after the zoom-in
        starts, states = dream_starts(mdnrnn, vae.z_dim, warm=args.warm, along=True)
        generator = torch.Generator().manual_seed(params.seed)
        pick = torch.randint(len(starts), (args.dreams,), generator=generator)
        z0 = starts[pick]
        if states is not None:
            state = tuple(x[pick] for x in states)
    else:  # the same step of each episode, e.g. ZOOM_STEPS: the start line, as a real drive begins
        chosen = [loaded[i % len(loaded)] for i in range(args.dreams)]
        z0 = torch.from_numpy(np.stack([latents.mu[args.start_step] for latents in chosen]))
        if args.warm:
            state = warm_states(mdnrnn, chosen, args.start_step)
    controller = agent.controller
    candidates, real_fitness = real_candidates(params, controller.size)
    report["dreams"]["ranked_candidates"] = 0 if candidates is None else len(candidates)
    for tau in taus:
        for steps in lengths:
            scores = {}
            for name, weights in (("controller", controller.params), ("zeros", np.zeros(controller.size))):
                batch = np.repeat(np.asarray(weights, np.float32)[None], args.dreams, axis=0)
                returns = dream_returns(
                    mdnrnn,
                    controller,
                    batch,
                    z0,
                    steps=steps,
                    tau=tau,
                    generator=torch.Generator().manual_seed(1),
                    state=state,
                )
                scores[name] = summary(returns.numpy())
            if candidates is not None:
                dreamt = dream_returns(
                    mdnrnn,
                    controller,
                    np.repeat(candidates, args.dreams, axis=0),
                    z0.repeat(len(candidates), 1),
                    steps=steps,
                    tau=tau,
                    generator=torch.Generator().manual_seed(1),
                    state=None if state is None else tuple(x.repeat(len(candidates), 1) for x in state),
                ).numpy()
                scores["rank_correlation_with_real"] = spearman(
                    dreamt.reshape(len(candidates), args.dreams).mean(1), real_fitness
                )
            report["dreams"][f"tau {tau}, {steps} steps"] = scores
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


@torch.inference_mode()
def teacher_forced(mdnrnn, episodes):
    real_returns, predicted_returns, tile, no_tile, done_last, done_before = [], [], [], [], [], []
    for latents in episodes:
        z = torch.from_numpy(latents.mu[:-1])[None]
        action = torch.from_numpy(latents.action)[None]
        prediction, _ = mdnrnn(z, action)
        reward = prediction.reward[0].numpy()
        done = torch.sigmoid(prediction.done_logit[0]).numpy()
        real_returns.append(float(latents.reward.sum()))
        predicted_returns.append(float(reward.sum()))
        tile.append(reward[latents.reward > 0])
        no_tile.append(reward[latents.reward <= 0])
        done_last.append(float(done[-1]))
        done_before.append(float(done[:-1].mean()))
    real, predicted = np.array(real_returns), np.array(predicted_returns)
    tile, no_tile = np.concatenate(tile), np.concatenate(no_tile)
    return {
        "episodes": len(real),
        "real_return": summary(real),
        "predicted_return": summary(predicted),
        "correlation": round(float(np.corrcoef(real, predicted)[0, 1]), 3),
        "reward_on_tile_steps": summary(tile),
        "reward_on_other_steps": summary(no_tile),
        "done_probability_last_step": round(float(np.mean(done_last)), 3),
        "done_probability_before": round(float(np.mean(done_before)), 4),
    }


@torch.inference_mode()
def replayed(mdnrnn, episodes, *, steps, tau, warm, start=ZOOM_STEPS):
    """The collected latent `episodes`' own actions replayed in the dream from step `start` for
    `steps` steps (z sampled at `tau`, not read from the episode): the predicted reward summed
    against the real one over the same steps. `warm`: the LSTM state comes from reading the
    episode up to `start` (as a driving agent's would); otherwise it starts at zero, as dreams do."""
    long_enough = [e for e in episodes if len(e.action) >= start + steps]
    if not long_enough:
        return {"episodes": 0}
    z0 = torch.from_numpy(np.stack([e.mu[start] for e in long_enough]))  # (B, Z)
    actions = np.stack([e.action[start : start + steps] for e in long_enough])  # (B, steps, A)
    recorded = iter(torch.from_numpy(actions).unbind(1))
    state = warm_states(mdnrnn, long_enough, start) if warm else None
    dream = dream_steps(
        mdnrnn,
        lambda z, h: next(recorded),  # the whole batch of episodes, one recorded step at a time
        z0,
        steps=steps,
        tau=tau,
        generator=torch.Generator().manual_seed(0),
        state=state,
    )
    predicted = sum(prediction.reward[:, 0] for _, prediction in dream)
    real = [float(e.reward[start : start + steps].sum()) for e in long_enough]
    real, predicted = np.array(real), predicted.numpy()
    return {
        "real": summary(real),
        "predicted": summary(predicted),
        "correlation": round(float(np.corrcoef(real, predicted)[0, 1]), 3),
    }


def real_candidates(params, size, fitness_file=paths.CONTROLLER_METRICS["zh"] / "fitness.tsv"):
    """Every candidate the real-env CMA-ES run scored, (N, size), and its real fitness (N,): its
    tells replayed from `fitness_file` (None, None without one, or after a dream-mode run)."""
    if not fitness_file.is_file() or params.controller.mode != "real":
        return None, None
    fitness, cfg = read_fitness(fitness_file), params.controller
    _, candidates = replay(
        fitness, size, population=cfg.population, sigma0=cfg.sigma0, seed=params.seed, finalists=0
    )
    return candidates, fitness.ravel()


def spearman(a, b):
    """Spearman's rank correlation of two (N,) arrays (ties broken by order)."""
    ranks = [np.argsort(np.argsort(x)).astype(np.float64) for x in (a, b)]
    return round(float(np.corrcoef(*ranks)[0, 1]), 3)


def summary(values):
    values = np.asarray(values, np.float64)
    return {"mean": round(float(values.mean()), 2), "std": round(float(values.std()), 2), "n": len(values)}


if __name__ == "__main__":
    run()
