"""SIGHUP reloads the users of the configuration file (issue 16): new secrets and new users
apply to new logins at once, sessions already established stay, and a file the router
cannot take (a bad key, a role it does not run with) leaves the old users in place."""

import signal

from conftest import poll_until
from mqtt_client import Client, new_id

ROLES = """
[auth]
anonymous = false

[[role]]
name = "backend"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true } ]
"""


def users(*entries):
    return ROLES + "".join(
        f'\n[[user]]\nauthid = "{authid}"\nsecret = "{secret}"\nrole = "{role}"\n'
        for authid, secret, role in entries)


def logs_in(router, username, password):
    client = Client(router, version=5)
    try:
        rc = client.connect(username=username, password=password)[1]
        return int(getattr(rc, "value", rc)) == 0
    finally:
        client.c.disconnect()
        client.c.loop_stop()


def test_sighup_reloads_users_and_keeps_established_sessions(router_factory):
    router = router_factory(users(("joe", "one", "backend")))
    assert logs_in(router, "joe", b"one")
    topic = f"reload/{new_id()}"
    established = Client(router, version=5)
    try:
        assert established.connect(username="joe", password=b"one")[1] == 0
        established.subscribe(topic, qos=1)
        router.config_path.write_text(users(("joe", "two", "backend"), ("ann", "three", "backend")))
        router.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: "SIGHUP: users reloaded" in router.logs(), 5, "the reload is logged")
        assert not logs_in(router, "joe", b"one"), "the old secret no longer works"
        assert logs_in(router, "joe", b"two")
        assert logs_in(router, "ann", b"three")
        # A file with a role the router does not run with: refused, the users stay.
        router.config_path.write_text(users(("joe", "four", "nobody")) + '\n[[role]]\nname = "nobody"\n')
        router.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: "users not reloaded" in router.logs(), 5, "the refused reload is logged")
        assert logs_in(router, "joe", b"two")
        assert not logs_in(router, "joe", b"four")
        # A broken file: the same.
        router.config_path.write_text("this is not toml [")
        router.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: router.logs().count("users not reloaded") == 2, 5, "the second refusal")
        assert logs_in(router, "ann", b"three")
        # The session made before any reload is still there.
        publisher = Client(router, version=5)
        try:
            assert publisher.connect(username="ann", password=b"three")[1] == 0
            publisher.publish(topic, b"still subscribed", qos=1)
        finally:
            publisher.disconnect()
        assert established.get().payload == b"still subscribed"
        assert router.proc.poll() is None
    finally:
        established.disconnect()
