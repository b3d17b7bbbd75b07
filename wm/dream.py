"""Dreaming: the controller drives inside the MDN-RNN's hallucination, decoded by the VAE."""
import torch

from wm.mdnrnn import sample_z
from wm.vae import to_frames, to_input


@torch.inference_mode()
def dream_rollout(vae, mdnrnn, controller, start_frame, steps, tau, seed):
    """Encode `start_frame` (64, 64, 3) uint8, then for `steps` steps: act on [z, h], step the
    MDN-RNN, sample the next z at temperature `tau` and decode it.

    Returns (frames, rewards, dones): (steps+1) decoded (64, 64, 3) uint8 frames (the first is
    the reconstruction of the start frame) and the predicted reward and done probability per step.
    """
    generator = torch.Generator().manual_seed(seed)
    z, _ = vae.encode(to_input(start_frame[None], "cpu"))  # (1, Z)
    state = mdnrnn.initial_state(1)
    h = state[0][0]  # (1, H)
    frames, rewards, dones = [to_frames(vae.decode(z))[0]], [], []
    for _ in range(steps):
        action = torch.from_numpy(controller.act(z.numpy(), h.numpy()))  # (1, 3)
        log_pi, mu, log_sigma, reward, done_logit, state = mdnrnn(z[:, None], action[:, None], state)
        z = sample_z(log_pi[:, 0], mu[:, 0], log_sigma[:, 0], tau, generator)  # (1, Z)
        h = state[0][0]
        frames.append(to_frames(vae.decode(z))[0])
        rewards.append(float(reward))
        dones.append(float(torch.sigmoid(done_logit)))
    return frames, rewards, dones
