"""Acknowledged WAMP publishers on every entry of a `cluster_nodes.Cluster`, and a read of
the whole log back, for the tests that change a running cluster (faults, upgrades)."""

import asyncio
import time

from autobahn.wamp import message as wamp_message
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from wamp_client import connect, wait_until

ACK = PublishOptions(acknowledge=True)


async def in_thread(function, *args):
    """Runs a blocking call (HTTP, a process start or stop) off the event loop, so that the
    publishers' acknowledgements keep their own times meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def read_log(entry, topic, expected_count, timeout=30.0):
    """Every (ID, payload) on `topic` from the start of the log, through `after: 0`."""
    session = await connect(entry)
    got = []
    session.extra_options[wamp_message.Subscribe] = {"after": 0}
    try:
        await session.subscribe(lambda v, details=None: got.append((details.publication, v)), topic,
                                options=SubscribeOptions(details=True))
    finally:
        session.extra_options.pop(wamp_message.Subscribe, None)
    await wait_until(lambda: len(got) >= expected_count, timeout=timeout, what=f"{expected_count} records")
    await asyncio.sleep(0.5)
    session.leave()
    return got


class Load:
    """Publishers on every entry; reconnect when their entry dies. `acked` maps each
    acknowledged payload to its ID, `ack_times` holds when each ack came (monotonic)."""

    def __init__(self, cluster, topic="f.load"):
        self.cluster = cluster
        self.topic = topic
        self.acked = {}  # payload -> ID
        self.ack_times = []
        self.acks_by_entry = [0] * len(cluster.entries)
        self.failed = 0
        self.stop = False
        self.next_payload = 0

    def start(self, per_entry):
        return [asyncio.ensure_future(self.publisher(e, s))
                for e in range(len(self.cluster.entries)) for s in range(per_entry)]

    async def publisher(self, entry_index, slot):
        entry = self.cluster.entries[entry_index]
        while not self.stop:
            try:
                session = await asyncio.wait_for(connect(entry), 5)
            except Exception:
                await asyncio.sleep(0.3)
                continue
            try:
                while not self.stop:
                    payload = f"e{entry_index}-s{slot}-{self.next_payload}"
                    self.next_payload += 1
                    try:
                        publication = await asyncio.wait_for(session.publish(self.topic, payload, options=ACK), 15)
                    except Exception:
                        self.failed += 1
                        # An entry that stops says GOODBYE first: the session ends while its
                        # transport may linger, and a publish then fails at once.
                        if not (session.is_connected() and session.is_attached()):
                            break
                        await asyncio.sleep(0.05)
                        continue
                    assert payload not in self.acked
                    self.acked[payload] = publication.id
                    self.ack_times.append(time.monotonic())
                    self.acks_by_entry[entry_index] += 1
            finally:
                if session.is_attached():
                    session.leave()
                elif session.is_connected():
                    session.disconnect()

    def longest_pause(self, since):
        """The longest time (s) without any acknowledgement from `since` to the last one."""
        times = [since] + [t for t in self.ack_times if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    async def check_log(self, entries):
        """Reads the whole log back from every entry: no acknowledged message lost or
        acknowledged with another ID, none twice, IDs strictly increasing, and the same
        log everywhere. Returns it (the first entry's)."""
        acked = self.acked
        logs = []
        for entry in entries:
            logs.append(await read_log(entry, self.topic, len(acked)))
        reference = logs[0]
        ids = [i for i, _ in reference]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "IDs strictly increase"
        payloads = [p for _, p in reference]
        assert len(set(payloads)) == len(payloads), "no message is in the log twice"
        in_log = dict((p, i) for i, p in reference)
        lost = [p for p in acked if p not in in_log]
        assert not lost, f"acknowledged but lost: {lost[:5]}"
        wrong = [p for p, i in acked.items() if in_log[p] != i]
        assert not wrong, f"acknowledged with another ID than the log's: {wrong[:5]}"
        for other in logs[1:]:
            assert other == reference, "every entry replays the identical log"
        return reference
