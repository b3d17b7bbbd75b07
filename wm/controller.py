"""The paper's C model: a small map from [z, h] to an action, its parameters a flat vector
that CMA-ES evolves.

    linear (hidden = 0, the paper's):  a = tanh(W [z, h] + b)      (Z+H)*3 + 3 parameters
    one hidden layer (hidden = K):     a = tanh(W2 tanh(W1 x + b1) + b2)
    z only (h_dim = 0):                the same on z alone (the paper's "z only" ablations)

    steer = a0 in [-1, 1], gas = (a1 + 1) / 2 in [0, 1], brake = max(a2, 0) in [0, 1]

The brake is clipped rather than rescaled, as in the paper's code: a controller near zero
(CMA-ES's start) then drives at half throttle without braking, and explores the track.
The flat vector holds each layer's W (row-major) then its b, layer by layer.

`z` says what the controller reads of the VAE in the real env, saved with it so that every
stage drives it the way it was evolved: "mean" (the encoder's mean, deterministic) or "sample"
(mean + sigma * noise each frame, as the paper's code did; wm.world_model draws the noise).
"""

import numpy as np
import torch

from wm.config import Z_INPUTS
from wm.env import ACTION_DIM


def layer_shapes(z_dim, h_dim, hidden=0):
    """[(out, in), ...] of the controller's layers."""
    sizes = [z_dim + h_dim] + ([hidden] if hidden else []) + [ACTION_DIM]
    return [(out, inp) for inp, out in zip(sizes, sizes[1:])]


def n_params(z_dim, h_dim, hidden=0):
    return sum(out * inp + out for out, inp in layer_shapes(z_dim, h_dim, hidden))


class Controller:
    """One controller's shape and flat parameters; `batch(params)` applies many at once."""

    def __init__(self, z_dim, h_dim, hidden=0, params=None, z="mean"):
        if z not in Z_INPUTS:
            raise ValueError(f"z must be one of {Z_INPUTS}, got {z!r}")
        self.z_dim, self.h_dim, self.hidden, self.z = z_dim, h_dim, hidden, z
        self.size = n_params(z_dim, h_dim, hidden)
        self.params = self.check(np.zeros(self.size, np.float32) if params is None else params)[0]

    @property
    def config(self):
        return {"z_dim": self.z_dim, "h_dim": self.h_dim, "hidden": self.hidden, "z": self.z}

    def check(self, params):
        """params (P,) or (N, P) -> (N, P) float32, or ValueError naming the expected size."""
        params = np.atleast_2d(np.asarray(params, np.float32))
        if params.ndim != 2 or params.shape[1] != self.size:
            raise ValueError(f"controller for {self.config} needs {self.size} params, got {params.shape}")
        return params

    def batch(self, params=None):
        """The layers [(W (N, out, in), b (N, out)), ...] of N controllers, as torch tensors;
        params (P,) or (N, P), default this controller's own."""
        params = torch.from_numpy(self.check(self.params if params is None else params))
        layers, offset = [], 0
        for out, inp in layer_shapes(self.z_dim, self.h_dim, self.hidden):
            weight = params[:, offset : offset + out * inp].reshape(-1, out, inp)
            offset += out * inp
            layers.append((weight, params[:, offset : offset + out]))
            offset += out
        return layers

    def act(self, z, h=None):
        """z: (B, Z), h: (B, H) float (None for a z-only controller) -> actions (B, 3) float32."""
        x = np.concatenate([z, h], axis=-1) if self.h_dim else z
        return apply(self.batch(), torch.as_tensor(x, dtype=torch.float32)).numpy()


def apply(layers, x):
    """N controllers (layers from Controller.batch; N may be 1 for all rows) on x (B, in) -> (B, 3)
    env actions, torch."""
    for weight, bias in layers:
        x = torch.tanh(torch.einsum("bod,bd->bo", weight.expand(len(x), -1, -1), x) + bias)
    return actions_from(x)


def actions_from(a):
    """Controller outputs a (B, 3) in [-1, 1] -> env actions (B, 3): steer, gas, brake."""
    return torch.stack([a[:, 0], (a[:, 1] + 1) / 2, a[:, 2].clamp(min=0)], dim=-1)


def save_controller(path, controller):
    from wm.io import save_checkpoint

    save_checkpoint(path, controller.config, {"params": torch.from_numpy(controller.params)})


def load_controller(path, z_dim, h_dims):
    """Load a controller saved by `save_controller`. Its z width must be `z_dim` and its h width
    one of `h_dims` (0 for z only); otherwise a UserError says which stage to rerun."""
    from wm.errors import UserError
    from wm.io import load_checkpoint

    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    if config.get("z_dim") != z_dim or config.get("h_dim") not in h_dims:
        raise UserError(
            f"{path}: controller is for {config}, but the world model has z_dim={z_dim}, "
            f"h_dim in {list(h_dims)}; rerun the controller stage"
        )
    params = checkpoint["state_dict"]["params"].numpy()
    try:
        z = config.get("z", "mean")  # saved before z was a choice: the mean
        return Controller(config["z_dim"], config["h_dim"], config.get("hidden", 0), params, z)
    except ValueError as err:
        raise UserError(f"{path}: {err}; rerun the controller stage") from None


def principal_components(mean, cov, k):
    """The top `k` principal directions of the controller's inputs (their `mean` (D,) and
    covariance `cov` (D, D) over the collected data), whitened: P (k, D), so that P (x - mean)
    has unit variance in each component. Each direction's sign is fixed (its largest entry
    positive), so the same data always gives the same P."""
    values, vectors = np.linalg.eigh(np.asarray(cov, np.float64))
    order = np.argsort(values, kind="stable")[::-1][:k]
    values, vectors = values[order], vectors[:, order]
    vectors = vectors * np.sign(vectors[np.abs(vectors).argmax(0), np.arange(len(order))])
    return (vectors / np.sqrt(np.maximum(values, 1e-12))).T


class Projection:
    """CMA-ES's search space when the controller reads the top k whitened principal components
    of its inputs (`controller.components`): the first layer's weights are searched on the k
    components (out x k instead of out x D), the rest as they are. `full(params)` turns searched
    vectors into the controller's own parameters (W = W_k P, b = b_k - W_k P mean), so what is
    saved, evaluated and shipped is a plain controller; `reduced(params)` goes back (least
    squares), to go on from a saved controller."""

    def __init__(self, controller, components, mean):
        self.controller, self.p, self.mean = controller, np.asarray(components, np.float64), mean
        self.out, self.inp = layer_shapes(controller.z_dim, controller.h_dim, controller.hidden)[0]
        k = len(self.p)
        self.size = controller.size - self.out * self.inp + self.out * k

    def full(self, params):
        """(N, size) or (size,) searched vectors -> (N, controller.size) float32 parameters."""
        params = np.atleast_2d(np.asarray(params, np.float64))
        k = len(self.p)
        weight = params[:, : self.out * k].reshape(len(params), self.out, k) @ self.p  # (N, out, D)
        bias = params[:, self.out * k : self.out * (k + 1)] - weight @ self.mean
        rest = params[:, self.out * (k + 1) :]
        return np.concatenate([weight.reshape(len(params), -1), bias, rest], 1).astype(np.float32)

    def reduced(self, params):
        """A controller's (controller.size,) parameters -> the nearest (size,) searched vector."""
        params = np.asarray(params, np.float64)
        n = self.out * self.inp
        weight = params[:n].reshape(self.out, self.inp) @ np.linalg.pinv(self.p)  # (out, k)
        bias = params[n : n + self.out] + weight @ self.p @ self.mean
        return np.concatenate([weight.ravel(), bias, params[n + self.out :]])
