"""The JavaScript ecosystem's own clients against the real binary: autobahn-js and wampy.js
(WAMP over WebSocket, JSON / MsgPack / CBOR) and MQTT.js (3.1.1 and 5, TCP and WebSocket).

Each test starts a router with the fixtures and runs one Node script from tests/js/ (see the
header of each script for what it checks); the script prints `ok <step>` per passed step and
exits 0, or prints `FAIL <step>: <reason>` and exits 1. On failure the test shows the script's
output, the WAMP messages autobahn-js sent and received (AUTOBAHN_TRACE) and the router's log.

node and tests/js/node_modules are installed by scripts/setup.sh (`npm ci --prefix tests/js`);
without them these tests fail, they do not skip."""

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"
PACKAGES = ("autobahn", "wampy", "mqtt", "ws")
SCRIPT_TIMEOUT_S = 90
SCRIPT_DEADLINE_MS = 60_000

# Same users as test_wamp_auth.py, with anonymous access off.
AUTH_CONFIG = """
[router]
auto_create_realms = false
realms = ["realm1"]

[auth]
anonymous = false

[[role]]
name = "backend"
permissions = [
  { uri = "com.allowed.", match = "prefix", publish = true, subscribe = true, call = true, register = true },
]

[[user]]
authid = "joe"
secret = "s3cret"
role = "backend"

[[user]]
authid = "salty"
secret = "pepper"
salt = "salt123"
iterations = 100
keylen = 32
role = "backend"

[[user]]
authid = "signer"
pubkeys = ["03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"]  # Ed25519 key from the seed bytes 0..31 (autobahn_auth.js)
role = "backend"
"""


@functools.lru_cache(maxsize=1)
def node_command():
    """`node` plus the flag that gives it a global WebSocket (autobahn-js 26 needs one), if any.

    Node >= 22 has WebSocket built in; Node 20 has it behind --experimental-websocket; on
    older Node the scripts fall back to the `ws` package (tests/js/lib.js)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/setup.sh (installs Debian's nodejs and npm)")
    missing = [p for p in PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"tests/js/node_modules lacks {', '.join(missing)}: run scripts/setup.sh "
                    "(npm ci --prefix tests/js)")
    probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    for flags in ([], ["--experimental-websocket"]):
        done = subprocess.run([node, *flags, "-e", probe], capture_output=True, timeout=30)
        if done.returncode == 0:
            return (node, *flags)
    return (node,)


def run_script(script, args, router):
    trace = Path(tempfile.mkstemp(prefix="autobahn-trace-", suffix=".txt")[1])
    env = dict(os.environ, AUTOBAHN_TRACE=str(trace), NODE_NO_WARNINGS="1")
    command = [*node_command(), str(JS_DIR / script), *args, "--deadline-ms", str(SCRIPT_DEADLINE_MS)]
    try:
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=SCRIPT_TIMEOUT_S)
        except subprocess.TimeoutExpired as expired:
            pytest.fail(f"{script} did not finish in {SCRIPT_TIMEOUT_S} s\n"
                        f"--- stdout\n{expired.stdout}\n--- router log\n{router.logs()}")
        if done.returncode != 0:
            wire = trace.read_text(errors="replace")[-6000:] if trace.exists() else ""
            failed_steps = [line for line in done.stdout.splitlines() if line.startswith("FAIL ")]
            headline = failed_steps[0][:300] if failed_steps else f"exited {done.returncode}"
            pytest.fail(f"{script} {' '.join(args)}: {headline}\n"
                        f"--- command\n{' '.join(command)} (exit {done.returncode})\n"
                        f"--- stdout\n{done.stdout}\n--- stderr (tail)\n{done.stderr[-3000:]}\n"
                        f"--- autobahn-js wire trace (tail)\n{wire}\n--- router log (tail)\n{router.logs()}")
        assert "all steps passed" in done.stdout, done.stdout
    finally:
        trace.unlink(missing_ok=True)


def ws_base(router):
    host, port = router.addr["ws"]
    return f"ws://{host}:{port}"


def mqtt_url(router, transport):
    if transport == "ws":
        return f"{ws_base(router)}/mqtt"
    host, port = router.mqtt
    return f"mqtt://{host}:{port}"


SERIALIZERS = ["json", "msgpack", "cbor"]


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_autobahn_js(router, serializer):
    run_script("autobahn_wamp.js", ["--url", router.ws_url, "--serializer", serializer], router)


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_autobahn_js_auth(router_factory, serializer):
    router = router_factory(AUTH_CONFIG)
    run_script("autobahn_auth.js", ["--url", router.ws_url, "--serializer", serializer], router)


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_wampy_js(router, serializer):
    run_script("wampy_wamp.js", ["--url", router.ws_url, "--serializer", serializer], router)


@pytest.mark.parametrize("transport,version", [("tcp", 4), ("tcp", 5), ("ws", 4), ("ws", 5)])
def test_mqtt_js(router, transport, version):
    run_script("mqtt_js.js", ["--url", mqtt_url(router, transport), "--version", str(version)], router)


@pytest.mark.parametrize("transport,version,serializer",
                         [("tcp", 4, "json"), ("tcp", 5, "msgpack"), ("ws", 4, "cbor"), ("ws", 5, "json")])
def test_mqtt_js_with_autobahn_js(router, transport, version, serializer):
    run_script("mqtt_wamp_cross.js", ["--wamp-url", router.ws_url, "--mqtt-url", mqtt_url(router, transport),
                                      "--version", str(version), "--serializer", serializer], router)
