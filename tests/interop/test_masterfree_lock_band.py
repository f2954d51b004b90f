"""The resource-lock band across the masterfree cluster under supervisord
(supervisord/masterfree-lock.ini): nine `foxrouter node` processes and three resource-lock
workers, worker-N connected to entry N, competing for one mutex. kill -9 of the entry that
serves the lock holder, three times: the holder sees its connection drop (LOST), supervisord
starts the entry again, and its new life's wills hand the lock to exactly one other worker.
A checker reads every LOCKED / UNLOCKED / LOST line: no two workers ever hold it at once.
Prints each hand-over time (kill to the next LOCKED)."""

import os
import re
import shutil
import signal
import subprocess
import time
import tomllib

from cluster_nodes import PORTS_PER_CLUSTER, _free_base_port
from conftest import BIN, ROOT, poll_until

LINE = re.compile(r"^(\d+) (\S+) pid=(\d+) (LOCKED|UNLOCKED|LOST)$")
CONFIG = ROOT / "supervisord" / "masterfree-lock.ini"
# Kill to next holder: the entry's restart by supervisord, its link to the cluster, the
# log replay, one vote for its start record and one for the will (issue 14's target: 2 s;
# measured 24-151 ms, median 137, over 20 kills with FOX_LOCK_KILLS=20).
HANDOVER_MAX_MS = 2_000
KILLS = int(os.environ.get("FOX_LOCK_KILLS", "3"))  # 20 for the figure in BENCHMARKS.md


def events(log_dir):
    found = []
    for log in log_dir.glob("worker-*.log"):
        for line in log.read_text().splitlines():
            m = LINE.match(line.strip())
            if m:
                found.append((int(m[1]), m[2], int(m[3]), m[4]))
    # At one ms, a release comes before the next lock.
    return sorted(found, key=lambda e: (e[0], e[3] == "LOCKED"))


def check_exclusive(evs):
    holder = None
    for ts, name, pid, kind in evs:
        if kind == "LOCKED":
            assert holder is None, f"{name} (pid {pid}) locked at {ts} while {holder} held it"
            holder = (name, pid)
        elif holder == (name, pid):
            holder = None


def test_kill_9_of_the_holders_entry_hands_the_lock_to_one_worker(tmp_path):
    supervisord = shutil.which("supervisord")
    assert supervisord, "supervisord is installed by scripts/setup.sh"
    assert (BIN.parent / "resource-lock").exists(), "built by cargo build --workspace --all-targets"
    band_dir = tmp_path / "band"
    base = _free_base_port(PORTS_PER_CLUSTER)
    subprocess.run([str(BIN), "cluster", "init", str(band_dir), "--base-port", str(base)],
                   check=True, capture_output=True, timeout=30)
    logs = band_dir / "logs"
    logs.mkdir(exist_ok=True)
    nodes = tomllib.loads((band_dir / "cluster.toml").read_text())["node"]
    ws = {n["id"]: n["ws"] for n in nodes if n["role"] == "entry"}
    env = dict(os.environ, FOX_BIN_DIR=str(BIN.parent), FOX_BAND_DIR=str(band_dir), FOX_NODE_ARGS="",
               FOX_HOLD_MS="400", FOX_PAUSE_MS="50",
               **{f"FOX_LOCK_WS_{n}": ws[n] for n in (1, 2, 3)})
    band = subprocess.Popen([supervisord, "-c", str(CONFIG)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl_pid(program):
        # supervisorctl does not follow [include]: the socket is in masterfree.ini.
        done = subprocess.run(["supervisorctl", "-c", str(ROOT / "supervisord" / "masterfree.ini"), "pid", program], env=env,
                              capture_output=True, text=True, timeout=10)
        return int(done.stdout.strip()) if done.stdout.strip().isdigit() else 0

    handovers = []
    try:
        poll_until(lambda: len(events(logs)) >= 6, 60, "the band starts locking")
        for _ in range(KILLS):
            def fresh_holder():
                evs = events(logs)
                last = evs[-1]
                age_ms = time.time() * 1000 - last[0]
                return last if last[3] == "LOCKED" and age_ms < 150 else None

            held = poll_until(fresh_holder, 20, "a worker that just took the lock")
            entry = int(held[1].rsplit("-", 1)[1])
            pid = ctl_pid(f"entry:entry-{entry}")
            assert pid > 0
            killed_at = int(time.time() * 1000)
            os.kill(pid, signal.SIGKILL)

            def next_holder():
                return [e for e in events(logs) if e[3] == "LOCKED" and e[0] >= killed_at and e != held]

            taken = poll_until(next_holder, 30, "another worker takes the lock")[0]
            lost = [e for e in events(logs) if e[3] == "LOST" and e[2] == held[2]]
            assert lost and lost[0][0] <= taken[0], "the holder knew it lost the lock before the next took it"
            handovers.append(taken[0] - killed_at)
            # The band goes on: the entry is back and the lock keeps changing hands.
            poll_until(lambda: ctl_pid(f"entry:entry-{entry}") not in (0, pid), 30, "the entry restarted")
            # supervisord counts a process that dies within its first second (startsecs) as
            # a failed start and backs off (1 s, 2 s, ...), then gives up: kill an entry only
            # once it has run longer than that, so a hand-over measures our restart path.
            time.sleep(1.5)
            count = len(events(logs))
            poll_until(lambda: len(events(logs)) >= count + 4, 30, "the band locks again")
    finally:
        band.send_signal(signal.SIGTERM)
        try:
            band.wait(20)
        except subprocess.TimeoutExpired:
            band.kill()
            band.wait()
    print(f"hand-over after kill -9 of the holder's entry, ms: {handovers}")
    check_exclusive(events(logs))
    assert max(handovers) < HANDOVER_MAX_MS, handovers
