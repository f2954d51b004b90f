"""Shared fixtures for end-to-end tests: start the real foxrouter binary on free loopback
ports, read the bound addresses from its `LISTEN <gate> <addr>` lines, and stop it (and
remove its temp files) after the test, also on failure."""

import os
import queue
import threading
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FOXROUTER_BIN", ROOT / "target" / "debug" / "foxrouter"))


def _pump(stream, lines):
    for line in stream:
        lines.put(line)


def read_listeners(proc, lines, addr, wanted, timeout):
    """Reads `LISTEN <gate> <host:port>` lines of `proc` (from the queue `lines`) into
    `addr` until it has `wanted` gates: True, or False when the process ended or the time
    ran out first."""
    deadline = time.monotonic() + timeout
    while len(addr) < wanted:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            return False
        try:
            line = lines.get(timeout=min(left, 0.2))
        except queue.Empty:
            continue
        if line.startswith("LISTEN "):
            _, gate, address = line.split()
            host, port = address.rsplit(":", 1)
            addr[gate] = (host, int(port))
    return True


def poll_until(predicate, timeout, what):
    """Calls `predicate` until it returns something true (returned), or fails after
    `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


class Listeners:
    """The client addresses of a process that printed `LISTEN <gate> <addr>` lines into
    `self.addr`, in the form the client helpers take."""

    @property
    def ws_url(self):
        host, port = self.addr["ws"]
        return f"ws://{host}:{port}/ws"

    @property
    def rawsocket(self):
        return self.addr["rawsocket"]

    @property
    def mqtt(self):
        return self.addr["mqtt"]

    @property
    def admin_url(self):
        """The admin listener's base URL (`http://host:port`)."""
        host, port = self.addr["admin"]
        return f"http://{host}:{port}"


class Router(Listeners):
    """One foxrouter process."""

    def __init__(self, config: str = "", args=()):
        self.tmp = Path(tempfile.mkdtemp(prefix="foxrouter-test-"))
        self.config_path = self.tmp / "config.toml"
        self.config_path.write_text(config)
        self.args = list(args)
        self.proc = None
        self.addr = {}
        self.log_path = self.tmp / "router.log"

    def start(self, timeout=15.0):
        # Every gate on a free port, the admin listener too (unless the test's own args
        # name it): the default 127.0.0.1:8090 would be shared by the routers of a run.
        admin = [] if "--admin" in self.args else ["--admin", "127.0.0.1:0"]
        cmd = [str(BIN), "serve", "--ws", "127.0.0.1:0", "--rawsocket", "127.0.0.1:0",
               "--mqtt", "127.0.0.1:0", *admin, "--config", str(self.config_path)] + self.args
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        lines = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, lines), daemon=True).start()
        wanted = 3 if "off" in self._admin_args() else 4
        # TLS listeners named on the command line (tests give every one a free port).
        wanted += sum(1 for arg in self.args if arg in ("--mqtts", "--wss", "--rawsockets"))
        if not read_listeners(self.proc, lines, self.addr, wanted, timeout):
            self.kill9()
            raise RuntimeError(f"router did not start: {self.logs()}")
        return self

    def _admin_args(self):
        """The value of the test's own `--admin` argument, if any."""
        if "--admin" in self.args:
            index = self.args.index("--admin")
            return self.args[index + 1:index + 2]
        return []

    def logs(self):
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def terminate(self, timeout=10.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill9()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def router_factory():
    """Call with (config_text, args) to start a router; all are stopped after the test."""
    started = []

    def start(config: str = "", args=()):
        r = Router(config, args)
        started.append(r)
        return r.start()

    yield start
    for r in started:
        r.close()


@pytest.fixture
def router(router_factory):
    """A router with the embedded defaults (anonymous, auto-created realms)."""
    return router_factory()
