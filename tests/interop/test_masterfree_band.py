"""The masterfree band under supervisord (supervisord/masterfree.ini): nine `foxrouter node`
processes. Publish on entry 1 with mosquitto_pub, watch the same events in the same order
with mosquitto_sub on entries 2 and 3; kill -9 an ndb node, supervisord restarts it, and
publishing goes on."""

import os
import shutil
import signal
import subprocess
import time

from cluster_nodes import PORTS_PER_CLUSTER, _free_base_port
from conftest import BIN, ROOT, poll_until


def mqtt_port(band_dir, entry):
    text = (band_dir / "cluster.toml").read_text()
    block = text.split("[[node]]")[entry]
    line = next(l for l in block.splitlines() if l.startswith("mqtt"))
    return int(line.split('"')[1].rsplit(":", 1)[1])


def test_band_delivers_one_order_on_every_entry_and_survives_kill9(tmp_path):
    supervisord = shutil.which("supervisord")
    assert supervisord, "supervisord is installed by scripts/setup.sh"
    band_dir = tmp_path / "band"
    base = _free_base_port(PORTS_PER_CLUSTER)
    subprocess.run([str(BIN), "cluster", "init", str(band_dir), "--base-port", str(base)],
                   check=True, capture_output=True, timeout=30)
    (band_dir / "logs").mkdir(exist_ok=True)
    env = dict(os.environ, FOX_BIN_DIR=str(BIN.parent), FOX_BAND_DIR=str(band_dir), FOX_NODE_ARGS="")
    band = subprocess.Popen([supervisord, "-c", str(ROOT / "supervisord" / "masterfree.ini")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subs = []
    try:
        ports = [mqtt_port(band_dir, e) for e in (1, 2, 3)]

        def publish(message):
            done = subprocess.run(["mosquitto_pub", "-p", str(ports[0]), "-q", "1", "-t", "band/x",
                                   "-m", message], capture_output=True, timeout=20)
            return done.returncode == 0

        poll_until(lambda: publish("warm-up"), 30, "the band acknowledges a publish")
        outputs = []
        for port in ports[1:]:
            out = open(tmp_path / f"sub-{port}.txt", "w")
            outputs.append(tmp_path / f"sub-{port}.txt")
            subs.append(subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "band/#"],
                                         stdout=out, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        for k in range(10):
            assert publish(f"m{k}")
        ctl = subprocess.run(["supervisorctl", "-c", str(ROOT / "supervisord" / "masterfree.ini"), "pid", "ndb:ndb-4"],
                             env=env, capture_output=True, text=True, timeout=10)
        pid = int(ctl.stdout.strip())
        os.kill(pid, signal.SIGKILL)
        for k in range(10, 20):
            assert publish(f"m{k}"), "acks go on with one ndb killed"
        expected = [f"m{k}" for k in range(20)]
        for path in outputs:
            # The warm-up message may arrive too: an entry delivers what it applies after a
            # subscription starts, and it may apply the warm-up just after.
            poll_until(lambda: [m for m in path.read_text().split() if m != "warm-up"] == expected, 20,
                       f"all events in order on {path.name}: {path.read_text().split()}")
        poll_until(lambda: subprocess.run(
            ["supervisorctl", "-c", str(ROOT / "supervisord" / "masterfree.ini"), "pid", "ndb:ndb-4"],
            env=env, capture_output=True, text=True, timeout=10).stdout.strip() not in ("", "0", str(pid)),
            20, "supervisord restarts the killed ndb")
    finally:
        for s in subs:
            s.kill()
            s.wait()
        band.send_signal(signal.SIGTERM)
        try:
            band.wait(20)
        except subprocess.TimeoutExpired:
            band.kill()
            band.wait()
