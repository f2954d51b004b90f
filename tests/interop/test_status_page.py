"""The admin listener's status page (GET /) and its event stream (GET /api/v1/events),
docs/admin.md.

Browser tests: tests/js/status_page.js opens the page in Debian's Chromium (/usr/bin/chromium,
installed by scripts/setup.sh) with playwright-core, waits for live numbers, and tells us
(`ready ...`); a paho MQTT client then makes a known load and we tell the script
(`published <count> <authid>`); it waits until the page shows the messages and the client's
session row, checks that the chart was drawn, and takes a screenshot, kept at
tests/artifacts/status-page.png (tests/artifacts/ is not committed).

Without /usr/bin/chromium the browser tests are skipped, except in CI (`CI` set), where they
fail: CI must not pass them silently.

The other tests read the event stream over plain HTTP: its snapshots count a known load
exactly, it ends when the router shuts down, and the token rule (the page is open; the
stream takes the token in the header or `?token=`; the JSON endpoints only in the header)."""

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from mqtt_client import Client, new_id

CHROMIUM = Path("/usr/bin/chromium")
JS_DIR = ROOT / "tests" / "js"
ARTIFACTS = ROOT / "tests" / "artifacts"
SCRIPT_WAIT_S = 60
TOKEN = "page-s3cret-token"
TOKEN_CONFIG = f'[admin]\ntoken = "{TOKEN}"\n'


# ------------------------------------------------------------------------------ the browser

def require_browser():
    """Chromium and node with playwright-core, or a skip (outside CI) / failure (in CI)."""
    if not CHROMIUM.exists():
        reason = ("/usr/bin/chromium is absent: scripts/setup.sh installs Debian's chromium "
                  "(apt-get install chromium)")
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the status page's browser test")
        pytest.skip(reason)
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run scripts/setup.sh")
    if not (JS_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.fail("tests/js/node_modules lacks playwright-core: run scripts/setup.sh "
                    "(npm ci --prefix tests/js)")


class PageScript:
    """tests/js/status_page.js running against one router, in its own process group."""

    def __init__(self, router, screenshot, *args):
        require_browser()
        self.router = router
        self.screenshot = Path(screenshot)
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.screenshot.unlink(missing_ok=True)
        command = ["node", str(JS_DIR / "status_page.js"), "--url", router.admin_url + "/",
                   "--screenshot", str(self.screenshot), "--deadline-ms", str(SCRIPT_WAIT_S * 1000),
                   *args]
        self.command = command
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env=dict(os.environ, NODE_NO_WARNINGS="1"))
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _explain(self, what):
        self.stop()
        stderr = self.proc.stderr.read()[-3000:] if self.proc.stderr else ""
        return (f"{what}\n--- command\n{' '.join(self.command)}\n--- stdout\n{''.join(self.output)}"
                f"\n--- stderr (tail)\n{stderr}\n--- router log (tail)\n{self.router.logs()}")

    def expect(self, prefix, timeout=SCRIPT_WAIT_S):
        """The JSON after the next `<prefix> ` line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                pytest.fail(self._explain(f"no `{prefix}` line from status_page.js within {timeout} s"))
            if line is None:
                pytest.fail(self._explain(f"status_page.js ended before its `{prefix}` line"))
            if line.startswith("FAIL "):
                pytest.fail(self._explain(f"status_page.js: {line[:300]}"))
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1:])

    def tell(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self):
        """Waits for the script's verdict; returns its result and how long it ran (s)."""
        result = self.expect("result")
        try:
            code = self.proc.wait(timeout=SCRIPT_WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(self._explain("status_page.js did not exit"))
        if code != 0 or "all steps passed\n" not in self.output:
            pytest.fail(self._explain(f"status_page.js exited {code}"))
        return result, time.monotonic() - self.started

    def stop(self):
        """Ends the script and its Chromium (the whole process group)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


@pytest.fixture
def page_script():
    """Call with (router, screenshot path, *script options); every script is stopped after."""
    started = []

    def start(router, screenshot, *args):
        script = PageScript(router, screenshot, *args)
        started.append(script)
        return script

    yield start
    for script in started:
        script.stop()


def publish_load(router, client_id, bursts=4, per_burst=25, version=5):
    """A paho client subscribes to its topic and publishes `bursts` x `per_burst` QoS 1
    messages, a burst a second (a curve on the chart); returns (client, count). The client
    stays connected, so the page can show its session."""
    client = Client(router, client_id, version)
    client.connect()
    client.subscribe("page/load", qos=0)
    for burst in range(bursts):
        if burst > 0:
            time.sleep(1.0)
        for n in range(per_burst):
            client.publish("page/load", f"{burst}-{n}", qos=1)
    return client, bursts * per_burst


def status(router, token=None):
    request = urllib.request.Request(router.admin_url + "/api/v1/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def drive(script, router, prefix, **load):
    """Waits for the page, makes a known load (`publish_load`) and tells the script; its
    result, the load's size and client ID, and how long the script ran (s)."""
    script.expect("ready")
    authid = new_id(prefix)
    client, count = publish_load(router, authid, **load)
    try:
        script.tell(f"published {count} {authid}")
        result, seconds = script.finish()
    finally:
        client.disconnect()
    return result, count, authid, seconds


def check_result(router, result, count, authid, mode, token=None):
    before, after = result["before"], result["after"]
    grown = after["messages_in"] - before["messages_in"]
    # CONNECT, SUBSCRIBE, the PUBLISHes and a PUBACK or two: nothing else talks to the router.
    assert count <= grown <= count + 10, result
    assert after["messages_out"] - before["messages_out"] >= count, result
    assert result["rate_seen"] > 0, result
    assert authid in after["authids"], result
    assert after["mode"] == mode, result
    assert after["cluster"] == "Single node", result
    assert after["version"] == status(router, token)["version"], result
    assert result["canvas"]["in_colour"] > 20, result
    assert after["messages_in"] <= sum(status(router, token)["messages"]["received"].values()), result


# ------------------------------------------------------------------------------ browser tests

def test_the_page_shows_live_traffic_from_the_event_stream(router, page_script):
    screenshot = ARTIFACTS / "status-page.png"
    script = page_script(router, screenshot, "--expect-mode", "live")
    result, count, authid, seconds = drive(script, router, "status-page-probe")
    check_result(router, result, count, authid, "live")
    assert screenshot.stat().st_size > 10_000, "a screenshot of the page"
    print(f"browser test: {seconds:.1f} s; screenshot at {screenshot}")


def test_the_page_polls_when_the_event_stream_fails(router, page_script):
    screenshot = ARTIFACTS / "status-page-polling.png"
    script = page_script(router, screenshot, "--block-events", "yes", "--expect-mode", "polling")
    result, count, authid, _ = drive(script, router, "status-page-poller", bursts=3, per_burst=20, version=4)
    check_result(router, result, count, authid, "polling")


def test_with_a_token_the_page_asks_for_it(router_factory, page_script):
    router = router_factory(TOKEN_CONFIG)
    screenshot = ARTIFACTS / "status-page-token.png"
    script = page_script(router, screenshot, "--token", TOKEN, "--expect-mode", "live")
    result, count, authid, _ = drive(script, router, "status-page-token", bursts=2, per_burst=10)
    check_result(router, result, count, authid, "live", token=TOKEN)


def test_on_a_cluster_entry_the_page_shows_every_node_and_follows_the_sync_leader(page_script):
    """The page of entry 1 of a 3/3/3 cluster: live traffic as on a single node, then the
    members table with nine nodes, every ndb and sync node up and the leader the sync nodes
    themselves name; after kill -9 of that leader, the page shows it without a link and the
    new leader."""
    from cluster_nodes import running_cluster
    from test_admin import get_json

    with running_cluster() as cluster:
        entry = cluster.entries[0]
        screenshot = ARTIFACTS / "status-page-cluster.png"
        script = page_script(entry, screenshot, "--expect-mode", "live", "--cluster-members", "9")
        script.expect("ready")
        authid = new_id("status-page-cluster")
        client, count = publish_load(entry, authid, bursts=2, per_burst=10)
        try:
            script.tell(f"published {count} {authid}")
            members = script.expect("members")
            syncs = [cluster.nodes[i] for i in (7, 8, 9)]
            named = {get_json(n, "/api/v1/status")[1]["sync"]["leader_id"] for n in syncs}
            assert named == set(members["leaders"]), (named, members)
            leader = members["leaders"][0]
            assert sorted((r["node"], r["role"]) for r in members["rows"]) == \
                [(1, "entry"), (2, "entry"), (3, "entry"), (4, "ndb"), (5, "ndb"), (6, "ndb"),
                 (7, "sync"), (8, "sync"), (9, "sync")], members
            assert members["note"] == f"sync leader {leader} · term " + \
                str(get_json(cluster.nodes[leader], "/api/v1/status")[1]["sync"]["term"]), members
            cluster.nodes[leader].kill9()
            script.tell(f"killed {leader}")
            result, seconds = script.finish()
        finally:
            client.disconnect()
        after = result["after_kill"]
        new_leader = after["leaders"][0]
        assert new_leader != leader and new_leader in (7, 8, 9), after
        assert result["after"]["cluster"] == "Cluster entry 1", result
        assert result["after"]["messages_in"] - result["before"]["messages_in"] >= count, result
        assert screenshot.stat().st_size > 10_000
        print(f"cluster browser test: {seconds:.1f} s; leader {leader} -> {new_leader}; {screenshot}")


# ------------------------------------------------------------------------------ the event stream over HTTP

class EventStream:
    """GET /api/v1/events read line by line (server-sent events)."""

    def __init__(self, router, query="", token=None, timeout=5.0):
        request = urllib.request.Request(router.admin_url + "/api/v1/events" + query)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        self.response = urllib.request.urlopen(request, timeout=timeout)

    def next_snapshot(self):
        """The data of the next `snapshot` event, or None at the end of the stream."""
        event = None
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == "snapshot":
                return json.loads(line[len("data: "):])

    def close(self):
        self.response.close()


def refused(router, path, token=None):
    """The status and headers of a request to `path` the listener refuses."""
    request = urllib.request.Request(router.admin_url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5).close()
    body = json.loads(error.value.read())
    return error.value.code, error.value.headers, body


def test_the_event_stream_counts_a_known_load_exactly(router):
    stream = EventStream(router)
    try:
        first = stream.next_snapshot()
        assert first["rates"] is None, "no rate before a second snapshot"
        assert first["sessions"] == {"wamp": 0, "mqtt": 0, "mqtt_parked": 0}, first
        client = Client(router, new_id("sse"), 5)
        client.connect()
        for n in range(10):
            client.publish("sse/count", str(n), qos=0)
        # CONNECT and 10 PUBLISHes in; CONNACK out.
        deadline = time.monotonic() + 10
        while True:
            snapshot = stream.next_snapshot()
            if snapshot["messages"]["received"]["mqtt"] >= 11 or time.monotonic() > deadline:
                break
        assert snapshot["messages"]["received"] == {"wamp": 0, "mqtt": 11}, snapshot
        assert snapshot["messages"]["sent"] == {"wamp": 0, "mqtt": 1}, snapshot
        assert snapshot["connections"] == {"wamp": 0, "mqtt": 1}, snapshot
        assert snapshot["sessions"]["mqtt"] == 1, snapshot
        assert snapshot["rates"]["received_per_second"] > 0, snapshot
        client.disconnect()
    finally:
        stream.close()


def test_the_event_stream_ends_when_the_router_shuts_down(router):
    stream = EventStream(router)
    try:
        assert stream.next_snapshot()["shutting_down"] is False
        router.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        last = None
        while (snapshot := stream.next_snapshot()) is not None:
            last = snapshot
            assert time.monotonic() - started < 10, "the stream goes on after SIGTERM"
        assert last is not None and last["shutting_down"] is True, last
        assert router.proc.wait(10) == 0
    finally:
        stream.close()


def test_the_page_is_open_and_the_token_guards_its_data(router_factory):
    router = router_factory(TOKEN_CONFIG)
    with urllib.request.urlopen(router.admin_url + "/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'sha256-" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
        page = response.read().decode()
    assert "<canvas id=\"chart\"" in page and "EventSource" in page
    for path, token in [("/api/v1/events", None), ("/api/v1/events?token=wrong", None),
                        (f"/api/v1/events?token={TOKEN}x", None), ("/api/v1/events", "wrong"),
                        ("/api/v1/events?token=", None),
                        # the JSON endpoints take the token in the header only
                        (f"/api/v1/status?token={TOKEN}", None),
                        (f"/api/v1/sessions?token={TOKEN}", None),
                        (f"/metrics?token={TOKEN}", None)]:
        code, headers, body = refused(router, path, token)
        assert code == 401, (path, body)
        assert headers["WWW-Authenticate"].startswith("Bearer"), path
        assert "token" in body["error"], body
    for query, token in [(f"?token={TOKEN}", None), ("", TOKEN)]:
        stream = EventStream(router, query, token)
        try:
            assert stream.response.headers["Content-Type"] == "text/event-stream"
            assert stream.next_snapshot()["realms"] >= 1
        finally:
            stream.close()
    assert status(router, TOKEN)["cluster"] is None
