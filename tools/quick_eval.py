"""Mean real return of a trained controller on N validation tracks, on envpool by default (fast;
the evaluate stage is the reference, on gymnasium). For trying levers, run in a workspace with
models/ and params.yaml:

    python -m tools.quick_eval 64 [--z-only | --ppo models/ppo.pt | --round 0] [--backend gymnasium]
                                  [--block validate] [--action-noise 0.1 [--noise-on steer,gas]]
                                  [--gas-scale 1.5]

The z+h agent is the last round's of iterate.rounds (models/ without rounds), as evaluate's;
`--round N` drives round N's instead (0: the controller stage's, before any round).

(`WM_EXECUTOR=processes` or `ray` drives them elsewhere, as the stages do: wm.executor.)

The tracks come from the `validate` seed block, which no stage uses: choosing between levers on
the test tracks would make the test returns a measure of that choice, not of held-out tracks.
`--block test` gives the test tracks' returns (what evaluate reports) for a finished choice.

`--action-noise STD` drives the agent with Gaussian noise on its actions, each track's drawn from
its seed, as the rounds of the iterative procedure collect (wm.agents.Noisy); `--noise-on` the
action components it is added to (then clipped to the action space, as always).
"""

import argparse
from pathlib import Path

import numpy as np

from wm.agents import Noisy, PPOPolicy, Wrapper, noise_std
from wm.compute import use_threads
from wm.config import load_params
from wm.env import ACTION_NAMES, BACKENDS, track_seeds
from wm.errors import UserError, main
from wm.executor import batch_count, make_executor
from wm.io import write_json
from wm.world_model import load_agent, load_world_model

GAS = ACTION_NAMES.index("gas")


class GasScaled(Wrapper):
    """`policy` with its gas multiplied by `scale`, clipped to the gas's [0, 1]."""

    def __init__(self, policy, scale):
        self.policy, self.scale = policy, scale

    def reset(self, seeds):
        self.policy.reset(seeds)

    def act(self, obs):
        actions = self.policy.act(obs).copy()
        actions[:, GAS] = np.clip(actions[:, GAS] * self.scale, 0.0, 1.0)
        return actions


@main
def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=int)
    which = parser.add_mutually_exclusive_group()  # the agent driven
    which.add_argument("--z-only", action="store_true", help="models/controller_z.pt")
    which.add_argument("--ppo", type=Path, help="drive this PPO agent (deterministic) instead")
    which.add_argument("--round", type=int, help="the z+h agent of this round (default: the last)")
    parser.add_argument("--backend", choices=BACKENDS, default="envpool")
    parser.add_argument("--block", choices=("validate", "test"), default="validate")
    parser.add_argument("--out", type=Path, help="also write the returns, in seed order, to this JSON file")
    parser.add_argument("--action-noise", type=float, default=0.0, help="std of Gaussian action noise")
    parser.add_argument("--noise-on", default=",".join(ACTION_NAMES), help="the action components it is on")
    parser.add_argument("--gas-scale", type=float, default=1.0, help="multiply the agent's gas by this")
    args = parser.parse_args()
    noise_on = args.noise_on.split(",")
    if args.action_noise < 0:
        raise UserError(f"--action-noise {args.action_noise}: a standard deviation, 0 or more")
    if args.gas_scale < 0:
        raise UserError(f"--gas-scale {args.gas_scale}: a factor, 0 or more")
    if set(noise_on) - set(ACTION_NAMES):
        raise UserError(f"--noise-on {args.noise_on}: the components are {', '.join(ACTION_NAMES)}")
    params = load_params()
    rounds = len(params.iterate.rounds)
    round = rounds if args.round is None else args.round  # the z+h agent's: the last by default
    if not 0 <= round <= rounds:
        raise UserError(f"--round {round}: params.yaml has rounds 0 to {rounds} (iterate.rounds)")
    use_threads(params.threads)
    if args.ppo:
        agent = PPOPolicy(args.ppo)
    else:
        last = 0 if args.z_only else round  # controller_z has no rounds
        world_model = load_world_model(params.vae.z_dim, last)
        agent = load_agent(*world_model, inputs="z" if args.z_only else "zh", round=last)
    if args.gas_scale != 1.0:
        agent = GasScaled(agent, args.gas_scale)
    if args.action_noise:
        agent = Noisy(agent, noise_std(args.action_noise, noise_on))
    seeds = track_seeds(args.block, args.tracks)
    env = params.env
    with make_executor(
        args.backend,
        env.max_steps,
        params.evaluate.workers,
        params.threads,
        device="cpu",
        batches=batch_count(len(seeds), env.batch_size),
    ) as executor:
        returns = [r.total_reward for r in executor.drive(agent, seeds, env.batch_size, desc=args.block)]
    summary = f"mean {np.mean(returns):.1f} +- {np.std(returns):.1f}, min {np.min(returns):.1f}"
    summary += f", median {np.median(returns):.1f}, {sum(r > 900 for r in returns)} above 900"
    how = f", noise {args.action_noise} on {args.noise_on}" if args.action_noise else ""
    how += f", gas x{args.gas_scale}" if args.gas_scale != 1.0 else ""
    print(f"{args.tracks} {args.block} tracks ({args.backend}{how}): {summary}")
    if args.out:
        write_json(
            args.out,
            {
                "block": args.block,
                "backend": args.backend,
                "action_noise": {"std": args.action_noise, "on": noise_on if args.action_noise else []},
                "gas_scale": args.gas_scale,
                "seeds": seeds,
                "returns": returns,
            },
        )


if __name__ == "__main__":
    run()
