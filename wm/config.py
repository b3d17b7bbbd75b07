"""Typed, validated params: `params.yaml` is read once into one dataclass per stage group.

Every field states its type and allowed range; an unknown key, a missing key, a wrong type or
an out-of-range value raises a UserError that names the key, before a stage does any work.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import yaml

from wm.env import ACTION_NAMES, BACKENDS, SEED_BLOCK_SIZE
from wm.errors import UserError
from wm.paths import round_latents, round_models


def _p(lo=None, hi=None, choices=None):
    """A required field with an inclusive range or a set of allowed values."""
    return field(metadata={"lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class EnvConfig:
    backend: str = _p(choices=BACKENDS)
    max_steps: int = _p(1, 100_000)
    batch_size: int = _p(1, 65_536)


@dataclass(frozen=True)
class PPOConfig:
    timesteps: int = _p(1)
    backend: str = _p(choices=BACKENDS)
    n_envs: int = _p(1, 256)
    learning_rate: float = _p(1e-8, 1.0)
    n_steps: int = _p(8)
    batch_size: int = _p(2)
    n_epochs: int = _p(1, 100)
    gamma: float = _p(0.0, 1.0)
    gae_lambda: float = _p(0.0, 1.0)
    clip_range: float = _p(0.0, 1.0)
    ent_coef: float = _p(0.0, 1.0)
    eval_freq: int = _p(1)
    eval_episodes: int = _p(1, 1000)


@dataclass(frozen=True)
class PPOBaselineConfig:
    timesteps: int = _p(1)


@dataclass(frozen=True)
class CollectConfig:
    episodes: int = _p(1, 1_000_000)
    workers: int = _p(1, 256)
    policy: str = _p(choices=("ppo", "random", "mix"))
    ppo_fraction: float = _p(0.0, 1.0)
    action_noise: float = _p(0.0, 2.0)
    noise_on: list[str] = _p(choices=ACTION_NAMES)
    random_takeover: float = _p(0.0, 0.9)


@dataclass(frozen=True)
class VAEConfig:
    z_dim: int = _p(1, 4096)
    epochs: int = _p(1, 10_000)
    batch_size: int = _p(1, 65_536)
    learning_rate: float = _p(1e-8, 1.0)
    kl_tolerance: float = _p(0.0, 100.0)
    val_fraction: float = _p(0.0, 0.9)
    buffer_episodes: int = _p(1, 1_000_000)


@dataclass(frozen=True)
class EncodeConfig:
    batch_size: int = _p(1, 65_536)


@dataclass(frozen=True)
class MDNRNNConfig:
    hidden: int = _p(1, 8192)
    mixtures: int = _p(1, 64)
    mixture: str = _p(choices=("per_dim", "joint"))
    seq_len: int = _p(2, 100_000)
    batch_size: int = _p(1, 65_536)
    epochs: int = _p(1, 100_000)
    learning_rate: float = _p(1e-8, 1.0)
    grad_clip: float = _p(0.0, 1e6)
    val_fraction: float = _p(0.0, 0.9)
    buffer_episodes: int = _p(1, 1_000_000)
    carry_state: bool = _p()
    dropout: float = _p(0.0, 0.9)
    scheduled_sampling: float = _p(0.0, 1.0)


Z_INPUTS = ("mean", "sample")  # what the controller reads of the VAE (wm.controller)


@dataclass(frozen=True)
class ControllerConfig:
    mode: str = _p(choices=("real", "dream"))
    hidden: int = _p(0, 4096)
    z: str = _p(choices=Z_INPUTS)
    components: int = _p(0, 100_000)
    population: int = _p(2, 100_000)
    rollouts: int = _p(1, 100_000)
    race: int = _p(0, 100_000)
    generations: int = _p(1, 1_000_000)
    sigma0: float = _p(1e-6, 100.0)
    dream_steps: int = _p(1, 100_000)
    dream_temperature: float = _p(0.01, 10.0)
    dream_starts: str = _p(choices=("line", "along"))
    finalists: int = _p(0, 1000)
    select_tracks: int = _p(1, 100_000)
    select_backend: str = _p(choices=BACKENDS)
    watch_tracks: int = _p(0, 1000)
    workers: int = _p(1, 256)


EVALUATE_POLICIES = (  # the rows of metrics/eval.json (stages/evaluate.py)
    "controller",
    "controller_z",
    "controller_colour",
    "controller_bars",
    "ppo",
    "ppo_baseline",
    "random",
    "controller_envpool",
)


@dataclass(frozen=True)
class EvaluateConfig:
    episodes: int = _p(1, 100_000)
    workers: int = _p(1, 256)
    policies: list[str] = _p(choices=EVALUATE_POLICIES)


@dataclass(frozen=True)
class DreamConfig:
    start_step: int = _p(0, 100_000)
    steps: int = _p(1, 100_000)
    temperature: float = _p(0.01, 10.0)


@dataclass(frozen=True)
class RoundConfig:
    models: str = _p()  # where the models the round starts from are (wm.paths.round_models)
    data: str = _p()  # and the latents it adds its new episodes to (wm.paths.round_latents)


@dataclass(frozen=True)
class IterateConfig:
    episodes: int = _p(1, 1_000_000)
    action_noise: float = _p(0.0, 2.0)
    noise_on: list[str] = _p(choices=ACTION_NAMES)
    mdnrnn_epochs: int = _p(1, 100_000)
    generations: int = _p(1, 1_000_000)
    rounds: dict[str, RoundConfig] = _p()
    agent: str = _p()


@dataclass(frozen=True)
class Params:
    seed: int = _p(0, 2**31 - 1)
    device: str = _p(choices=("auto", "cpu", "cuda", "mps"))
    threads: int = _p(1, 1024)
    env: EnvConfig = _p()
    ppo: PPOConfig = _p()
    ppo_baseline: PPOBaselineConfig = _p()
    collect: CollectConfig = _p()
    vae: VAEConfig = _p()
    encode: EncodeConfig = _p()
    mdnrnn: MDNRNNConfig = _p()
    controller: ControllerConfig = _p()
    evaluate: EvaluateConfig = _p()
    dream: DreamConfig = _p()
    iterate: IterateConfig = _p()


def _build(cls, raw, where, source):
    """Build dataclass `cls` from the mapping `raw`, validating every key; `where` is its dotted path."""
    prefix = f"{where}." if where else ""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {where or 'top level'} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            raise UserError(f"{source}: missing key {key}")
        value, kind = raw[name], hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, key, source)
            continue
        if get_origin(kind) is list:
            if not isinstance(value, list) or not value:
                raise UserError(f"{source}: {key} must be a non-empty list, got {value!r}")
            (item_kind,) = get_args(kind)
            values[name] = [_check(key, item, item_kind, f.metadata, source) for item in value]
            if len(set(value)) < len(value):
                raise UserError(f"{source}: {key} lists an item twice: {value!r}")
            continue
        if get_origin(kind) is dict:
            if not isinstance(value, dict):
                raise UserError(f"{source}: {key} must be a mapping, got {value!r}")
            key_kind, value_kind = get_args(kind)
            for k in value:
                if not isinstance(k, key_kind):
                    raise UserError(
                        f'{source}: {key}: key {k!r} must be quoted ("{k}"): DVC makes no stages of it'
                    )
            values[name] = {k: _build(value_kind, v, f"{key}.{k}", source) for k, v in value.items()}
            continue
        values[name] = _check(key, value, kind, f.metadata, source)
    return cls(**values)


def _check(key, value, kind, rules, source):
    """Return `value` as type `kind` if it is of that type and within `rules`, else raise."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise UserError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise UserError(f"{source}: {key} must be finite, got {value!r}")
    lo, hi, choices = rules.get("lo"), rules.get("hi"), rules.get("choices")
    if choices is not None and value not in choices:
        raise UserError(f"{source}: {key} must be one of {', '.join(choices)}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(
            f"{source}: {key} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}"
        )
    return value


def _cross_check(params, source):
    """Constraints that span several keys."""
    if params.ppo.batch_size > params.ppo.n_steps * params.ppo.n_envs:
        raise UserError(
            f"{source}: ppo.batch_size ({params.ppo.batch_size}) must be <= "
            f"ppo.n_steps * ppo.n_envs ({params.ppo.n_steps * params.ppo.n_envs})"
        )
    if params.collect.random_takeover and params.collect.policy != "mix":
        raise UserError(
            f"{source}: collect.random_takeover ({params.collect.random_takeover}) needs "
            f"collect.policy: mix (the random policy takes over in PPO's tracks), not {params.collect.policy}"
        )
    c = params.controller
    if c.generations * c.rollouts + c.select_tracks > SEED_BLOCK_SIZE:
        raise UserError(
            f"{source}: controller.generations * controller.rollouts + controller.select_tracks "
            f"must be <= {SEED_BLOCK_SIZE} (the controller's block of track seeds)"
        )
    if c.race and (c.race >= c.rollouts or c.mode != "real"):
        raise UserError(
            f"{source}: controller.race ({c.race}) must be 0 or, in mode real, less than "
            f"controller.rollouts ({c.rollouts})"
        )
    it = params.iterate
    if params.collect.episodes + len(it.rounds) * it.episodes > SEED_BLOCK_SIZE:
        raise UserError(
            f"{source}: collect.episodes + iterate.episodes per round must be <= {SEED_BLOCK_SIZE} "
            f"(the collect block of track seeds)"
        )
    if controller_tracks(params, len(it.rounds) + 1) > SEED_BLOCK_SIZE:
        raise UserError(
            f"{source}: iterate.generations * controller.rollouts + controller.select_tracks per "
            f"round, after the controller stage's, must be <= {SEED_BLOCK_SIZE} (the controller's "
            f"block of track seeds)"
        )
    _check_rounds(it, source)
    if params.mdnrnn.seq_len > params.env.max_steps:
        raise UserError(
            f"{source}: mdnrnn.seq_len ({params.mdnrnn.seq_len}) must be <= "
            f"env.max_steps ({params.env.max_steps})"
        )


def parse_round(args, params, usage):
    """The round of the iterative procedure a stage's arguments name: none, 0 (the base stage);
    "N", round N of iterate.rounds. Anything else is a UserError showing `usage`."""
    if not args:
        return 0
    if len(args) == 1 and args[0] in params.iterate.rounds:
        return int(args[0])
    rounds = ", ".join(params.iterate.rounds) or "none in params.yaml"
    raise UserError(f"usage: {usage} (N: a round of iterate.rounds: {rounds}), got {' '.join(args)}")


def controller_tracks(params, round):
    """The first track of the controller's seed block that round `round` uses (0 for the
    controller stage, round 0): each round's generations, then its select tracks, after the
    earlier rounds'."""
    c, it = params.controller, params.iterate
    if round == 0:
        return 0
    base = c.generations * c.rollouts + c.select_tracks
    return base + (round - 1) * (it.generations * c.rollouts + c.select_tracks)


def _check_rounds(iterate, source):
    """iterate.rounds names rounds "1", "2", ... in order (quoted: DVC makes no stages of
    int keys), each starting from the previous round's models and data (dvc.yaml reads them
    there), and iterate.agent is the last round's models."""
    for k, (name, start) in enumerate(iterate.rounds.items(), 1):
        if name != str(k):
            raise UserError(f'{source}: iterate.rounds: round {k} must be named "{k}", got {name!r}')
        for key, path in (("models", round_models(k - 1)), ("data", round_latents(k - 1))):
            if getattr(start, key) != str(path):
                raise UserError(
                    f"{source}: iterate.rounds.{name}.{key} must be {path} (round {k - 1}'s, which round "
                    f"{k} starts from), got {getattr(start, key)!r}"
                )
    last = round_models(len(iterate.rounds))
    if iterate.agent != str(last):
        raise UserError(
            f"{source}: iterate.agent must be {last} (the last round's models, which evaluate and "
            f"dream use), got {iterate.agent!r}"
        )


def parse_params(raw, source="params.yaml"):
    """Validate a params mapping (as read from YAML) into a `Params`."""
    params = _build(Params, raw, "", source)
    _cross_check(params, source)
    return params


def load_params(path="params.yaml"):
    """Read and validate the params file at `path`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_params(raw, str(path))
