"""An entry's snapshot of the state it derives from the log (3 entries, 3 ndb, 3 sync, real
processes): an entry with `data` writes one every `[router] snapshot_records` records, and
after kill -9 it starts from the last one, following the log after it, instead of replaying
the log from its start. What it serves afterwards is what it served before: retained
values, a lock held through another entry (and its will), the in-memory history that
`after` and a resumed MQTT session read, and the membership topics."""

import asyncio
import re
import time

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from cluster_nodes import running_cluster, same_state_at_a_common_checkpoint
from conftest import poll_until
from mqtt_client import Client, new_id
from test_cluster_sync import applied, retained_values
from test_history import subscribe_with
from test_sync_service import kv_publish, lock
from wamp_client import abort_transport, assert_stays, connect, run, wait_until

EVERY = 40


@pytest.fixture
def cluster():
    with running_cluster(entry_config=f"[router]\nsnapshot_records = {EVERY}\n", entry_data=True) as c:
        yield c


def snapshot_file(cluster, entry):
    return cluster.dir / "data" / f"n{entry.id}" / "snapshot.msgpack"


def restorations(entry):
    """(at, messages) of each 'state restored from the snapshot' line of the entry's log."""
    found = []
    for line in entry.log_path.read_text().splitlines():
        if "state restored from the snapshot" in line:
            at = int(re.search(r"\bat=(\d+)", line).group(1))
            messages = int(re.search(r"\bmessages=(\d+)", line).group(1))
            found.append((at, messages))
    return found


async def publish_retained(entry, topic, value):
    """Publishes `value` retained on `topic` through `entry`; its ID once acknowledged."""
    session = await connect(entry)
    published = await session.publish(topic, value, options=PublishOptions(acknowledge=True, retain=True))
    return published.id


async def read_retained(entry, topic, want, what):
    """Waits until a subscriber on `entry` sees `want` as `topic`'s retained value."""
    session = await connect(entry)
    got = await retained_values(session, topic)
    await wait_until(lambda: got == [want], timeout=10, what=what)


def test_a_restarted_entry_starts_from_its_snapshot_and_serves_what_it_served(cluster):
    one, two, three = cluster.entries
    device_id = new_id("snap")
    device = Client(one, device_id, 4, clean=False)
    device.connect()
    device.subscribe("snap/away", qos=1)
    device.disconnect()

    async def fill():
        session = await connect(one)
        ids = []
        for n in range(3 * EVERY):
            published = await session.publish(
                f"snap.k{n}", n, options=PublishOptions(acknowledge=True, retain=True))
            ids.append(published.id)
        return ids

    ids = run(fill(), timeout=60)
    applied(three, ids[-1])
    poll_until(lambda: snapshot_file(cluster, three).exists(), 10, "entry 3 wrote a snapshot")
    assert not restorations(three), "a first start has no snapshot"
    # Operators see it: the record it stands at, its size, how many were written.
    from test_admin import key, scrape
    metrics = poll_until(lambda: (m := scrape(three)).get(key("foxrouter_cluster_snapshot_writes_total")) and m,
                         10, "the snapshot metrics")
    assert metrics[key("foxrouter_cluster_snapshot_at_id")] >= ids[EVERY - 1]
    assert metrics[key("foxrouter_cluster_snapshot_bytes")] > 0
    assert metrics.get(key("foxrouter_cluster_snapshot_failures_total"), 0) == 0

    # A lock held through entry 2, with a writer parked behind it on entry 1; what the
    # device missed; then kill -9 of entry 3 and a start from its snapshot.
    async def hold():
        holder, waiter = await connect(two), await connect(one)
        await lock(holder, "snap.lock", "holder")
        waiting = lock(waiter, "snap.lock", "waiter")
        await assert_stays(lambda: not waiting.done(), 0.3, "the lock is the holder's")
        return holder, waiter, waiting

    loop = asyncio.new_event_loop()
    try:
        holder, waiter, waiting = loop.run_until_complete(asyncio.wait_for(hold(), 30))
        sender = Client(two, new_id("pub"), 5)
        sender.connect()
        for n in range(5):
            sender.publish("snap/away", str(n).encode(), qos=1)
        sender.disconnect()
        time.sleep(0.5)
        cluster.restart(three.id)
        poll_until(lambda: restorations(three), 20, "entry 3 restored its snapshot")
        at, messages = restorations(three)[-1]
        print(f"restored at {at} ({messages} messages); last ID {ids[-1]}, first {ids[0]}")
        assert at >= ids[EVERY - 1], f"the snapshot covers the first {EVERY} records at least"
        assert messages >= EVERY, "retained values and history came back from it"
        applied(three)

        async def check():
            # Retained values written before the snapshot, as every other entry has them.
            reader = await connect(three)
            got = await retained_values(reader, "snap.k7")
            await wait_until(lambda: got == [7], timeout=10, what="a retained value from the snapshot")
            later = await retained_values(reader, f"snap.k{3 * EVERY - 1}")
            await wait_until(lambda: later == [3 * EVERY - 1], timeout=10, what="the last retained value")
            # The lock is held: a conditional write through the restarted entry is refused.
            contender = await connect(three)
            try:
                await kv_publish(contender, "snap.lock", "contender", when=None)
                raise AssertionError("entry 3 let a second writer take a held lock")
            except ApplicationError as e:
                assert e.error == "wamp.error.invalid_argument", e
            # History replay with `after` from the restored in-memory history.
            replayed = []
            await subscribe_with(reader, lambda v, details=None: replayed.append(v), "snap.k5", after=ids[0])
            await wait_until(lambda: replayed == [5], timeout=10, what="history after the first ID")
            # The holder's connection dies: its will frees the lock, the parked waiter on
            # entry 1 gets it, and entry 3 sees the new holder.
            abort_transport(holder)
            await wait_until(waiting.done, timeout=10, what="the waiter gets the lock")
            assert waiting.result().id > 0
            value = await retained_values(reader, "snap.lock")
            await wait_until(lambda: value == ["waiter"], timeout=10, what="entry 3 sees the new holder")

        loop.run_until_complete(asyncio.wait_for(check(), 60))
    finally:
        loop.close()

    # The MQTT session recorded before the snapshot resumes on the restarted entry with
    # what it missed (the restored history).
    device = Client(three, device_id, 4, clean=False)
    present, reason, _ = device.connect(timeout=15)
    assert (present, reason) == (True, 0), "the session resumes on the restarted entry"
    got = [int(device.get(timeout=10).payload) for _ in range(5)]
    assert got == list(range(5)), got
    device.expect_none(0.5)
    device.disconnect()
    same_state_at_a_common_checkpoint(cluster.entries)


def test_an_unreadable_snapshot_is_set_aside_and_the_log_replayed(cluster):
    one, _, three = cluster.entries

    applied(three, run(publish_retained(one, "snap.bad", "kept"), timeout=30))
    three.kill9()
    path = snapshot_file(cluster, three)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x93garbage")
    three.start().wait_listening()
    applied(three)
    assert not restorations(three)
    assert path.with_suffix(".unreadable").exists(), "the damaged snapshot is set aside"
    assert "the snapshot cannot be read" in three.log_path.read_text()

    run(read_retained(three, "snap.bad", "kept", "the value, from the replayed log"), timeout=30)


def test_a_clean_stop_writes_the_last_snapshot_and_the_restart_replays_nothing(cluster):
    one, _, three = cluster.entries

    id = run(publish_retained(one, "snap.stop", "kept"), timeout=30)
    applied(three, id)
    assert three.terminate() == 0, "SIGTERM: a clean stop"
    lines = [l for l in three.log_path.read_text().splitlines() if "snapshot written at the stop" in l]
    assert lines, "the entry wrote its last snapshot as it stopped"
    stopped_at = int(re.search(r"\bat=(\d+)", lines[-1]).group(1))
    assert stopped_at >= id
    three.start().wait_listening()
    poll_until(lambda: restorations(three), 20, "entry 3 restored its snapshot")
    assert restorations(three)[-1][0] == stopped_at, "it goes on from where it stopped"

    run(read_retained(three, "snap.stop", "kept", "the value, from the snapshot"), timeout=30)


def test_a_subscriber_at_the_restarted_entrys_door_gets_the_whole_history(cluster):
    """The snapshot's state is back before the entry serves anyone: a subscription made
    the moment it listens replays every message of the history (the restored ones are not
    delivered again, so a subscription made before the restore would miss them)."""
    from test_cluster_faults import read_log
    one, _, three = cluster.entries
    count = 3000

    async def fill():
        session = await connect(one)
        last = None
        for first in range(0, count, 200):
            sent = [session.publish("snap.many", n, options=PublishOptions(acknowledge=True))
                    for n in range(first, min(first + 200, count))]
            last = (await asyncio.gather(*sent))[-1].id
        return last

    applied(three, run(fill(), timeout=120))
    assert three.terminate() == 0
    three.start().wait_listening()
    got = run(read_log(three, "snap.many", count, timeout=20), timeout=60)
    assert [v for _, v in got] == list(range(count)), "the whole history, in order"
