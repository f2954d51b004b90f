"""Membership of the masterfree cluster on system topics (3 entries, 3 ndb, 3 sync, real
processes): every entry publishes `$fox/cluster/members/<id>` (retained), the coordinator
(`$fox/cluster/coordinator`, retained) and `joined` / `left` / `lost` / `coordinator` events
(`$fox/cluster/events`), all derived from the permanent log, so every entry shows the same
changes at the same log records, over MQTT and WAMP alike. kill -9 of an entry is `lost`
once its lease lapses; SIGTERM is `left` at once, and its sessions' wills are written by
another entry without waiting for the lease."""

import asyncio
import json
import queue
import signal
import time

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from cluster_nodes import running_cluster
from mqtt_client import Client, new_id
from test_sync_service import lock
from wamp_client import assert_stays, connect, run, wait_until


@pytest.fixture
def cluster():
    with running_cluster() as c:
        yield c


class Watcher:
    """An MQTT 5 subscriber to `$fox/cluster/#` on one entry: the latest value per topic
    and the events, in the order they came."""

    def __init__(self, entry):
        self.client = Client(entry, new_id("members"), 5)
        self.client.connect()
        self.client.subscribe("$fox/cluster/#", qos=1)
        self.state = {}
        self.events = []

    def drain(self):
        while True:
            try:
                m = self.client.messages.get_nowait()
            except queue.Empty:
                return
            value = json.loads(m.payload)
            if m.topic == "$fox/cluster/events":
                self.events.append(value)
            else:
                self.state[m.topic] = value

    def member(self, node):
        self.drain()
        return self.state.get(f"$fox/cluster/members/{node}", {})

    def coordinator(self):
        self.drain()
        return self.state.get("$fox/cluster/coordinator", {}).get("id")

    def saw(self, event, node):
        self.drain()
        return any(e["event"] == event and e["id"] == node for e in self.events)

    def close(self):
        self.client.disconnect()


async def all_joined(watcher):
    await wait_until(lambda: all(watcher.member(n).get("state") == "joined" for n in (1, 2, 3)),
                     timeout=20, what="every entry joined")
    await wait_until(lambda: watcher.coordinator() == 1, timeout=10, what="entry 1 coordinates")


def test_members_are_retained_with_their_role_addresses_and_lease(cluster):
    one, two, three = cluster.entries
    watcher = Watcher(two)

    async def main():
        await all_joined(watcher)
        entry = watcher.member(3)
        assert entry["role"] == "entry" and entry["rank"] == 0 and entry["coordinator"] is False
        assert entry["mqtt"] == "%s:%d" % three.mqtt, entry
        assert entry["incarnation"] > 0 and entry["at"] > 0
        assert watcher.member(1)["coordinator"] is True
        for node, role in [(4, "ndb"), (7, "sync")]:
            m = watcher.member(node)
            assert m["role"] == role and m["state"] == "configured", m
        # A WAMP client on a third entry reads the same coordinator, retained.
        session = await connect(three)
        got = []
        await session.subscribe(lambda v=None: got.append(v), "$fox.cluster.coordinator",
                                options=SubscribeOptions(get_retained=True))
        await wait_until(lambda: got and got[-1]["id"] == 1, timeout=5, what="WAMP sees the coordinator")
        # Clients cannot write the router's topics, in either protocol.
        try:
            await session.publish("$fox.cluster.coordinator", {"id": 3},
                                  options=PublishOptions(acknowledge=True, retain=True))
            raise AssertionError("a client wrote $fox.cluster.coordinator")
        except ApplicationError as e:
            assert e.error == "wamp.error.not_authorized", e.error
        rogue = Client(one, new_id(), 5)
        rogue.connect()
        rogue.publish("$fox/cluster/coordinator", b'{"id": 3}', qos=1, retain=True)
        rogue.disconnect()
        await assert_stays(lambda: watcher.coordinator() == 1, 0.5, "the coordinator is unchanged")

    try:
        run(main(), timeout=60)
    finally:
        watcher.close()


def test_kill_9_is_lost_and_moves_the_coordinator_the_same_way_on_every_entry(cluster):
    one, two, three = cluster.entries
    on_two, on_three = Watcher(two), Watcher(three)

    async def main():
        await all_joined(on_two)
        await all_joined(on_three)
        killed = time.monotonic()
        one.kill9()
        await wait_until(lambda: on_two.saw("lost", 1), timeout=10, what="entry 1 lost")
        lost_after = time.monotonic() - killed
        await wait_until(lambda: on_two.coordinator() == 2, timeout=5, what="entry 2 coordinates")
        assert on_two.member(1)["state"] == "lost" and on_two.member(2)["coordinator"] is True
        print(f"kill -9 to 'lost' on another entry: {lost_after * 1000:.0f} ms")
        await asyncio.to_thread(cluster.restart, 1)
        await wait_until(lambda: on_two.member(1).get("state") == "joined", timeout=20,
                         what="entry 1 joined again")
        await wait_until(lambda: on_two.coordinator() == 1, timeout=5, what="entry 1 coordinates again")
        await wait_until(lambda: on_three.coordinator() == 1, timeout=5, what="entry 3 agrees")
        # The same changes, at the same records, on both entries.
        await wait_until(lambda: len(on_three.events) >= len(on_two.events), timeout=5,
                         what="entry 3's events")
        assert on_two.events == on_three.events, (on_two.events, on_three.events)
        kinds = [(e["event"], e["id"]) for e in on_two.events]
        kinds = kinds[kinds.index(("lost", 1)):]
        assert kinds[:2] == [("lost", 1), ("coordinator", 2)], kinds
        assert ("joined", 1) in kinds and kinds[-1] == ("coordinator", 1), kinds

    try:
        run(main(), timeout=120)
    finally:
        on_two.close()
        on_three.close()


def test_sigterm_leaves_at_once_and_another_entry_writes_its_sessions_wills(cluster):
    """A lock held through entry 3 goes to a waiter on entry 1 as soon as entry 3 stops
    cleanly: its leave is ordered before it closes its sessions, and entry 1 writes the
    holder's will without waiting for the lease (1.5 s of log time) to lapse."""
    one, two, three = cluster.entries
    watcher = Watcher(two)

    async def main():
        await all_joined(watcher)
        holder = await connect(three)
        await lock(holder, "c.lock.leave", "holder")
        waiter = await connect(one)
        waiting = lock(waiter, "c.lock.leave", "waiter")
        await assert_stays(lambda: not waiting.done(), 0.3, "the lock is the holder's")
        stopped = time.monotonic()
        three.proc.send_signal(signal.SIGTERM)
        await wait_until(waiting.done, timeout=10, what="the waiter gets the lock")
        handover = time.monotonic() - stopped
        code = await asyncio.to_thread(three.proc.wait, 10)
        assert code == 0, f"entry 3 exited with {code}"
        assert waiting.result().id > 0
        await wait_until(lambda: watcher.saw("left", 3), timeout=5, what="entry 3 left")
        assert not watcher.saw("lost", 3), watcher.events
        assert watcher.member(3)["state"] == "left"
        print(f"SIGTERM of the holder's entry to the waiter's lock: {handover * 1000:.0f} ms")
        assert handover < 1.2, handover

    try:
        run(main(), timeout=60)
    finally:
        watcher.close()
