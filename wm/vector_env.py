"""Many CarRacing-v3 tracks stepped together, behind one interface for both backends:

    venv = make_vector_env(backend, max_steps, threads)
    obs = venv.reset(seeds)            # (N, 96, 96, 3) uint8; env i drives track seeds[i]
    obs, reward, terminated, truncated = venv.step(actions)   # actions (N, 3) float32
    venv.close()

- `gymnasium`: the reference env, in `threads` worker processes that each step their share
  of the tracks one after another (its rendering is pure Python, so processes, not threads);
  the workers live as long as the vector env, so many batches pay their start-up once.
- `envpool`: envpool's C++ port of CarRacing-v3 (several times faster per step), stepped by
  its own thread pool; a new pool per batch of seeds (it takes its seeds at construction,
  and making one takes milliseconds).

- `SingleEnv`: one gymnasium env in this process, for drives that are watched or filmed
  (`render_mode` "human" opens CarRacing's window, "rgb_array" makes `render()` return frames).

Once an env's episode has ended, `step` keeps returning something for it until the whole batch
is done: gymnasium's workers stop stepping it and return zeros, envpool resets it and drives a
new episode. Either way its results are not the episode's: `wm.rollout.drive` stops counting
an episode at its end.
"""

import contextlib
import ctypes
import multiprocessing
import signal
import sys

import numpy as np

from wm.env import BACKENDS, ENV_FRAME_SHAPE, make_env


def make_vector_env(backend, max_steps, threads):
    """A vector env of `backend` (one of wm.env.BACKENDS), episodes truncated after `max_steps`
    steps, stepped by `threads` worker processes (gymnasium) or threads (envpool)."""
    if backend == "envpool":
        return EnvpoolVectorEnv(max_steps, threads)
    if backend == "gymnasium":
        return GymnasiumVectorEnv(max_steps, threads)
    raise ValueError(f"unknown env backend {backend!r} (known: {', '.join(BACKENDS)})")


class Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EnvpoolVectorEnv(Closing):
    def __init__(self, max_steps, threads):
        self.max_steps, self.threads, self.env = max_steps, threads, None

    def reset(self, seeds):
        import envpool

        self.close()
        self.env = envpool.make_gymnasium(
            "CarRacing-v3",
            num_envs=len(seeds),
            batch_size=len(seeds),
            num_threads=self.threads,
            seed=[int(s) for s in seeds],
            max_episode_steps=self.max_steps,
        )
        obs, _ = self.env.reset()
        return obs

    def step(self, actions):
        obs, reward, terminated, truncated, _ = self.env.step(np.asarray(actions, np.float32))
        return obs, reward.astype(np.float32), terminated, truncated

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None


def _gymnasium_worker(connection, max_steps):
    """Answer ("reset", seeds) and ("step", actions) messages for this worker's share of the
    tracks, making more envs as needed, until "close" or until the parent is gone."""
    envs, done = [], np.zeros(0, dtype=bool)
    for message in worker_messages(connection):
        if message[0] == "reset":
            seeds = message[1]
            envs += [make_env(max_steps) for _ in range(len(seeds) - len(envs))]
            done = np.zeros(len(seeds), dtype=bool)
            frames = [env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds)]
            connection.send(np.stack(frames) if frames else np.zeros((0, *ENV_FRAME_SHAPE), np.uint8))
            continue
        actions = message[1]
        obs = np.zeros((len(done), *ENV_FRAME_SHAPE), dtype=np.uint8)
        reward = np.zeros(len(done), dtype=np.float32)
        terminated, truncated = np.zeros_like(done), np.zeros_like(done)
        for i in range(len(done)):
            if not done[i]:  # an ended episode is not stepped again: nothing to compute
                obs[i], reward[i], terminated[i], truncated[i], _ = envs[i].step(actions[i])
                done[i] = terminated[i] or truncated[i]
        connection.send((obs, reward, terminated, truncated))
    for env in envs:
        env.close()


def worker_messages(connection):
    """Make this process a worker of its parent, at once: Ctrl-C is the parent's to handle, and
    the worker dies with the parent, even after kill -9 (die_with_parent). Returns the parent's
    messages, until "close" or until the parent is gone."""
    # Ctrl-C reaches the whole process group: the parent handles it and closes its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    return _messages(connection)


def _messages(connection):
    while True:
        try:
            message = connection.recv()
        except (EOFError, ConnectionError):  # the parent is gone
            return
        if message == "close":
            return
        yield message


def die_with_parent():
    """On Linux, have the kernel kill this process when its parent dies, even by kill -9: a
    killed stage leaves no worker behind (elsewhere the worker ends at its next message)."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class GymnasiumVectorEnv(Closing):
    def __init__(self, max_steps, threads):
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = [], []
        for _ in range(max(1, threads)):
            ours, theirs = context.Pipe()
            process = context.Process(target=_gymnasium_worker, args=(theirs, max_steps), daemon=True)
            process.start()
            self.connections.append(ours)
            self.processes.append(process)

    def reset(self, seeds):
        self.slices = [part for part in np.array_split(np.arange(len(seeds)), len(self.connections))]
        for connection, part in zip(self.connections, self.slices):
            connection.send(("reset", [seeds[i] for i in part]))
        return np.concatenate([self._receive(connection) for connection in self.connections])

    def step(self, actions):
        for connection, part in zip(self.connections, self.slices):
            connection.send(("step", np.asarray(actions[part], np.float32)))
        results = [self._receive(connection) for connection in self.connections]
        return tuple(np.concatenate(column) for column in zip(*results))

    @staticmethod
    def _receive(connection):
        try:
            return connection.recv()
        except (EOFError, ConnectionError):
            raise RuntimeError("a gymnasium env worker process died (its error is printed above)") from None

    def close(self):
        for connection, process in zip(self.connections, self.processes):
            with contextlib.suppress(OSError):  # a worker that already died needs no goodbye
                connection.send("close")
            process.join(timeout=10)
        self.connections, self.processes = [], []


class SingleEnv(Closing):
    """One gymnasium CarRacing-v3 in this process behind the vector interface (a batch of one),
    for drives that are watched (`render_mode="human"`) or filmed (`"rgb_array"`)."""

    def __init__(self, max_steps, render_mode=None):
        self.env = make_env(max_steps, render_mode=render_mode)

    def reset(self, seeds):
        if len(seeds) != 1:
            raise ValueError(f"SingleEnv drives one track at a time, got {len(seeds)} seeds")
        return self.env.reset(seed=int(seeds[0]))[0][None]

    def step(self, actions):
        obs, reward, terminated, truncated, _ = self.env.step(actions[0])
        return obs[None], np.array([reward]), np.array([terminated]), np.array([truncated])

    def render(self):
        """[frame]: the env's rendering ("rgb_array"), one per env."""
        return [self.env.render()]

    def close(self):
        self.env.close()
