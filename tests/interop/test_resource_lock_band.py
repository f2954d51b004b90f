"""The resource-lock demo band under supervisord (supervisord/resource-lock.ini): three
`resource-lock` workers and a router. Runs for a bounded time and checks that holding
intervals never overlap and that killing the holder with kill -9 hands the lock to another
worker within a second."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import BIN, ROOT, poll_until

LINE = re.compile(r"^(\d+) (\S+) pid=(\d+) (LOCKED|UNLOCKED)$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(log_dir):
    found = []
    for log in Path(log_dir).glob("worker-*.log"):
        for line in log.read_text().splitlines():
            m = LINE.match(line.strip())
            if m:
                found.append((int(m[1]), m[2], int(m[3]), m[4]))
    return sorted(found, key=lambda e: (e[0], e[3] == "LOCKED"))


def test_band_mutual_exclusion_and_kill9_handover(tmp_path):
    supervisord = shutil.which("supervisord")
    assert supervisord, "supervisord is installed by scripts/setup.sh"
    worker = BIN.parent / "resource-lock"
    assert worker.exists(), f"{worker} is built by cargo build --workspace --all-targets"
    env = dict(os.environ, FOX_BIN_DIR=str(BIN.parent), FOX_LOG_DIR=str(tmp_path),
               FOX_WS=f"127.0.0.1:{free_port()}", FOX_HOLD_MS="500", FOX_PAUSE_MS="50")
    band = subprocess.Popen([supervisord, "-c", str(ROOT / "supervisord" / "resource-lock.ini")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll_until(lambda: len(events(tmp_path)) >= 4, 30, "the band starts locking")

        def fresh_holder():
            evs = events(tmp_path)
            last = evs[-1]
            age_ms = time.time() * 1000 - last[0]
            return last if last[3] == "LOCKED" and age_ms < 200 else None

        held = poll_until(fresh_holder, 10, "a worker that just took the lock")
        killed_at = int(time.time() * 1000)
        os.kill(held[2], signal.SIGKILL)

        def next_holder():
            # Not the killed holder's own LOCKED line: it may carry the very ms of the kill.
            return [e for e in events(tmp_path) if e[3] == "LOCKED" and e[0] >= killed_at and e != held]

        taken = poll_until(next_holder, 5, "another worker takes the lock")[0]
        assert taken[1] != held[1] or taken[2] != held[2]
        assert taken[0] - killed_at < 1000, f"handover took {taken[0] - killed_at} ms"
        time.sleep(1.5)
    finally:
        band.send_signal(signal.SIGTERM)
        try:
            band.wait(15)
        except subprocess.TimeoutExpired:
            band.kill()
            band.wait()

    holder = None
    for ts, name, pid, kind in events(tmp_path):
        if kind == "LOCKED":
            dead = holder is not None and holder[1] == held[2] and ts >= killed_at
            assert holder is None or dead, f"{name} locked at {ts} while {holder} held it"
            holder = (name, pid)
        elif holder == (name, pid):
            holder = None
