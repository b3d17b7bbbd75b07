"""Training data from episode and latent files: frames for the VAE, sequences for the MDN-RNN.

Both are streamed: episodes are read a group of `buffer_episodes` at a time, in a shuffled
order, the next group loading in a background thread while the current one trains, and
shuffled within the group. Memory is bounded by the group, not by the data set, so the
paper's 10,000 episodes (~120 GB of frames) train like 100.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from wm.env import ACTION_DIM
from wm.episodes import FRAME_SHAPE, load_episode, load_latents


def split_files(files, val_fraction):
    """Split episode files into (train, val) by whole episodes, so validation frames come from
    tracks the model never trained on. Keeps at least one training episode."""
    n_val = min(len(files) - 1, math.ceil(len(files) * val_fraction)) if val_fraction > 0 else 0
    return files[: len(files) - n_val], files[len(files) - n_val :]


def load_frames(files):
    """All frames of the episode files, stacked: (N, 64, 64, 3) uint8."""
    if not files:
        return np.zeros((0, *FRAME_SHAPE), dtype=np.uint8)
    return np.concatenate([load_episode(path).obs for path in files])


def stream_groups(files, load, buffer_episodes, rng=None):
    """Yield lists of `load(path)` results, `buffer_episodes` files at a time, in an order
    shuffled by `rng` (file order if None); the next group loads while the caller uses one."""
    order = list(files) if rng is None else [files[i] for i in rng.permutation(len(files))]
    groups = [order[i : i + buffer_episodes] for i in range(0, len(order), buffer_episodes)]
    if not groups:
        return

    def load_group(group):
        return [load(path) for path in group]

    with ThreadPoolExecutor(max_workers=1) as loader:
        pending = loader.submit(load_group, groups[0])
        for following in groups[1:] + [None]:
            group = pending.result()
            if following is not None:
                pending = loader.submit(load_group, following)
            yield group


def frame_batches(files, batch_size, buffer_episodes, rng=None):
    """Batches (B, 64, 64, 3) uint8 of every frame of `files`, streamed; shuffled if `rng`."""
    for group in stream_groups(files, lambda path: load_episode(path).obs, buffer_episodes, rng):
        frames = np.concatenate(group)
        order = np.arange(len(frames)) if rng is None else rng.permutation(len(frames))
        for start in range(0, len(frames), batch_size):
            yield frames[order[start : start + batch_size]]


def sequence_batches(files, z_dim, seq_len, batch_size, buffer_episodes, rng, shuffle=True):
    """Batches of MDN-RNN training sequences (see make_sequences) from latent `files`, streamed;
    z is re-sampled from (mu, logvar) with `rng`, so each epoch sees fresh z."""
    load = lambda path: load_latents(path, z_dim)  # noqa: E731
    for group in stream_groups(files, load, buffer_episodes, rng if shuffle else None):
        sequences = make_sequences(group, seq_len, rng)
        n = len(sequences["z"])
        order = rng.permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            yield {key: value[order[start : start + batch_size]] for key, value in sequences.items()}


def episode_chunks(files, z_dim, seq_len, batch_size, buffer_episodes, rng, shuffle=True):
    """Batches of whole episodes cut, in order, into chunks of at most `seq_len` steps, for an
    MDN-RNN that carries its LSTM state from one chunk to the next (truncated backpropagation
    through time), so it learns the states of a whole episode, not only of its first `seq_len`
    steps. Yields (chunk, first): chunk a dict of arrays as make_sequences' (for up to
    `batch_size` episodes, padded and masked to the longest), first True where the episodes
    start (the state resets there). z is re-sampled from (mu, logvar) with `rng`; when shuffled
    the first chunk has a random length in [1, seq_len], so chunk boundaries move between epochs."""
    load = lambda path: load_latents(path, z_dim)  # noqa: E731
    for group in stream_groups(files, load, buffer_episodes, rng if shuffle else None):
        order = rng.permutation(len(group)) if shuffle else np.arange(len(group))
        for start in range(0, len(group), batch_size):
            episodes = pad_episodes([group[i] for i in order[start : start + batch_size]], rng)
            steps = episodes["action"].shape[1]
            head = int(rng.integers(1, seq_len + 1)) if shuffle else seq_len
            bounds = [0, *range(head, steps, seq_len), steps]
            for a, b in zip(bounds, bounds[1:]):
                chunk = {key: value[:, a:b] for key, value in episodes.items() if key != "z"}
                yield {"z": episodes["z"][:, a : b + 1], **chunk}, a == 0


def pad_episodes(latents, rng):
    """Whole latent episodes, z drawn from N(mu, exp(logvar)) with `rng`, padded to the longest:
    a dict of arrays as make_sequences' with L the longest episode's steps."""
    return make_sequences(latents, max(len(e.action) for e in latents), rng, whole=True)


def make_sequences(latents, seq_len, rng, sample=True, whole=False):
    """Cut episodes into fixed-length training sequences for the MDN-RNN.

    Each episode's z is drawn from N(mu, exp(logvar)) (fresh each call when `sample`, else mu),
    then cut into windows of `seq_len` steps from a random offset (the steps before it wait for
    another call; from step 0 if `whole`); the last, shorter window is padded and masked.
    Returns a dict of arrays:
        z (N, L+1, Z), action (N, L, 3), reward (N, L), done (N, L), mask (N, L) bool.
    """
    z_dim = latents[0].mu.shape[1]
    windows = []
    for episode in latents:
        z = episode.mu
        if sample:
            z = z + np.exp(0.5 * episode.logvar) * rng.standard_normal(z.shape, dtype=np.float32)
        steps = len(episode.action)
        # a random offset per call, so that every step is seen at every window position over epochs
        offset = int(rng.integers(0, seq_len)) if steps > seq_len and not whole else 0
        for start in range(offset, steps, seq_len):
            end = min(start + seq_len, steps)
            windows.append(
                (
                    z[start : end + 1],
                    episode.action[start:end],
                    episode.reward[start:end],
                    episode.done[start:end],
                )
            )
    n = len(windows)
    batch = {
        "z": np.zeros((n, seq_len + 1, z_dim), np.float32),
        "action": np.zeros((n, seq_len, ACTION_DIM), np.float32),
        "reward": np.zeros((n, seq_len), np.float32),
        "done": np.zeros((n, seq_len), np.float32),
        "mask": np.zeros((n, seq_len), bool),
    }
    for i, (z, action, reward, done) in enumerate(windows):
        length = len(action)
        batch["z"][i, : length + 1] = z
        batch["action"][i, :length] = action
        batch["reward"][i, :length] = reward
        batch["done"][i, :length] = done
        batch["mask"][i, :length] = True
    return batch
