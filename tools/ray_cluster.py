"""A Ray cluster of several nodes on this machine, on 127.0.0.1, for as long as a command runs:

    python -m tools.ray_cluster [--nodes 2] [--cpus 1] [--isolated] -- dvc repro -s controller

The command runs with RAY_ADDRESS (the head node) and WM_EXECUTOR=ray set, so its env-bound
stages go to the cluster (wm.executor); the nodes stop when it ends, and its exit code is this
tool's. Every node listens on 127.0.0.1, but Ray also looks up the machine's outward address
(and dials a public DNS server to find it): `--isolated` runs the whole thing in a network
namespace of its own that has only loopback (`unshare -n`, as root), so that no packet leaves
the machine. This is how the tests run their cluster; on a real cluster, `ray start` each node
(README, Scaling up).
"""

import argparse
import os
import shlex
import subprocess
import sys

OBJECT_STORE_BYTES = 1 << 30  # per node: a collect batch's episode files are ~100 MB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    parser.add_argument("--isolated", action="store_true", help="in a network namespace with only loopback")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if args.nodes < 1 or args.cpus < 1:
        parser.error("--nodes and --cpus must be >= 1")
    if args.isolated:
        sys.exit(isolated([sys.executable, "-m", "tools.ray_cluster", *sys.argv[1:]]))
    sys.exit(run_on_cluster(command, nodes=args.nodes, cpus=args.cpus))


def isolated(argv):
    """Run argv (less --isolated) in a new network namespace whose only interface is loopback."""
    argv = [arg for arg in argv if arg != "--isolated"]
    script = f"ip link set lo up && exec {shlex.join(argv)}"
    try:
        return subprocess.run(["unshare", "--net", "sh", "-c", script]).returncode
    except FileNotFoundError:
        sys.exit("error: --isolated needs unshare (util-linux)")


def run_on_cluster(command, *, nodes, cpus):
    from ray.cluster_utils import Cluster

    node_args = dict(
        num_cpus=cpus,
        node_ip_address="127.0.0.1",
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
    )
    cluster = Cluster(initialize_head=True, head_node_args=node_args)
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        print(f"ray_cluster: {nodes} nodes x {cpus} CPUs at {cluster.address}", file=sys.stderr, flush=True)
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "WM_EXECUTOR": "ray"}
        return subprocess.run(command, env=env).returncode
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
