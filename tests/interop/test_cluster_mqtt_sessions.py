"""MQTT sessions that outlive their connection, across the entries of a masterfree cluster
(3 entries, 3 ndb, 3 sync, real processes, paho-mqtt): a session's state is in the log, and
a client that reconnects to another entry takes its session over there. The entry that
served it ends its connection (DISCONNECT 0x8E) and writes its exact last state, packet IDs
in flight included, so a QoS 1 stream loses nothing and a QoS 2 stream is delivered exactly
once across the move; when that entry was killed, the session resumes from its last
recorded state once the entry's lease lapses (QoS 1: at least once)."""

import collections
import queue
import threading
import time

import pytest

from cluster_nodes import running_cluster, same_state_at_a_common_checkpoint
from mqtt_client import Client, new_id, props

EXPIRY = props(SessionExpiryInterval=300)


@pytest.fixture
def cluster():
    with running_cluster() as c:
        yield c


class Publisher(threading.Thread):
    """Publishes `count` numbered messages, alternating between two topics and QoS levels,
    each acknowledged before the next (so the stream runs through the move)."""

    def __init__(self, entry, count, pause=0.004):
        super().__init__(daemon=True)
        self.client = Client(entry, new_id("pub"), 5)
        self.count = count
        self.pause = pause
        self.sent = 0
        self.error = None

    def run(self):
        try:
            self.client.connect()
            for n in range(self.count):
                topic, qos = ("ms/q1", 1) if n % 2 == 0 else ("ms/q2", 2)
                self.client.publish(topic, str(n).encode(), qos=qos)
                self.sent = n + 1
                time.sleep(self.pause)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.client.disconnect()


def receive_until(client, seen, want, timeout, lag=None):
    """Receives until `want` distinct messages were seen. With `lag` (a deque), the client
    acknowledges by hand, `LAG` messages behind, so that messages are in flight at any time
    (QoS 1 PUBACK and QoS 2 PUBCOMP not yet sent)."""
    deadline = time.monotonic() + timeout
    while len(set(seen["ms/q1"])) + len(set(seen["ms/q2"])) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            m = client.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        seen[m.topic].append(int(m.payload))
        if lag is not None:
            lag.append((m.mid, m.qos))
            while len(lag) > LAG:
                client.c.ack(*lag.popleft())
    return True


LAG = 20


def send_numbered(entry, topic, count, version=4):
    """Publishes 0..count-1 at QoS 1 through `entry`, each acknowledged."""
    sender = Client(entry, new_id("pub"), version)
    sender.connect()
    for n in range(count):
        sender.publish(topic, str(n).encode(), qos=1)
    sender.disconnect()


def receive_numbered(device, count):
    """The next `count` payloads of `device`, as numbers."""
    return [int(device.get(timeout=10).payload) for _ in range(count)]


def test_a_session_moved_between_entries_mid_stream_loses_no_qos1_and_repeats_no_qos2(cluster):
    one, two, three = cluster.entries
    client_id = new_id("mover")
    device = Client(one, client_id, 5, clean=False, manual_ack=True)
    present, reason, connack = device.connect(properties=EXPIRY)
    assert (present, reason) == (False, 0)
    assert getattr(connack, "SessionExpiryInterval", 300) == 300, "the session outlives its connection"
    device.subscribe("ms/q1", qos=1)
    device.subscribe("ms/q2", qos=2)
    time.sleep(0.3)  # the subscriptions' record is ordered before the stream starts

    count = 600
    publisher = Publisher(three, count)
    publisher.start()
    seen = collections.defaultdict(list)
    lag = collections.deque()
    assert receive_until(device, seen, 150, timeout=30, lag=lag), f"the stream started ({publisher.sent} sent)"
    # Drop the connection without DISCONNECT, as a device losing its network does, with
    # LAG messages unacknowledged (QoS 2 ones delivered, PUBCOMP not sent), and come back
    # through the other entry with the same paho client (its QoS 2 state).
    device.kill()
    assert any(qos == 2 for _, qos in lag), "QoS 2 exchanges are in flight at the move"
    device.c.manual_ack_set(False)
    device.router = two
    started = time.monotonic()
    present, reason, _ = device.connect(properties=EXPIRY, timeout=15)
    print(f"takeover on another entry: CONNACK after {(time.monotonic() - started) * 1000:.0f} ms")
    assert (present, reason) == (True, 0), "the session is taken over on the other entry"
    moved_at = publisher.sent
    publisher.join(timeout=60)
    assert publisher.error is None, publisher.error
    assert publisher.sent == count
    assert receive_until(device, seen, count, timeout=30), (
        f"every message arrives: {len(set(seen['ms/q1']))} of QoS 1, {len(set(seen['ms/q2']))} of QoS 2"
    )
    time.sleep(0.5)
    while True:
        try:
            m = device.messages.get_nowait()
        except queue.Empty:
            break
        seen[m.topic].append(int(m.payload))
    q1, q2 = seen["ms/q1"], seen["ms/q2"]
    assert set(q1) == set(range(0, count, 2)), "no QoS 1 message lost"
    duplicates = [n for n, k in collections.Counter(q2).items() if k > 1]
    assert not duplicates, f"QoS 2 delivered exactly once across the move at {moved_at}: repeated {duplicates}"
    assert sorted(q2) == list(range(1, count, 2)), "no QoS 2 message lost"
    device.disconnect()
    from test_admin import key, scrape
    moves = lambda entry, kind: scrape(entry).get(key("foxrouter_mqtt_session_moves_total", kind=kind), 0)
    assert moves(one, "handed_over") == 1, "entry 1 handed the session over"
    assert (moves(two, "claimed"), moves(two, "resumed")) == (1, 1), "entry 2 claimed and resumed it"
    # The old entry no longer serves the client: a second move back takes it over again.
    again = Client(one, client_id, 5, clean=False)
    present, reason, _ = again.connect(properties=EXPIRY, timeout=15)
    assert (present, reason) == (True, 0)
    again.disconnect()


# paho 2.x resends every queued message at once after a reconnect (its inflight count is
# not kept while it resets its messages), past the Receive Maximum we announce (64), which
# we answer with DISCONNECT 0x93 as MQTT 5 requires; this cluster announces more.
WIDE_WINDOW = "[limits]\nmqtt_receive_max = 1024\n"


def test_a_qos2_publisher_moved_mid_burst_publishes_each_message_exactly_once():
    """Inbound QoS 2 across a move: the old entry settles every publish it received before
    it hands the session over, so the new one knows which packet IDs are in the log; the
    client's resends of those (DUP) are answered without publishing them again, the others
    are published."""
    with running_cluster(entry_config=WIDE_WINDOW) as cluster:
        qos2_burst_across_a_move(cluster)


def qos2_burst_across_a_move(cluster):
    one, two, three = cluster.entries
    watcher = Client(three, new_id("watch"), 5)
    watcher.connect()
    watcher.subscribe("ms/in2", qos=2)
    publisher = Client(one, new_id("burst"), 5, clean=False)
    publisher.c.max_inflight_messages_set(40)
    completed = []
    publisher.c.on_publish = lambda c, u, mid, rc, p: completed.append(mid)
    publisher.connect(properties=EXPIRY)
    count = 400
    infos = [publisher.c.publish("ms/in2", str(n).encode(), qos=2) for n in range(count)]
    deadline = time.monotonic() + 30
    while len(completed) < 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(completed) >= 100, f"the burst started ({len(completed)} completed)"
    publisher.kill()
    moved_at = len(completed)
    publisher.router = two
    present, reason, _ = publisher.connect(properties=EXPIRY, timeout=15)
    assert (present, reason) == (True, 0)
    deadline = time.monotonic() + 30
    while not all(info.is_published() for info in infos) and time.monotonic() < deadline:
        time.sleep(0.05)
    unfinished = sum(not info.is_published() for info in infos)
    assert unfinished == 0, f"every publish completes after the move ({unfinished} did not)"
    got = []
    deadline = time.monotonic() + 30
    while len(set(got)) < count and time.monotonic() < deadline:
        try:
            got.append(int(watcher.get(timeout=0.5).payload))
        except queue.Empty:
            pass
    watcher.expect_none(1.0)
    duplicates = sorted(n for n, k in collections.Counter(got).items() if k > 1)
    assert not duplicates, f"published twice after the move at {moved_at}: {duplicates}"
    assert sorted(got) == list(range(count)), "every message published once"
    publisher.disconnect()
    watcher.disconnect()


def test_a_session_bounced_between_entries_under_a_stream_loses_nothing(cluster):
    """A device behind a load balancer that reconnects to another entry every few hundred
    ms, sometimes cleanly, sometimes dropping the connection: every reconnect resumes the
    session, and no QoS 1 message of the stream is lost."""
    client_id = new_id("bounce")
    device = Client(cluster.entries[0], client_id, 5, clean=False)
    device.connect(properties=EXPIRY)
    device.subscribe("ms/q1", qos=1)
    time.sleep(0.3)
    count = 800
    publisher = Publisher(cluster.entries[2], count, pause=0.003)
    publisher.start()
    seen = collections.defaultdict(list)
    moves = 0
    while publisher.is_alive() and moves < 24:
        receive_until(device, seen, len(set(seen["ms/q1"])) + len(set(seen["ms/q2"])) + 20, timeout=10)
        if moves % 3 == 2:
            device.disconnect()
        else:
            device.kill()
        moves += 1
        device.router = cluster.entries[moves % 3]
        present, reason, _ = device.connect(properties=EXPIRY, timeout=15)
        assert (present, reason) == (True, 0), f"move {moves} to entry {moves % 3 + 1}"
    publisher.join(timeout=60)
    assert publisher.error is None, publisher.error
    # Only the QoS 1 half of the stream is subscribed to.
    assert receive_until(device, seen, count // 2, timeout=30), (
        f"after {moves} moves: {len(set(seen['ms/q1']))} of {count // 2} QoS 1 messages"
    )
    assert set(seen["ms/q1"]) == set(range(0, count, 2)), "no QoS 1 message lost"
    print(f"{moves} moves, {len(seen['ms/q1']) - count // 2} QoS 1 messages delivered again")
    device.disconnect()
    # Claims, handovers and fencing left every entry with the same sessions.
    same_state_at_a_common_checkpoint(cluster.entries)


def test_a_311_persistent_session_resumes_on_another_entry_with_what_it_missed(cluster):
    one, two, three = cluster.entries
    client_id = new_id("v311")
    device = Client(one, client_id, 4, clean=False)
    present, reason, _ = device.connect()
    assert (present, reason) == (False, 0), "a 3.1.1 persistent session is served"
    device.subscribe("ms/away", qos=1)
    device.disconnect()
    send_numbered(three, "ms/away", 20)
    device = Client(two, client_id, 4, clean=False)
    present, reason, _ = device.connect(timeout=15)
    assert (present, reason) == (True, 0)
    assert receive_numbered(device, 20) == list(range(20)), "what was published while away, in order"
    device.expect_none(0.5)
    device.disconnect()


def test_a_session_outlives_its_entry_killed_with_9(cluster):
    """The session's state was recorded in the log; with its entry gone there is nobody to
    hand it over, so the claim resumes from that record once the entry's lease lapses."""
    one, two, three = cluster.entries
    client_id = new_id("orphan")
    device = Client(two, client_id, 5, clean=False)
    device.connect(properties=EXPIRY)
    device.subscribe("ms/orphan", qos=1)
    sender = Client(three, new_id("pub"), 5)
    sender.connect()
    for n in range(5):
        sender.publish("ms/orphan", str(n).encode(), qos=1)
    assert [int(device.get(timeout=10).payload) for _ in range(5)] == list(range(5))
    time.sleep(1.5)  # a progress record (at most one a second) holds the watermark
    two.kill9()
    device.kill()
    for n in range(5, 10):
        sender.publish("ms/orphan", str(n).encode(), qos=1)
    started = time.monotonic()
    device.router = one
    present, reason, _ = device.connect(properties=EXPIRY, timeout=15)
    took = time.monotonic() - started
    assert (present, reason) == (True, 0), "the session resumes on another entry"
    got = set()
    deadline = time.monotonic() + 10
    while not set(range(5, 10)) <= got and time.monotonic() < deadline:
        try:
            got.add(int(device.get(timeout=0.5).payload))
        except queue.Empty:
            pass
    assert set(range(5, 10)) <= got, f"what was published after the kill arrives (resumed in {took:.2f} s): {got}"
    sender.disconnect()
    device.disconnect()


@pytest.mark.parametrize("expiry", [0, 300])
def test_a_will_outlives_its_entry_killed_with_9(cluster, expiry):
    """A session with a will is in the log from its CONNECT: when its entry dies, the lowest
    live entry adopts it once the lease lapses and publishes the will (the client never
    came back), once."""
    one, two, three = cluster.entries
    watcher = Client(one, new_id("watch"), 5)
    watcher.connect()
    watcher.subscribe("ms/status/+", qos=1)
    device_id = new_id("dev")
    device = Client(three, device_id, 5, clean=False)
    properties = props(SessionExpiryInterval=expiry) if expiry else None
    will = {"topic": f"ms/status/{device_id}", "payload": b"offline", "qos": 1}
    device.connect(properties=properties, will=will)
    time.sleep(0.5)  # the session's record (with its will) is ordered
    started = time.monotonic()
    three.kill9()
    device.kill()
    got = watcher.get(timeout=15)
    took = time.monotonic() - started
    assert (got.topic, got.payload) == (f"ms/status/{device_id}", b"offline"), took
    watcher.expect_none(1.5)
    print(f"will after kill -9: {took:.2f} s")
    if expiry:
        from test_admin import key, scrape
        adopted = scrape(one).get(key("foxrouter_mqtt_session_moves_total", kind="adopted"), 0)
        assert adopted == 1, "entry 1, the lowest live entry, adopted the session (it keeps it parked)"
    watcher.disconnect()


def test_a_restarted_entry_takes_its_sessions_back_from_the_log(cluster):
    """kill -9 and restart of the entry serving a persistent session: the restarted entry
    adopts its former sessions from the log (there is no other copy), so a client that comes
    back to it resumes with what was published meanwhile."""
    one, two, three = cluster.entries
    client_id = new_id("back")
    device = Client(one, client_id, 4, clean=False)
    device.connect()
    device.subscribe("ms/back", qos=1)
    device.disconnect()
    time.sleep(0.3)  # the parked session's record is ordered
    cluster.restart(one.id)
    send_numbered(three, "ms/back", 10)
    device = Client(one, client_id, 4, clean=False)
    present, reason, _ = device.connect(timeout=15)
    assert (present, reason) == (True, 0), "the restarted entry resumes the session"
    assert receive_numbered(device, 10) == list(range(10)), "what was published while the entry was down, in order"
    device.expect_none(0.5)
    device.disconnect()


def test_an_entry_that_has_not_caught_up_refuses_to_resume_rather_than_start_afresh(cluster):
    """A restarted entry knows the log's sessions only once it applied its own start. With
    the ndb tier down it can neither read the log nor have its start ordered: a client
    asking for its persistent session is refused (Server unavailable), never given an empty
    one; a clean session is served; once the ndb tier is back the session resumes."""
    one, two, three = cluster.entries
    client_id = new_id("early")
    device = Client(two, client_id, 4, clean=False)
    device.connect()
    device.subscribe("ms/early", qos=1)
    device.disconnect()
    time.sleep(0.3)
    for ndb in (4, 5, 6):
        cluster.nodes[ndb].kill9()
    cluster.restart(one.id)
    clean = Client(one, new_id("clean"), 4)
    assert clean.connect()[1] == 0, "a clean session does not wait for the log"
    clean.disconnect()
    started = time.monotonic()
    early = Client(one, client_id, 4, clean=False)
    _, reason, _ = early.connect(timeout=15)
    assert str(reason) == "Server unavailable", f"return code 3, not a fresh session: {reason}"
    print(f"refused after {time.monotonic() - started:.1f} s")
    for ndb in (4, 5, 6):
        cluster.nodes[ndb].start()
    for ndb in (4, 5, 6):
        cluster.nodes[ndb].wait_listening()
    deadline = time.monotonic() + 30
    while True:
        device = Client(one, client_id, 4, clean=False)
        present, reason, _ = device.connect(timeout=15)
        if reason == 0 or time.monotonic() > deadline:
            break
        device.c.loop_stop()
        time.sleep(0.5)
    assert (present, reason) == (True, 0), "the session resumes once the entry caught up"
    device.disconnect()
