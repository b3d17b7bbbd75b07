"""Episode and latent files: the on-disk contract between collect, vae, encode and mdnrnn.

Episode file (`data/rollouts/episode_XXXXX.npz`, compressed):
    obs (T+1, 64, 64, 3) uint8, action (T, 3) float32, reward (T,) float32,
    terminated (), truncated () bool, seed () int64.
Latent file (`data/latents/episode_XXXXX.npz`, uncompressed):
    mu, logvar (T+1, Z) float32, action (T, 3) float32, reward (T,) float32, done (T,) bool.
A missing, truncated or corrupt file raises a UserError that names the file.
"""

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wm.env import ACTION_DIM, FRAME_SIZE
from wm.errors import UserError
from wm.io import atomic_path

FRAME_SHAPE = (FRAME_SIZE, FRAME_SIZE, 3)  # a model frame, uint8 RGB


@dataclass
class Episode:
    obs: np.ndarray  # (T+1, 64, 64, 3) uint8
    action: np.ndarray  # (T, 3) float32
    reward: np.ndarray  # (T,) float32
    terminated: bool
    truncated: bool
    seed: int

    @property
    def done(self):
        """(T,) bool: True only at the last step, and only if the episode really ended there."""
        done = np.zeros(len(self.action), dtype=bool)
        if self.terminated and len(done):
            done[-1] = True
        return done


@dataclass
class Latents:
    mu: np.ndarray  # (T+1, Z) float32
    logvar: np.ndarray  # (T+1, Z) float32
    action: np.ndarray  # (T, 3) float32
    reward: np.ndarray  # (T,) float32
    done: np.ndarray  # (T,) bool


def episode_name(index):
    return f"episode_{index:05d}.npz"


def _read_npz(path, keys):
    """Read `keys` from an .npz into a dict, turning every failure into an error naming `path`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        # our own handle: np.load leaves its file open when the archive is damaged
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise UserError(f"{path}: corrupt file, missing array {missing[0]!r}")
            return {k: data[k] for k in keys}
    except UserError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise UserError(f"{path}: corrupt or truncated file ({type(err).__name__}: {err})") from None


def _check_shape(path, name, array, shape, dtype):
    """Raise naming `path` unless `array` has `dtype` and matches `shape` (None = any length)."""
    ok = (
        array.dtype == dtype
        and array.ndim == len(shape)
        and all(want is None or got == want for got, want in zip(array.shape, shape))
    )
    if not ok:
        raise UserError(
            f"{path}: corrupt file, {name} has shape {array.shape} {array.dtype}, "
            f"expected {tuple('T' if s is None else s for s in shape)} {np.dtype(dtype)}"
        )


def _npz(arrays, compress):
    """The bytes of an .npz (what np.load reads) of `arrays`; deflate level 1 when `compress`:
    twice as fast as np.savez_compressed's level 6 for ~40% more bytes, as frames are written
    while the env waits. The same arrays always give the same bytes (zip entries carry no time)."""
    mode = (
        dict(compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        if compress
        else dict(compression=zipfile.ZIP_STORED)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", **mode) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def episode_npz(episode):
    """An episode file's bytes: what `save_episode` writes (a Ray actor makes them, the driver
    writes them; wm.executor)."""
    return _npz(
        {
            "obs": episode.obs,
            "action": episode.action,
            "reward": episode.reward,
            "terminated": np.bool_(episode.terminated),
            "truncated": np.bool_(episode.truncated),
            "seed": np.int64(episode.seed),
        },
        compress=True,
    )


def save_episode(path, episode):
    write_file(path, episode_npz(episode))


def write_file(path, data):
    """Write the bytes of an episode or latent file to `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_episode(path):
    data = _read_npz(path, ("obs", "action", "reward", "terminated", "truncated", "seed"))
    _check_shape(path, "obs", data["obs"], (None, *FRAME_SHAPE), np.uint8)
    _check_shape(path, "action", data["action"], (None, ACTION_DIM), np.float32)
    _check_shape(path, "reward", data["reward"], (None,), np.float32)
    steps = len(data["action"])
    if len(data["obs"]) != steps + 1 or len(data["reward"]) != steps:
        raise UserError(
            f"{path}: corrupt file, {len(data['obs'])} frames for {steps} actions "
            f"and {len(data['reward'])} rewards (expected T+1, T, T)"
        )
    return Episode(
        obs=data["obs"],
        action=data["action"],
        reward=data["reward"],
        terminated=bool(data["terminated"]),
        truncated=bool(data["truncated"]),
        seed=int(data["seed"]),
    )


def save_latents(path, latents):
    write_file(
        path,
        _npz(
            {
                "mu": latents.mu,
                "logvar": latents.logvar,
                "action": latents.action,
                "reward": latents.reward,
                "done": latents.done,
            },
            compress=False,
        ),
    )


def load_latents(path, z_dim=None):
    """Load a latent file; if `z_dim` is given, a file of another width is an error."""
    data = _read_npz(path, ("mu", "logvar", "action", "reward", "done"))
    width = data["mu"].shape[-1] if data["mu"].ndim == 2 else None
    _check_shape(path, "mu", data["mu"], (None, z_dim or width), np.float32)
    _check_shape(path, "logvar", data["logvar"], data["mu"].shape, np.float32)
    _check_shape(path, "action", data["action"], (len(data["mu"]) - 1, ACTION_DIM), np.float32)
    _check_shape(path, "reward", data["reward"], (len(data["mu"]) - 1,), np.float32)
    _check_shape(path, "done", data["done"], (len(data["mu"]) - 1,), np.bool_)
    return Latents(**data)


def episode_length(path):
    """Number of steps T of an episode or latent file, read from its `action` header only (no
    decompression): a cheap check of every file before a long run. Raises naming the file."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("action.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(f)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise UserError(f"{path}: corrupt or truncated file ({type(err).__name__}: {err})") from None
    return shape[0]


def list_files(directory, what):
    """Sorted episode files in `directory`; an empty or missing directory is an error."""
    directory = Path(directory)
    files = sorted(directory.glob("episode_*.npz"))
    if not files:
        raise UserError(f"{directory}: no {what} files (episode_*.npz); run the stage that makes them")
    return files
