"""The paper's C model: a linear map from [z, h] to an action, its parameters a flat vector
that CMA-ES evolves.

    a = tanh(W [z, h] + b), W: (3, Z+H), b: (3,)  ->  (Z+H)*3 + 3 parameters
    steer = a0 in [-1, 1], gas = (a1 + 1) / 2 in [0, 1], brake = max(a2, 0) in [0, 1]

The brake is clipped rather than rescaled, as in the paper's code: a controller near zero
(CMA-ES's start) then drives at half throttle without braking, and explores the track.
"""
import numpy as np
import torch

ACTION_DIM = 3


def n_params(z_dim, h_dim):
    return (z_dim + h_dim) * ACTION_DIM + ACTION_DIM


class Controller:
    def __init__(self, z_dim, h_dim, params=None):
        self.z_dim, self.h_dim = z_dim, h_dim
        size = n_params(z_dim, h_dim)
        params = np.zeros(size, dtype=np.float32) if params is None else np.asarray(params, np.float32)
        if params.shape != (size,):
            raise ValueError(f"controller for z_dim={z_dim}, h_dim={h_dim} needs {size} params, "
                             f"got {params.shape}")
        self.weight = params[:-ACTION_DIM].reshape(ACTION_DIM, z_dim + h_dim)  # (3, Z+H)
        self.bias = params[-ACTION_DIM:]  # (3,)

    @property
    def config(self):
        return {"z_dim": self.z_dim, "h_dim": self.h_dim}

    @property
    def params(self):
        """The flat (n_params,) vector: W row-major, then b."""
        return np.concatenate([self.weight.ravel(), self.bias])

    def act(self, z, h):
        """z: (B, Z), h: (B, H) float -> actions (B, 3) float32 within the env's bounds."""
        x = np.concatenate([z, h], axis=-1)
        return actions_from(np.tanh(x @ self.weight.T + self.bias))


def actions_from(a):
    """Controller outputs a (B, 3) in [-1, 1] -> env actions (B, 3): steer, gas, brake.
    Works on numpy arrays (float32 out) and on torch tensors (for batched agents and dreams)."""
    columns = [a[:, 0], (a[:, 1] + 1) / 2, a[:, 2].clip(min=0)]
    if isinstance(a, torch.Tensor):
        return torch.stack(columns, dim=-1)
    return np.stack(columns, axis=-1).astype(np.float32)


def save_controller(path, controller):
    from wm.io import save_checkpoint

    save_checkpoint(path, controller.config, {"params": torch.from_numpy(controller.params)})


def load_controller(path, z_dim, h_dim):
    """Load a controller saved by `save_controller`; one made for another z or h width is an error."""
    from wm.errors import UserError
    from wm.io import load_checkpoint

    checkpoint = load_checkpoint(path)
    want = {"z_dim": z_dim, "h_dim": h_dim}
    if checkpoint["config"] != want:
        raise UserError(f"{path}: controller is for {checkpoint['config']}, but the world model has "
                        f"{want}; rerun the controller stage")
    return Controller(z_dim, h_dim, checkpoint["state_dict"]["params"].numpy())
