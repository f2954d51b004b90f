"""The service registry on the admin listener (docs/admin.md): GET /api/v1/services lists
procedures with their callees, load and health; GET /api/v1/services/{procedure}/pick
answers the callee a call would go to; the `least_loaded` invocation policy sends a call to
the idlest healthy callee, and a callee whose invocation timed out is skipped. Callees are
raw RawSocket sessions (autobahn-python refuses an `invoke` policy it does not know);
the caller is autobahn-python."""

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions

from wamp_client import Closed, RawSocketClient, connect, run


def get(router, path):
    try:
        with urllib.request.urlopen(router.admin_url + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Callee:
    """A raw WAMP callee that registers with `invoke` and answers each INVOCATION in its
    own thread: with its name, or as the first argument says (block, hang, fail)."""

    def __init__(self, router, name, procedure, invoke="least_loaded"):
        self.name = name
        self.client = RawSocketClient(router.rawsocket)
        self.session = self.client.join()[1]
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.client.send([64, 1, {"invoke": invoke}, procedure])
        reply = self.client.recv()
        assert reply[0] == 65, reply
        self.client.sock.settimeout(None)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def send(self, fields):
        with self.lock:
            self.client.send(fields)

    def serve(self):
        try:
            while True:
                message = self.client.recv()
                if message[0] == 68:
                    threading.Thread(target=self.answer, args=(message,), daemon=True).start()
        except (OSError, Closed):
            return

    def answer(self, invocation):
        request = invocation[1]
        mode = invocation[4][0] if len(invocation) > 4 and invocation[4] else None
        if mode == "block":
            self.release.wait(10)
        if mode == "hang":
            return
        try:
            if mode == "fail":
                self.send([8, 68, request, {}, "com.svc.failed"])
            else:
                self.send([70, request, {}, [self.name]])
        except OSError:
            pass

    def close(self):
        # shutdown first: a plain close() does not end the connection while the serving
        # thread is blocked reading it.
        try:
            self.client.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.client.close()


def test_registry_lists_picks_and_least_loaded_skips_a_callee_that_timed_out(router):
    a = Callee(router, "a", "com.svc.work")
    b = Callee(router, "b", "com.svc.work")

    async def main():
        loop = asyncio.get_running_loop()
        caller = await connect(router)

        def fetch(path):
            return loop.run_in_executor(None, get, router, path)

        status, listing = await fetch("/api/v1/services")
        assert status == 200 and listing["total"] == 1, listing
        service = listing["services"][0]
        assert (service["procedure"], service["match"], service["invoke"]) == \
            ("com.svc.work", "exact", "least_loaded")
        assert [c["session"] for c in service["callees"]] == [a.session, b.session]
        assert all(c["healthy"] and c["in_flight"] == 0 and c["registered_since"]
                   for c in service["callees"])
        # Idle: the first callee. With `a` busy, the idlest is `b`.
        assert await caller.call("com.svc.work") == "a"
        blocked = asyncio.ensure_future(caller.call("com.svc.work", "block"))
        await asyncio.sleep(0.2)
        assert await caller.call("com.svc.work") == "b"
        status, listing = await fetch("/api/v1/services")
        loads = {c["session"]: c["in_flight"] for c in listing["services"][0]["callees"]}
        assert loads == {a.session: 1, b.session: 0}, loads
        status, picked = await fetch("/api/v1/services/com.svc.work/pick?policy=least_loaded")
        assert status == 200 and picked["session"] == b.session, picked
        a.release.set()
        assert await blocked == "a"
        # `a` times out once: it is unhealthy, and skipped though idle.
        try:
            await caller.call("com.svc.work", "hang", options=CallOptions(timeout=300))
            raise AssertionError("the call should have timed out")
        except ApplicationError as e:
            assert e.error == "wamp.error.timeout"
        status, listing = await fetch("/api/v1/services")
        health = {c["session"]: c for c in listing["services"][0]["callees"]}
        assert not health[a.session]["healthy"] and health[a.session]["unhealthy_since"], health
        assert health[b.session]["healthy"]
        for _ in range(3):
            assert await caller.call("com.svc.work") == "b"
        for policy in ("first", "least_loaded", "roundrobin"):
            status, picked = await fetch(f"/api/v1/services/com.svc.work/pick?policy={policy}")
            assert status == 200 and picked["session"] == b.session, (policy, picked)
        # b's ERROR is kept as its last error; it stays healthy.
        try:
            await caller.call("com.svc.work", "fail")
            raise AssertionError("the callee failed the call")
        except ApplicationError as e:
            assert e.error == "com.svc.failed"
        status, listing = await fetch("/api/v1/services")
        last = {c["session"]: (c["last_error"], c["healthy"]) for c in listing["services"][0]["callees"]}
        assert last[b.session] == ("com.svc.failed", True), last
        # Errors.
        assert (await fetch("/api/v1/services/com.svc.nothing/pick"))[0] == 404
        assert (await fetch("/api/v1/services/com.svc.work/pick?policy=bogus"))[0] == 400
        assert (await fetch("/api/v1/services/com.svc.work/pick?realm=nowhere"))[0] == 404
        assert (await fetch("/api/v1/services?bogus=1"))[0] == 400
        caller.leave()

    try:
        run(main())
    finally:
        a.close()
        b.close()


def test_the_registry_round_robin_rotates_and_a_gone_callee_leaves_it(router):
    a = Callee(router, "a", "com.svc.rr", invoke="roundrobin")
    b = Callee(router, "b", "com.svc.rr", invoke="roundrobin")
    picks = [get(router, "/api/v1/services/com.svc.rr/pick")[1]["session"] for _ in range(4)]
    assert picks == [a.session, b.session, a.session, b.session], picks
    a.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        callees = get(router, "/api/v1/services")[1]["services"][0]["callees"]
        if [c["session"] for c in callees] == [b.session]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the closed callee is still listed: {callees}")
    b.close()
