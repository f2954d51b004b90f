"""A network partition that isolates one entry of the masterfree cluster (3 entries, 3 ndb,
3 sync, real processes; issue 14): the isolated entry acknowledges nothing, cannot hold a
lock, and rejoins cleanly when the network heals.

Entry 1 reaches the ndb and sync nodes only through [`Blackhole`], TCP forwarders on
127.0.0.1 that this module runs: its own copy of `cluster.toml` names the forwarders as
the ndb and sync nodes' `peer` addresses (the node-link handshake checks node IDs, cluster
name and secret, never addresses, so the nodes accept it). A partition stops forwarding in
both directions without closing a socket, and new connections are accepted and then
ignored: nothing tells either side, as on a real network. The heal closes what the
partition held, so entry 1 dials again. Gossip (UDP, advice only: nothing is leased or
fenced by it) is not cut.

What clients see (autobahn-python, paho-mqtt), as `docs/cluster.md` says:
- before: a lock is held by a client on entry 1, a client on entry 2 waits for it (`watch`);
- partitioned: entry 1 answers acknowledged publishes with an error (WAMP
  `wamp.error.unavailable`, MQTT 5 PUBACK 0x80) within its publish timeout (5 s: the
  entry does not reset its core while no ndb or sync node answers it), never an ack;
  entries 2 and 3 keep acknowledging; entry 1 ends the holder's session itself (no beat ordered for 1 s; GOODBYE
  `wamp.close.killed`, saying the entry lost its lease) before
  the lease (1.5 s) passes the lock to the waiter; a conditional write through entry 1 that
  its stale table would accept is never acknowledged; entries 2 and 3 show entry 1 `lost`;
- healed: entry 1 acknowledges again, shows as `joined` with a new incarnation, and its
  subscriber, kept through the partition, receives the same events in the same order as a
  subscriber on entry 3."""

import asyncio
import contextlib
import os
import threading
import time
import tomllib

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from cluster_nodes import same_state_at_a_common_checkpoint, Cluster
from mqtt_client import Client, new_id
from test_cluster import subscribe_events
from test_cluster_members import Watcher, all_joined
from test_cluster_sync import applied, retained_values
from test_sync_service import kv_publish, lock
from wamp_client import assert_stays, connect, run, wait_until

ACK = PublishOptions(acknowledge=True)
ISOLATED = 1
LEASE_S = 1.5  # docs/cluster.md: 1.5 s of log time after an entry's last beat
BEAT_S = 0.3  # each entry writes a beat every 300 ms
PUBLISH_TIMEOUT_S = 5.0  # the entry's publish timeout (docs/cluster.md)
HANDOVER_MAX_S = LEASE_S + 1.5  # the lease, the beat period, one vote for the will, scheduling
REJOIN_MAX_S = 10.0  # redial backoff (at most 2 s) + handshake + catching up the log
FORWARD_CHUNK_BYTES = 64 * 1024


class _Link:
    """One connection through the forwarder: its sockets, and whether a partition froze it."""

    def __init__(self):
        self.writers = []
        self.frozen = False
        self.released = asyncio.Event()

    def close(self):
        for writer in self.writers:
            writer.close()


class Blackhole:
    """TCP forwarders on 127.0.0.1, one listening port per target address, run by an
    asyncio loop in a thread of their own (the test's loops come and go). `partition()`
    freezes every open connection (nothing read, nothing written, nothing closed) and
    freezes new ones as they are accepted; `heal()` closes the frozen connections and
    forwards new ones again."""

    def __init__(self, targets):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.partitioned = False
        self.swallowed = set()  # target nodes a connection was accepted for while partitioned
        self.links = set()
        self.linked = {}  # target node -> connections forwarded since start
        self.listening = {}  # target node -> (host, port) of its forwarder
        self.servers = []
        for node, target in targets.items():
            self.linked[node] = 0
            self.listening[node] = self._call(self._listen(node, target))

    def _call(self, coroutine, timeout=5.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _listen(self, node, target):
        server = await asyncio.start_server(
            lambda r, w: self._accepted(node, target, r, w), "127.0.0.1", 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[:2]

    async def _accepted(self, node, target, reader, writer):
        link = _Link()
        link.writers.append(writer)
        self.links.add(link)
        try:
            link.frozen = self.partitioned
            if link.frozen:  # a black hole: accepted, never answered
                self.swallowed.add(node)
                await link.released.wait()
                return
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*target), 3)
            link.writers.append(upstream_writer)
            self.linked[node] += 1
            await asyncio.gather(self._pipe(reader, upstream_writer, link),
                                 self._pipe(upstream_reader, writer, link))
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            link.close()
            self.links.discard(link)

    async def _pipe(self, reader, writer, link):
        try:
            while not link.frozen:
                data = await reader.read(FORWARD_CHUNK_BYTES)
                if link.frozen or not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        if link.frozen:
            # Neither the data nor an end is passed on: the other side learns nothing.
            await link.released.wait()
        link.close()

    def partition(self):
        async def freeze():
            self.partitioned = True
            for link in self.links:
                link.frozen = True
        self._call(freeze())

    def heal(self):
        async def release():
            self.partitioned = False
            for link in list(self.links):
                if link.frozen:
                    link.released.set()
        self._call(release())

    def open_links(self):
        async def count():
            return sum(1 for link in self.links if not link.frozen and len(link.writers) == 2)
        return self._call(count())

    def close(self):
        async def stop():
            for server in self.servers:
                server.close()
            for link in list(self.links):
                link.frozen = True
                link.released.set()
                link.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def partitionable():
    """A started cluster whose entry 1 reaches every ndb and sync node through a Blackhole."""
    cluster = Cluster()
    blackhole = None
    try:
        nodes = tomllib.loads(cluster.file.read_text())["node"]
        targets = {}
        for node in nodes:
            if node["role"] != "entry":
                host, port = node["peer"].rsplit(":", 1)
                targets[node["id"]] = (host, int(port))
        assert len(targets) == 6, targets
        blackhole = Blackhole(targets)
        text = cluster.file.read_text()
        for node, (host, port) in targets.items():
            real = f'"{host}:{port}"'
            assert text.count(real) == 1, real
            text = text.replace(real, '"%s:%d"' % blackhole.listening[node])
        own = cluster.dir / f"cluster-entry-{ISOLATED}.toml"
        own.write_text(text)
        os.chmod(own, 0o600)
        cluster.nodes[ISOLATED].file = own
        try:
            cluster.start()
        except Exception:
            print(cluster.logs())
            raise
        yield cluster, blackhole
    finally:
        if blackhole is not None:
            blackhole.close()
        cluster.close()


class HealthyPublisher:
    """Acknowledged publishes through entries 2 and 3 in turn, one every 50 ms, until
    stopped: (ID, value, when acknowledged, seconds to the ack) of each, and any error."""

    def __init__(self, sessions, topic):
        self.sessions = sessions
        self.topic = topic
        self.acked = []
        self.errors = []
        self.stopped = False
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        for k in range(10_000):
            if self.stopped:
                return
            sent = time.monotonic()
            try:
                published = await self.sessions[k % 2].publish(self.topic, f"healthy-{k}", options=ACK)
                now = time.monotonic()
                self.acked.append((published.id, f"healthy-{k}", now, now - sent))
            except ApplicationError as e:
                self.errors.append((k, e.error))
            await asyncio.sleep(0.05)

    def acked_between(self, start, end):
        return [a for a in self.acked if start <= a[2] <= end]

    async def stop(self):
        self.stopped = True
        await asyncio.wait_for(self.task, PUBLISH_TIMEOUT_S + 2)


def timed(future):
    """`future`, with the time (time.monotonic()) it is done at in `future.done_at`."""
    future = asyncio.ensure_future(future)
    future.add_done_callback(lambda f: setattr(f, "done_at", time.monotonic()))
    return future


async def refused(future, sent_at, what):
    """The ApplicationError that `future` (a timed publish sent at `sent_at`) ends with,
    within the entry's publish timeout (and a second); fails on an ack."""
    deadline = sent_at + PUBLISH_TIMEOUT_S + 1
    try:
        result = await asyncio.wait_for(asyncio.shield(future), max(0.1, deadline - time.monotonic()))
    except ApplicationError as e:
        print(f"{what}: {e.error} after {ms(future.done_at - sent_at)}")
        return e
    except asyncio.TimeoutError:
        raise AssertionError(f"{what}: no answer within {PUBLISH_TIMEOUT_S + 1} s") from None
    raise AssertionError(f"{what}: acknowledged while partitioned: {result}")


async def moment(predicate, timeout, what):
    """When (time.monotonic()) `predicate` was first seen true."""
    await wait_until(predicate, timeout=timeout, what=what)
    return time.monotonic()


def never_acknowledged(future):
    """A publish that has no answer yet, or an error."""
    return not future.done() or future.exception() is not None


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


class Scene:
    """The clients of the test, on the three entries."""

    def __init__(self, cluster, blackhole):
        self.cluster = cluster
        self.blackhole = blackhole
        self.one, self.two, self.three = cluster.entries
        self.on_two, self.on_three = Watcher(self.two), Watcher(self.three)
        self.mqtt_one = Client(self.one, new_id("isolated"), 5)
        self.mqtt_one.connect()

    def close(self):
        self.on_two.close()
        self.on_three.close()
        self.mqtt_one.disconnect()

    async def before(self):
        """Everything linked; subscribers on entries 1 and 3 (entry 1's holds no key, so it
        stays through the partition); the lock held through entry 1, awaited through 2."""
        await all_joined(self.on_two)
        await all_joined(self.on_three)
        await wait_until(lambda: self.blackhole.open_links() >= 6, timeout=10,
                         what="entry 1 linked to every ndb and sync node through the forwarders")
        self.incarnation = self.on_two.member(ISOLATED)["incarnation"]
        self.seen_on_one = await subscribe_events(await connect(self.one), "c.part.seq")
        self.seen_on_three = await subscribe_events(await connect(self.three), "c.part.seq")
        self.lock_values = await retained_values(await connect(self.three), "c.part.lock")
        self.publisher = await connect(self.one)  # a plain publisher on entry 1: holds no key
        self.first = await self.publisher.publish("c.part.seq", "before", options=ACK)
        assert self.first.id > 0
        self.holder = await connect(self.one)
        await lock(self.holder, "c.part.lock", "holder")
        self.holder_lost = []
        self.holder.left.add_done_callback(lambda _: self.holder_lost.append(time.monotonic()))
        self.waiting = lock(await connect(self.two), "c.part.lock", "waiter")
        await assert_stays(lambda: not self.waiting.done(), 0.3, "the lock is the holder's")
        self.healthy = HealthyPublisher([await connect(self.two), await connect(self.three)], "c.part.seq")
        await wait_until(lambda: len(self.healthy.acked) >= 3, timeout=5, what="the healthy side publishes")

    async def partitioned(self):
        """Entry 1 cut off from every ndb and sync node: it acknowledges nothing, its holder
        is closed before the lock moves to the waiter, entries 2 and 3 go on without it."""
        self.blackhole.partition()
        start = time.monotonic()
        isolated_publish = timed(self.publisher.publish("c.part.seq", "isolated", options=ACK))
        loop = asyncio.get_running_loop()
        mqtt_ack = loop.create_future()
        self.mqtt_one.c.on_publish = lambda c, u, mid, rc, p: loop.call_soon_threadsafe(
            lambda: mqtt_ack.done() or mqtt_ack.set_result((time.monotonic(), rc)))
        self.mqtt_one.c.publish("c/part/mqtt", b"isolated", qos=1)
        # The holder renews its lock (a write that holds only while it still holds it).
        renewal = kv_publish(self.holder, "c.part.lock", "holder, renewed", when="holder")

        waiter_at, lost_on_two, lost_on_three = await asyncio.gather(
            moment(self.waiting.done, HANDOVER_MAX_S + 5, "the waiter gets the lock"),
            moment(lambda: self.on_two.member(ISOLATED).get("state") == "lost", 10, "entry 2 shows entry 1 lost"),
            moment(lambda: self.on_three.member(ISOLATED).get("state") == "lost", 10, "entry 3 shows entry 1 lost"))
        await asyncio.wait_for(asyncio.shield(self.holder.left), 2)
        self.handover = waiter_at - start
        print(f"\npartition to the holder's session closed by entry 1: {ms(self.holder_lost[0] - start)} "
              f"({self.holder.left.result().reason}); to the waiter's lock on entry 2: {ms(self.handover)}; "
              f"to 'lost' on entries 2 and 3: {ms(lost_on_two - start)}, {ms(lost_on_three - start)}")
        assert self.waiting.result().id > self.first.id
        assert self.holder.left.result().reason == "wamp.close.killed", self.holder.left.result()
        assert "lost its lease" in (self.holder.left.result().message or ""), self.holder.left.result()
        assert self.holder_lost[0] < waiter_at, "the holder learned that it lost the lock first"
        assert never_acknowledged(renewal), renewal.result()
        # The lease runs from entry 1's last beat ordered before the partition, which may
        # be up to a beat period (and its vote) older than the partition.
        assert LEASE_S - 2 * BEAT_S <= self.handover < HANDOVER_MAX_S, self.handover
        await wait_until(lambda: self.on_two.coordinator() == 2, timeout=5, what="entry 2 coordinates")
        await wait_until(lambda: self.on_three.coordinator() == 2, timeout=5, what="entry 3 agrees")

        # A conditional write through entry 1 that its stale table (where the key still
        # reads "holder") would accept, after the lease moved: never acknowledged.
        intruder = await connect(self.one)
        stale_sent = time.monotonic()
        stale_write = timed(kv_publish(intruder, "c.part.lock", "intruder", when="holder"))
        error = await refused(isolated_publish, start, "an acknowledged publish through entry 1")
        assert error.error == "wamp.error.unavailable", error
        answered_at, reason = await asyncio.wait_for(mqtt_ack, PUBLISH_TIMEOUT_S + 1)
        print(f"an MQTT 5 QoS 1 publish through entry 1: PUBACK 0x{reason.value:02x} ({reason}) "
              f"after {ms(answered_at - start)}")
        assert reason == 0x80, f"MQTT 5 PUBACK reason {reason}"
        await refused(stale_write, stale_sent, "a conditional write through entry 1 after the lock moved")
        assert never_acknowledged(renewal), renewal.result()
        print(f"the holder's renewal: {renewal.exception() if renewal.done() else 'unanswered, its session closed'}")

        # Entry 1's links went silent and closed; its new dials go into the black hole,
        # and a publish then is refused too.
        await wait_until(lambda: len(self.blackhole.swallowed) == 6, timeout=10,
                         what="entry 1 dials every node again, into the black hole")
        late = time.monotonic()
        error = await refused(timed(self.publisher.publish("c.part.seq", "isolated, late", options=ACK)), late,
                              f"an acknowledged publish through entry 1, {ms(late - start)} into the partition")
        assert error.error == "wamp.error.unavailable", error

        assert not self.healthy.errors, self.healthy.errors
        during = self.healthy.acked_between(start, time.monotonic())
        slowest = max(latency for *_, latency in during)
        print(f"entries 2 and 3 during the partition: {len(during)} acks, none refused, slowest {ms(slowest)}")
        assert len(during) >= 20, during

    async def healed(self):
        """Entry 1 acknowledges again, rejoins with a new incarnation, and delivers what
        entry 3 delivers, in the same order; the lock stayed the waiter's."""
        linked_before = sum(self.blackhole.linked.values())
        self.blackhole.heal()
        start = time.monotonic()
        for attempt in range(20):
            assert time.monotonic() - start < REJOIN_MAX_S, "entry 1 acknowledges again"
            try:
                after_heal = await asyncio.wait_for(
                    self.publisher.publish("c.part.seq", f"rejoined-{attempt}", options=ACK), PUBLISH_TIMEOUT_S + 2)
                break
            except ApplicationError:
                continue
        else:
            raise AssertionError("entry 1 refused 20 publishes after the heal")
        acked = time.monotonic() - start
        joined = await moment(lambda: self.on_two.member(ISOLATED).get("state") == "joined",
                              REJOIN_MAX_S, "entry 2 shows entry 1 joined again") - start
        print(f"heal to entry 1's first acknowledgement: {ms(acked)}; to 'joined' on entry 2: {ms(joined)}")
        assert acked < REJOIN_MAX_S and joined < REJOIN_MAX_S
        assert after_heal.id > self.waiting.result().id
        assert sum(self.blackhole.linked.values()) >= linked_before + 6, "entry 1 linked again through the forwarders"
        await wait_until(lambda: self.on_three.member(ISOLATED).get("state") == "joined", timeout=5,
                         what="entry 3 shows entry 1 joined again")
        new_life = self.on_two.member(ISOLATED)["incarnation"]
        assert new_life > self.incarnation and self.on_three.member(ISOLATED)["incarnation"] == new_life
        changes = [(e["event"], e["incarnation"]) for e in self.on_two.events
                   if e["id"] == ISOLATED and e["event"] in ("joined", "lost", "left")]
        assert changes[-2:] == [("lost", self.incarnation), ("joined", new_life)], changes
        await wait_until(lambda: self.on_two.coordinator() == 1, timeout=5, what="entry 1 coordinates again")

        await self.healthy.stop()
        last = await self.healthy.sessions[1].publish("c.part.seq", "last", options=ACK)
        for seen, entry in [(self.seen_on_one, 1), (self.seen_on_three, 3)]:
            await wait_until(lambda: seen and seen[-1][0] >= last.id, timeout=10,
                             what=f"entry {entry} delivers up to the last event")
        ids = [i for i, _ in self.seen_on_three]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "IDs strictly increase"
        assert {a[0] for a in self.healthy.acked} <= set(ids), "every acknowledged event was delivered"
        assert self.seen_on_one == self.seen_on_three, "entry 1 delivers what entry 3 does, in the same order"
        print(f"{len(ids)} events, the same (ID, value) sequence on entries 1 and 3")
        late = [value for _, value in self.seen_on_three if value.startswith("isolated")]
        print(f"publishes refused during the partition that the log holds after all: {late or 'none'}")

        # Nothing written through the isolated entry took the lock: the waiter holds it on
        # every entry, and entry 3 saw the holder, its will (the key cleared), the waiter.
        await asyncio.to_thread(applied, self.one)
        await asyncio.to_thread(applied, self.three)
        on_one = await retained_values(await connect(self.one), "c.part.lock")
        await wait_until(lambda: on_one == ["waiter"], timeout=5, what="entry 1 sees the waiter hold the lock")
        try:
            await assert_stays(lambda: self.lock_values == ["holder", None, "waiter"], 0.5, "entry 3's values")
        except AssertionError:
            raise AssertionError(f"entry 3's values of the lock: {self.lock_values}") from None
        again = lock(await connect(self.one), "c.part.lock.2", "again")
        await wait_until(again.done, timeout=5, what="the rejoined entry takes a free lock")
        assert again.result().id > 0


def test_an_isolated_entry_acknowledges_nothing_loses_its_lock_and_rejoins(partitionable):
    cluster, blackhole = partitionable
    scene = Scene(cluster, blackhole)

    async def main():
        await scene.before()
        await scene.partitioned()
        await scene.healed()

    try:
        run(main(), timeout=90)
        # The isolated entry, back, derived the same state from the log as the others.
        same_state_at_a_common_checkpoint(cluster.entries)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        scene.close()
