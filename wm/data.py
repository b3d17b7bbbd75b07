"""Training data from episode and latent files: frames for the VAE, sequences for the MDN-RNN."""
import math

import numpy as np

from wm.episodes import load_episode, load_latents


def split_files(files, val_fraction):
    """Split episode files into (train, val) by whole episodes, so validation frames come from
    tracks the model never trained on. Keeps at least one training episode."""
    n_val = min(len(files) - 1, math.ceil(len(files) * val_fraction)) if val_fraction > 0 else 0
    return files[: len(files) - n_val], files[len(files) - n_val:]


def load_frames(files):
    """All frames of the episode files, stacked: (N, 64, 64, 3) uint8."""
    if not files:
        return np.zeros((0, 64, 64, 3), dtype=np.uint8)
    return np.concatenate([load_episode(path).obs for path in files])


def make_sequences(latents, seq_len, rng, sample=True):
    """Cut episodes into fixed-length training sequences for the MDN-RNN.

    Each episode's z is drawn from N(mu, exp(logvar)) (fresh each call when `sample`, else mu),
    then cut into windows of `seq_len` steps from a random offset (the steps before it wait for
    another call); the last, shorter window is padded and masked. Returns a dict of arrays:
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
        offset = int(rng.integers(0, seq_len)) if steps > seq_len else 0
        for start in range(offset, steps, seq_len):
            end = min(start + seq_len, steps)
            windows.append((z[start:end + 1], episode.action[start:end], episode.reward[start:end],
                            episode.done[start:end]))
    n = len(windows)
    batch = {"z": np.zeros((n, seq_len + 1, z_dim), np.float32),
             "action": np.zeros((n, seq_len, 3), np.float32),
             "reward": np.zeros((n, seq_len), np.float32),
             "done": np.zeros((n, seq_len), np.float32),
             "mask": np.zeros((n, seq_len), bool)}
    for i, (z, action, reward, done) in enumerate(windows):
        length = len(action)
        batch["z"][i, : length + 1] = z
        batch["action"][i, :length] = action
        batch["reward"][i, :length] = reward
        batch["done"][i, :length] = done
        batch["mask"][i, :length] = True
    return batch


def load_all_latents(files, z_dim):
    return [load_latents(path, z_dim) for path in files]
