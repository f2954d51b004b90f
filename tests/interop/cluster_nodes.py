"""A masterfree cluster of real `foxrouter node` processes for end-to-end tests:
`foxrouter cluster init` writes the cluster file into a temp dir (free loopback ports), every
node starts as its own process, entries are read from their `LISTEN <gate> <addr>` lines
and look like a `conftest.Router` to the client helpers (ws_url, rawsocket, mqtt)."""

import contextlib
import json
import queue
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from conftest import BIN, Listeners, _pump, poll_until, read_listeners

# Ports per cluster: entries use five (peer, ws, rawsocket, mqtt, admin), ndb and sync two (peer, admin).
PORTS_PER_CLUSTER = 3 * 5 + 3 * 2 + 3 * 2


def _free_base_port(count):
    """A base port with `count` free consecutive ports after it (loopback), below the
    kernel's ephemeral range: the nodes' own outgoing connections take ports from that
    range, and one could land on a listener's port between `cluster init` and the bind."""
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, max(10_001, low - count))
        taken = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                taken.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in taken:
                s.close()
    raise RuntimeError("no free port range")


class Node(Listeners):
    def __init__(self, cluster, node_id, role):
        self.cluster = cluster
        self.id = node_id
        self.role = role
        self.proc = None
        self.addr = {}
        self.log_path = cluster.dir / f"node-{node_id}.log"
        # The binary this node runs (a rolling-upgrade test swaps it between starts).
        self.bin = cluster.bin
        # The cluster file this node starts with (another copy than the others' when a
        # test reroutes this node's links, e.g. through a partitioning proxy).
        self.file = None

    def start(self, timeout=20.0):
        file = self.file or self.cluster.file
        cmd = [str(self.bin), "node", "--cluster", str(file), "--id", str(self.id)]
        cmd += self.cluster.node_args
        if self.role == "entry":
            cmd += self.cluster.entry_args
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        return self

    def wait_listening(self, timeout=20.0):
        wanted = 4 if self.role == "entry" else 2  # entry: ws, rawsocket, mqtt, admin; others: peer, admin
        if not read_listeners(self.proc, self.lines, self.addr, wanted, timeout):
            raise RuntimeError(f"node {self.id} did not start: {self.logs()}")
        return self

    def logs(self):
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.addr = {}

    def terminate(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.addr = {}  # a later start waits for its LISTEN lines again
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@contextlib.contextmanager
def running_cluster(**options):
    """A started [`Cluster`]; every node's log is printed if the test fails, and every
    process and file is gone afterwards."""
    cluster = Cluster(**options)
    try:
        yield cluster.start()
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


class Cluster:
    """3 entries (ids 1-3), 3 ndb (4-6), 3 sync (7-9), as `cluster init` lays them out."""

    def __init__(self, node_args=(), entry_config=None, entry_data=True, sync_snapshot_interval=None,
                 bin=BIN):
        # `bin` writes the cluster file and is every node's binary at first.
        self.bin = bin
        self.dir = Path(tempfile.mkdtemp(prefix="foxrouter-cluster-"))
        self.file = self.dir / "cluster.toml"
        self.node_args = list(node_args)
        self.entry_args = []
        if entry_config is not None:
            (self.dir / "entry.toml").write_text(entry_config)
            self.entry_args = ["--config", str(self.dir / "entry.toml")]
        base = _free_base_port(PORTS_PER_CLUSTER)
        subprocess.run([str(bin), "cluster", "init", str(self.dir), "--base-port", str(base)],
                       check=True, capture_output=True, timeout=30)
        if not entry_data:
            # `cluster init` gives entries a data directory, where they keep snapshots of
            # their derived state (docs/cluster.md); without it they replay the log.
            blocks = self.file.read_text().split("[[node]]\n")
            blocks = [b if 'role = "entry"' not in b else
                      "".join(l for l in b.splitlines(keepends=True) if not l.startswith("data = "))
                      for b in blocks]
            self.file.write_text("[[node]]\n".join(blocks))
        if sync_snapshot_interval is not None:
            # Sync nodes snapshot their state and compact their Raft logs this often.
            text = self.file.read_text()
            for id in (7, 8, 9):
                text = text.replace(f'[[node]]\nid = {id}\nrole = "sync"\n',
                                    f'[[node]]\nid = {id}\nrole = "sync"\n'
                                    f'snapshot_interval_entries = {sync_snapshot_interval}\n')
            assert text.count("snapshot_interval_entries") == 3, text
            self.file.write_text(text)
        roles = ["entry"] * 3 + ["ndb"] * 3 + ["sync"] * 3
        self.nodes = {i + 1: Node(self, i + 1, role) for i, role in enumerate(roles)}

    @property
    def entries(self):
        return [self.nodes[i] for i in (1, 2, 3)]

    def start(self):
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_listening()
        return self

    def restart(self, node_id, timeout=60.0):
        node = self.nodes[node_id]
        node.kill9()
        started = time.monotonic()
        node.start().wait_listening(timeout)
        node.restart_seconds = time.monotonic() - started
        return node

    def replace(self, node_id, bin, timeout=60.0):
        """Stops a node as an operator would (SIGTERM) and starts `bin` in its place, with
        the same ID, cluster file and data directory: one step of a rolling upgrade."""
        node = self.nodes[node_id]
        node.terminate()
        node.bin = bin
        started = time.monotonic()
        node.start().wait_listening(timeout)
        node.restart_seconds = time.monotonic() - started
        return node

    def sync_leader(self):
        """A sync node whose latest leadership line says it leads (None if none does)."""
        for node in self.nodes.values():
            if node.role != "sync" or node.proc is None or node.proc.poll() is not None:
                continue
            try:
                lines = [l for l in node.log_path.read_text().splitlines() if "sync leadership changed" in l]
            except OSError:
                continue
            if lines and "leader=true" in lines[-1]:
                return node.id
        return None

    def logs(self):
        return "\n".join(f"--- node {n.id}\n{n.logs()}" for n in self.nodes.values())

    def close(self):
        for node in self.nodes.values():
            node.kill9()
            if node.proc and node.proc.stdout:
                node.proc.stdout.close()
            if hasattr(node, "log"):
                node.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def admin_json(node, path):
    """A node's admin API answer (an entry's, an ndb's or a sync node's), decoded."""
    with urllib.request.urlopen(node.admin_url + path, timeout=5) as response:
        return json.loads(response.read())


def same_state_at_a_common_checkpoint(entries):
    """Every entry derived the same state from the log: at a record where each took a
    checkpoint (the first record of every 5 s of log time), their digests are equal, however
    each got there (a replay from the log's start, a snapshot, a partition healed)."""

    def common():
        views = [admin_json(entry, "/api/v1/cluster")["checkpoints"] for entry in entries]
        digests = [{c["at"]: c["digest"] for c in checkpoints} for checkpoints in views]
        shared = set(digests[0]).intersection(*digests[1:])
        return max(shared, default=None) and (max(shared), [d[max(shared)] for d in digests])

    at, digests = poll_until(common, 20, "a checkpoint every entry took")
    assert len(set(digests)) == 1, f"entries derived different states at record {at}: {digests}"
    print(f"the same digest on every entry at record {at}: {digests[0]}")
