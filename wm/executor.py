"""Where the env-bound work runs: in worker processes of this machine, in this process, or on a
Ray cluster.

    with make_executor(backend, max_steps, workers, threads, device=device, batches=n) as executor:
        rollouts = executor.drive(policy, seeds, batch_size, controllers=None)
        per_job = executor.drive_jobs([Job(policy, seeds), ...], batch_size, on_batch=None)
        rollouts = executor.collect(policy, seeds, batch_size, out_dir)

One driving loop (wm.rollout.drive), three executors. Each cuts the seeds into the batches drive()
forms (`batch_size` tracks at a time, in seed order, each with its own slice of `controllers`,
one controller per episode, for CMA-ES), and a batch's results depend on nothing but the batch:
its policy is reset for its tracks, its envs are seeded by them. So where a batch runs cannot
change what it gives, and the Ray executor puts the batches back in order. `drive_jobs` drives
several policies' seeds at once, each job's seeds cut into batches as drive() cuts them: every
job's batches are in flight together, so no worker idles at the end of a job's last batch.

- `LocalExecutor`: one vector env in this process, the batches one after another.
- `ProcessExecutor`: `workers` processes of this machine, each a DriveActor of one CPU (a vector
  env of one thread or worker process, one torch thread): while one's envs step, another's
  policy acts, which one process alternating the two cannot do.
- `RayExecutor`: actors each holding a vector env; a policy goes to the cluster once
  (`ray.put`), each actor unpickles it once, and each task is one batch: (its first episode's
  index, its seeds, its controllers), answered with its Rollouts (and, for collect, the episode
  files' bytes, compressed on the actor; the driver writes every file). A killed actor is
  restarted by Ray and its batch rerun (TASK_RETRIES times at most).

Chosen by the environment, not by params (where a stage runs does not change what it makes,
so `dvc status` does not move when a user goes to a cluster):

    WM_EXECUTOR unset      `processes` where the models run on the CPU and a drive has batches
                           for 2+ `workers` (faster: reports/scaling.json,
                           reports/executor_speed_gymnasium.json), else `local` (on a GPU the
                           workers would get CPU copies; one batch would get one CPU)
    WM_EXECUTOR=local      this process's vector env
    WM_EXECUTOR=processes  worker processes of this machine
    WM_EXECUTOR=ray        use Ray
    RAY_ADDRESS=host:port  the cluster (Ray's own variable; unset: a Ray instance on this machine)
    WM_RAY_ACTORS=N        actors (default: the cluster's CPUs / WM_RAY_ACTOR_CPUS)
    WM_RAY_ACTOR_CPUS=C    CPUs per actor (default 1): its env threads or worker processes, and
                           its torch threads, min(C, the `threads` param)
"""

import contextlib
import multiprocessing
import os
import pickle
import socket
import sys
from multiprocessing.connection import wait
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from wm.errors import UserError
from wm.rollout import collect, drive, to_episode
from wm.vector_env import Closing, make_vector_env, worker_messages

EXECUTORS = ("local", "processes", "ray")
REACH_SECONDS = 10  # to reach RAY_ADDRESS before giving up
ACTOR_START_SECONDS = 180  # for every actor to be up (imports, envs) before giving up
TASK_RETRIES = 3  # a batch whose actor died is rerun on its restarted actor this many times


class Batch(NamedTuple):
    """One batch of a drive: what an actor is sent."""

    start: int  # the index of its first episode in the drive
    seeds: list
    controllers: object  # (len(seeds), n_params) float32, one controller per episode, or None


def batches(seeds, batch_size, controllers=None):
    """The batches drive() forms: `batch_size` tracks at a time, in seed order."""
    return [
        Batch(start, list(seeds[start : start + batch_size]), _rows(controllers, start, batch_size))
        for start in range(0, len(seeds), batch_size)
    ]


def _rows(controllers, start, count):
    return None if controllers is None else np.asarray(controllers[start : start + count], np.float32)


class Job(NamedTuple):
    """One policy's part of a drive_jobs(): its seeds and, for a world-model agent driving a
    population, one controller per episode."""

    policy: object
    seeds: list
    controllers: object = None  # (len(seeds), n_params) float32, or None


class Population:
    """A world-model agent driving one controller per episode: `params` (E, n_params) for the E
    episodes of a drive(), in its order. drive() resets the policy once per batch, in seed order,
    so each reset hands the batch the next controllers."""

    def __init__(self, agent, params):
        self.agent, self.params, self.next = agent, params, 0

    def reset(self, seeds):
        batch = self.params[self.next : self.next + len(seeds)]
        if len(batch) != len(seeds):
            raise ValueError(f"{len(self.params)} controllers for more episodes than that")
        self.next += len(seeds)
        self.agent.set_controllers(batch)
        self.agent.reset(seeds)

    def act(self, obs):
        return self.agent.act(obs)


def _with_controllers(policy, controllers):
    return policy if controllers is None else Population(policy, controllers)


def make_executor(backend, max_steps, workers, threads, *, device, batches):
    """The executor WM_EXECUTOR names (unset: default_executor), for envs of `backend` truncated
    after `max_steps` steps. `workers`: the local vector env's threads or processes (a param);
    `threads`: the stage's torch threads (the `threads` param), which Ray's actors keep too where
    they have the CPUs; `device`: the torch device the stage's policy acts on; `batches`: how
    many batches its drives hold (batch_count)."""
    kind = os.environ.get("WM_EXECUTOR") or default_executor(device, workers, batches)
    if kind == "local":
        return LocalExecutor(backend, max_steps, workers)
    if kind == "processes":
        return ProcessExecutor(backend, max_steps, processes=workers, threads=threads)
    if kind == "ray":
        return RayExecutor(
            backend,
            max_steps,
            threads=threads,
            actors=_positive("WM_RAY_ACTORS", None),
            actor_cpus=_positive("WM_RAY_ACTOR_CPUS", 1),
        )
    raise UserError(f"WM_EXECUTOR={kind}: unknown executor (known: {', '.join(EXECUTORS)})")


def default_executor(device, workers, batches):
    """Without WM_EXECUTOR: worker processes where the policy acts on the CPU and the drives have
    a batch for each of two workers or more (while one's envs step, another's policy acts), else
    this process: a GPU's policy would go to the workers as CPU copies, and a drive of one batch
    would run on one worker's one CPU where this process's vector env has them all."""
    return "processes" if str(device).split(":")[0] == "cpu" and 1 < workers <= batches else "local"


def batch_count(episodes, batch_size):
    """How many batches drive() cuts `episodes` episodes into."""
    return -(-episodes // batch_size)


def _positive(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{name}={value}: expected a whole number >= 1")
    return int(value)


class Drives:
    """drive() as the one job of drive_jobs()."""

    def drive(self, policy, seeds, batch_size, *, controllers=None, desc=None):
        """Rollouts of `policy` on `seeds`, in seed order (wm.rollout.drive); `controllers`: one
        controller per episode (E, n_params) for a world-model agent, or None."""
        return self.drive_jobs([Job(policy, seeds, controllers)], batch_size, desc=desc)[0]


class LocalExecutor(Drives, Closing):
    """The batches one after another through one vector env in this process."""

    def __init__(self, backend, max_steps, workers):
        self.venv = make_vector_env(backend, max_steps, workers)

    def drive_jobs(self, jobs, batch_size, *, on_batch=None, desc=None):
        """Each Job's Rollouts, in seed order, in job order; `on_batch(job, start, rollouts)` after
        each batch (`start`: its first episode's index in the job), in job then batch order."""
        results = []
        with tqdm(
            total=sum(len(job.seeds) for job in jobs), desc=desc, unit="ep", disable=desc is None
        ) as bar:
            for j, job in enumerate(jobs):
                results.append([])
                for batch in batches(job.seeds, batch_size, job.controllers):
                    policy = _with_controllers(job.policy, batch.controllers)
                    rollouts = drive(self.venv, policy, batch.seeds, len(batch.seeds))
                    if on_batch is not None:
                        on_batch(j, batch.start, rollouts)
                    results[-1] += rollouts
                    bar.update(len(rollouts))
        return results

    def collect(self, policy, seeds, batch_size, *, out_dir, desc=None):
        """Drive and record one episode per seed into out_dir (wm.rollout.collect)."""
        return collect(self.venv, policy, seeds, batch_size=batch_size, out_dir=out_dir, desc=desc)

    def close(self):
        self.venv.close()


class DriveActor:
    """A Ray actor: a vector env and the policies it was sent, driving one batch per task."""

    def __init__(self, backend, max_steps, cpus, threads):
        from wm.compute import use_threads

        use_threads(min(threads, cpus))  # 1 and 2 threads give the same bytes (wm/compute.py)
        self.venv = make_vector_env(backend, max_steps, cpus)
        self.policies = {}

    def run(self, key, shipped, batch, record):
        """Drive `batch` with the policy `key` (unpickled from shipped[0], an object ref, the first
        time; a list, so that Ray does not fetch it for every task). Returns its Rollouts and,
        with `record`, each episode file's bytes."""
        if key not in self.policies:
            import ray

            self.policies[key] = ray.get(shipped[0])
        policy = _with_controllers(self.policies[key], batch.controllers)
        rollouts = drive(self.venv, policy, batch.seeds, len(batch.seeds), record=record)
        files = None
        if record:
            from wm.episodes import episode_npz

            files = [episode_npz(to_episode(rollout)) for rollout in rollouts]
            for rollout in rollouts:
                rollout.frames, rollout.actions, rollout.rewards = [], [], []
        return rollouts, files

    def node(self):
        """The id of the Ray node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()


class _Dispatching(Drives, Closing):
    """Batches to workers: each batch to whichever worker is free, the results in batch order.
    A subclass ships a policy once (`_ship(policy)` -> its key), starts a batch on a worker
    (`_submit`), waits for any started batch (`_wait_any(handles)` -> a finished one) and takes
    its result (`_result(handle)` -> (rollouts, files), or a UserError)."""

    def _run(self, work, record, desc, on_result):
        """Run every (policy key, Batch) of `work`, the next one to whichever worker is free; call
        `on_result(index, rollouts, files)` in the order of `work`. Returns each one's Rollouts."""
        done, waiting, pending = {}, list(range(len(work))), {}
        idle = list(self.workers)
        results, next_out = [], 0
        with tqdm(
            total=sum(len(b.seeds) for _, b in work), desc=desc, unit="ep", disable=desc is None
        ) as bar:
            while next_out < len(work):
                while idle and waiting:
                    index, worker = waiting.pop(0), idle.pop(0)
                    pending[self._submit(worker, *work[index], record)] = (index, worker)
                handle = self._wait_any(list(pending))
                index, worker = pending.pop(handle)
                idle.append(worker)
                done[index] = self._result(handle, f"batch {index + 1} of {len(work)}")
                bar.update(len(work[index][1].seeds))
                while next_out in done:  # in order, whatever order the batches finished in
                    rollouts, files = done.pop(next_out)
                    if on_result is not None:
                        on_result(next_out, rollouts, files)
                    results.append(rollouts)
                    next_out += 1
        return results

    def drive_jobs(self, jobs, batch_size, *, on_batch=None, desc=None):
        """Each Job's Rollouts, in seed order, in job order, every job's batches queued at once;
        `on_batch(job, start, rollouts)` as each batch is done and those before it (`start`: its
        first episode's index in the job), in job then batch order."""
        work = [
            (self._ship(job.policy), batch, j)
            for j, job in enumerate(jobs)
            for batch in batches(job.seeds, batch_size, job.controllers)
        ]

        def handed(index, rollouts, _):
            _, batch, j = work[index]
            if on_batch is not None:
                on_batch(j, batch.start, rollouts)

        driven = self._run([(key, batch) for key, batch, _ in work], False, desc, handed)
        results = [[] for _ in jobs]
        for (_, _, j), rollouts in zip(work, driven):
            results[j] += rollouts
        return results

    def collect(self, policy, seeds, batch_size, *, out_dir, desc=None):
        from wm.episodes import episode_name, write_file

        key, work = self._ship(policy), batches(seeds, batch_size)

        def write(index, rollouts, files):
            for i, data in enumerate(files):
                write_file(out_dir / episode_name(work[index].start + i), data)

        return [r for rollouts in self._run([(key, b) for b in work], True, desc, write) for r in rollouts]


def _cpu_copy(policy):
    """Workers have CPUs only: a policy with models on a device (one with `to`, as
    wm.world_model's agent) goes as a CPU copy."""
    return policy.to("cpu") if hasattr(policy, "to") else policy


def _process_worker(connection, backend, max_steps, threads):
    """A ProcessExecutor's worker: a DriveActor of one CPU answering ("policy", key, pickled)
    and ("run", key, batch, record) until "close" or until the parent is gone."""
    messages = worker_messages(connection)
    actor = DriveActor(backend, max_steps, 1, threads)
    for message in messages:
        if message[0] == "policy":
            actor.policies[message[1]] = pickle.loads(message[2])
            continue
        _, key, batch, record = message
        try:
            connection.send(("done", actor.run(key, None, batch, record)))
        except Exception as err:  # the parent says it, naming the batch
            connection.send(("error", f"{type(err).__name__}: {err}"))
    actor.venv.close()


class ProcessExecutor(_Dispatching):
    """The batches on `processes` worker processes of this machine (each a DriveActor of one
    CPU), each batch to the next idle one, the results put back in seed order; a policy is
    pickled once and sent to each worker once."""

    def __init__(self, backend, max_steps, *, processes, threads):
        context = multiprocessing.get_context("spawn")
        self.workers, self.processes, self.sent = [], [], set()
        for _ in range(max(1, processes)):
            ours, theirs = context.Pipe()
            # not a daemon, so that it may start the gymnasium env's own workers; it dies with
            # this process all the same (die_with_parent), and close() ends it
            process = context.Process(target=_process_worker, args=(theirs, backend, max_steps, threads))
            process.start()
            self.workers.append(ours)
            self.processes.append(process)
        # id(policy) -> (policy, its pickle); the policy is kept, so that its id stays its own
        self.shipped = {}

    def _ship(self, policy):
        if id(policy) not in self.shipped:
            self.shipped[id(policy)] = (policy, pickle.dumps(_cpu_copy(policy)))
        return id(policy)

    def _submit(self, worker, key, batch, record):
        if (worker, key) not in self.sent:
            worker.send(("policy", key, self.shipped[key][1]))
            self.sent.add((worker, key))
        worker.send(("run", key, batch, record))
        return worker

    def _wait_any(self, handles):
        return wait(handles)[0]

    def _result(self, handle, what):
        try:
            status, result = handle.recv()
        except (EOFError, ConnectionError):
            raise UserError(
                f"a drive worker process died during {what} (its error is printed above)"
            ) from None
        if status == "error":
            raise UserError(f"a drive worker process failed {what}: {result}")
        return result

    def close(self):
        for worker, process in zip(self.workers, self.processes):
            with contextlib.suppress(OSError):  # a worker that already died needs no goodbye
                worker.send("close")
            process.join(timeout=10)
        self.workers, self.processes = [], []


def connect_ray():
    """Connect to the cluster at RAY_ADDRESS (or start Ray on this machine), once per process;
    the actors get this process's kernel pins (wm.compute) and the `wm` package it runs."""
    import ray

    if ray.is_initialized():
        return ray
    import wm
    from wm.compute import KERNEL_PINS

    address = os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
    try:
        ray.init(
            address=address or None,
            include_dashboard=False if not address else None,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={
                "env_vars": {name: os.environ[name] for name in KERNEL_PINS if name in os.environ},
                "py_modules": [os.path.dirname(wm.__file__)],
            },
        )
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = f"RAY_ADDRESS={address}" if address else "a Ray instance on this machine"
        raise UserError(f"{where}: cannot connect ({str(err).splitlines()[0]})") from None
    return ray


def _check_reachable(address, timeout=REACH_SECONDS):
    """Fail at once, naming `address`, if nothing answers there: ray.init would wait for many
    minutes. Addresses without a port ("auto", "local") are Ray's to resolve."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    if not (host and port.isdigit()):
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"RAY_ADDRESS={address}: no Ray cluster answers there ({err.strerror or type(err).__name__}); "
            f"start one (ray start --head) or unset RAY_ADDRESS"
        ) from None


class RayExecutor(_Dispatching):
    """The batches on Ray actors, each batch sent to the next idle actor, the results put back in
    seed order."""

    def __init__(self, backend, max_steps, *, threads, actors=None, actor_cpus=1):
        ray = connect_ray()
        self.ray = ray
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // actor_cpus)
        remote = ray.remote(num_cpus=actor_cpus, max_restarts=-1, max_task_retries=TASK_RETRIES)(DriveActor)
        self.workers = [remote.remote(backend, max_steps, actor_cpus, threads) for _ in range(actors)]
        try:  # wait for every actor to be up, so that one that cannot start says so here
            nodes = ray.get([actor.node.remote() for actor in self.workers], timeout=ACTOR_START_SECONDS)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise UserError(
                f"Ray: {actors} actors of {actor_cpus} CPU did not start within {ACTOR_START_SECONDS} s "
                f"(the cluster has {ray.available_resources().get('CPU', 0):g} CPUs free of "
                f"{ray.cluster_resources().get('CPU', 0):g}; WM_RAY_ACTORS sets fewer)"
            ) from None
        except ray.exceptions.RayError as err:
            self.close()
            raise UserError(f"Ray: an actor could not start ({_first_line(err)})") from None
        tqdm.write(
            f"ray: {actors} actors of {actor_cpus} CPU on {len(set(nodes))} node(s), {backend} envs",
            file=sys.stderr,
        )
        # id(policy) -> (policy, [its object ref]); the policy is kept, so that its id stays its own
        self.shipped = {}

    def _ship(self, policy):
        if id(policy) not in self.shipped:
            self.shipped[id(policy)] = (policy, [self.ray.put(_cpu_copy(policy))])
        return id(policy)

    def _submit(self, worker, key, batch, record):
        return worker.run.remote(key, self.shipped[key][1], batch, record)

    def _wait_any(self, handles):
        return self.ray.wait(handles, num_returns=1)[0][0]

    def _result(self, handle, what):
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayError as err:
            raise UserError(f"Ray: {what} failed ({_first_line(err)})") from None

    def close(self):
        for actor in self.workers:
            self.ray.kill(actor)
        self.workers = []


def _first_line(err):
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
