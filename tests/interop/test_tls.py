"""TLS on the client listeners (issue 16): MQTT over TLS with paho-mqtt and mosquitto_pub /
mosquitto_sub (`--cafile`, client certificates), WAMP over `wss://` and RawSocket over TLS
with autobahn-python, MQTT over `wss://.../mqtt` (paho and MQTT.js); client certificates required or
optional; SIGHUP reloads the certificate without dropping connections, and a bad new file
is refused with a log line while the old certificate stays.

Every certificate is made by the test (the `cryptography` package), in its temp directory;
no key is committed."""

import asyncio
import datetime
import ipaddress
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import poll_until
from mqtt_client import Client, new_id
from wamp_client import Session, run

TLS_FLAGS = ["--mqtts", "127.0.0.1:0", "--wss", "127.0.0.1:0", "--rawsockets", "127.0.0.1:0"]


class Ca:
    """A certificate authority that issues server and client certificates as PEM files."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.write(f"{name}.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    def write(self, name, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def issue(self, common_name, server=True, emails=()):
        """(cert path, key path) of a new certificate; a server one names localhost and
        127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.RFC822Name(e) for e in emails]
        if server:
            names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = f"{self.name}-{common_name}"
        cert_path = self.write(f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
        key_path = self.write(f"{stem}-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cert_path, key_path


def client_context(ca: Ca, cert=None, max_version=None):
    context = ssl.create_default_context(cafile=str(ca.pem))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_version is not None:
        context.maximum_version = max_version
    return context


@pytest.fixture
def pki(tmp_path):
    return Ca(tmp_path, "ca")


def tls_router(router_factory, pki, extra_config="", extra_args=()):
    cert, key = pki.issue("router")
    config = f'[tls]\ncert = "{cert}"\nkey = "{key}"\n' + extra_config
    return router_factory(config, TLS_FLAGS + list(extra_args))


def tls_version(addr, context):
    with socket.create_connection(addr, timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()


def test_mqtt_over_tls_with_paho_round_trips_and_speaks_tls_1_3_and_1_2(router_factory, pki):
    router = tls_router(router_factory, pki)
    topic = f"tls/{new_id()}"
    sub = Client(router, transport="mqtts", tls_context=client_context(pki))
    pub = Client(router, transport="mqtts", tls_context=client_context(pki), version=4)
    try:
        assert sub.connect()[1] == 0
        sub.subscribe(topic, qos=1)
        assert pub.connect()[1] == 0
        pub.publish(topic, b"over tls", qos=1)
        assert sub.get().payload == b"over tls"
    finally:
        sub.disconnect()
        pub.disconnect()
    assert tls_version(router.addr["mqtts"], client_context(pki)) == "TLSv1.3"
    assert tls_version(router.addr["mqtts"], client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    # The plain listener still speaks plain MQTT.
    plain = Client(router)
    try:
        assert plain.connect()[1] == 0
    finally:
        plain.disconnect()


def test_a_client_that_does_not_trust_the_certificate_is_refused_and_the_router_logs_it(router_factory, pki, tmp_path):
    router = tls_router(router_factory, pki)
    stranger = Ca(tmp_path, "stranger")
    with pytest.raises(ssl.SSLError):
        tls_version(router.addr["mqtts"], client_context(stranger))
    # Plain MQTT on the TLS port: a handshake failure, not a crash.
    with socket.create_connection(router.addr["mqtts"], timeout=5) as raw:
        raw.sendall(CONNECT_311)
        raw.settimeout(5)
        try:
            data = raw.recv(100)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"\x20"), "no CONNACK over a TLS port"
    poll_until(lambda: "TLS handshake failed" in router.logs(), 5, "the failed handshake is logged")
    assert router.proc.poll() is None


def test_mosquitto_clients_with_cafile(router_factory, pki):
    router = tls_router(router_factory, pki)
    host, port = router.addr["mqtts"]
    topic = f"tls/{new_id()}"
    sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(port), "--cafile", str(pki.pem),
                            "-t", topic, "-q", "1", "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        done = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(pki.pem),
                               "-t", topic, "-q", "1", "-m", "hello mosquitto"],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        out, err = sub.communicate(timeout=10)
        assert out.strip() == "hello mosquitto", err
    finally:
        sub.kill()


async def wamp_session(factory_url, addr, context, transport="websocket", authmethods=None):
    loop = asyncio.get_event_loop()
    session = Session(ComponentConfig("realm1"), authmethods=authmethods)
    if transport == "websocket":
        factory = WampWebSocketClientFactory(lambda: session, url=factory_url, serializers=[JsonSerializer()])
    else:
        factory = WampRawSocketClientFactory(lambda: session, serializer=JsonSerializer())
    await loop.create_connection(factory, addr[0], addr[1], ssl=context, server_hostname="localhost")
    return await asyncio.wait_for(session.joined, 5)


def test_wamp_over_wss_and_rawsocket_over_tls_with_autobahn(router_factory, pki):
    router = tls_router(router_factory, pki)

    async def scenario():
        host, port = router.addr["wss"]
        callee = await wamp_session(f"wss://localhost:{port}/ws", router.addr["wss"], client_context(pki))
        await callee.register(lambda a, b: a + b, "com.tls.add")
        caller = await wamp_session(None, router.addr["rawsockets"], client_context(pki), "rawsocket")
        assert await caller.call("com.tls.add", 2, 3) == 5
        got = asyncio.get_event_loop().create_future()
        await callee.subscribe(lambda x: got.set_result(x), "com.tls.topic")
        await caller.publish("com.tls.topic", "via tls", options=__import__("autobahn").wamp.types.PublishOptions(acknowledge=True))
        assert await asyncio.wait_for(got, 5) == "via tls"
        callee.leave()
        caller.leave()

    run(scenario())


def test_mqtt_over_wss(router_factory, pki):
    router = tls_router(router_factory, pki)
    topic = f"tls/{new_id()}"
    client = Client(router, transport="wss", tls_context=client_context(pki))
    try:
        assert client.connect()[1] == 0
        client.subscribe(topic, qos=1)
        client.publish(topic, b"mqtt over wss", qos=1)
        assert client.get().payload == b"mqtt over wss"
    finally:
        client.disconnect()


@pytest.mark.parametrize("transport,version", [("mqtts", 4), ("mqtts", 5), ("wss", 5)])
def test_mqtt_js_over_tls_verifies_the_certificate(router_factory, pki, transport, version):
    """MQTT.js (tests/js/mqtt_js.js, its whole scenario) over mqtts:// and wss://.../mqtt,
    verifying the router's certificate against the test's CA."""
    from test_js_clients import run_script

    router = tls_router(router_factory, pki)
    _, port = router.addr[transport]
    url = f"mqtts://localhost:{port}" if transport == "mqtts" else f"wss://localhost:{port}/mqtt"
    run_script("mqtt_js.js", ["--url", url, "--version", str(version), "--ca", str(pki.pem)], router)


def test_a_required_client_certificate(router_factory, pki, tmp_path):
    router = tls_router(router_factory, pki, f'client_ca = "{pki.pem}"\nclient_cert = "required"\n')
    topic = f"tls/{new_id()}"
    device = pki.issue("device-7", server=False)
    with_cert = Client(router, transport="mqtts", tls_context=client_context(pki, cert=device))
    try:
        assert with_cert.connect()[1] == 0
        with_cert.subscribe(topic)
        with_cert.publish(topic, b"mutual")
        assert with_cert.get().payload == b"mutual"
    finally:
        with_cert.disconnect()
    # mosquitto_pub with --cert / --key.
    host, port = router.addr["mqtts"]
    done = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", str(pki.pem),
                           "--cert", str(device[0]), "--key", str(device[1]), "-t", topic, "-m", "x"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    # Without a certificate, or with one of another CA: refused during the handshake.
    assert mqtt_connects(router.addr["mqtts"], client_context(pki, cert=device))
    assert not mqtt_connects(router.addr["mqtts"], client_context(pki))
    other = Ca(tmp_path, "other").issue("device-7", server=False)
    assert not mqtt_connects(router.addr["mqtts"], client_context(pki, cert=other))
    poll_until(lambda: "TLS handshake failed" in router.logs(), 5, "the refusal is logged")


def test_an_optional_client_certificate_lets_clients_without_one_in(router_factory, pki):
    router = tls_router(router_factory, pki, f'client_ca = "{pki.pem}"\n')
    assert mqtt_connects(router.addr["mqtts"], client_context(pki))
    assert mqtt_connects(router.addr["mqtts"], client_context(pki, cert=pki.issue("d", server=False)))


CONNECT_311 = bytes([0x10, 0x0C, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])


def mqtt_connects(addr, context):
    """True when a CONNECT over TLS gets a CONNACK; False when the TLS handshake or the
    connection is refused (with TLS 1.3 the server's refusal of a client certificate
    arrives after the client has finished its side of the handshake)."""
    try:
        with socket.create_connection(addr, timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(CONNECT_311)
                return tls.recv(4)[:1] == b"\x20"
    except (ssl.SSLError, OSError):
        return False


def test_sighup_reloads_the_certificate_without_dropping_connections(router_factory, pki, tmp_path):
    cert, key = pki.issue("router")
    config = f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    router = router_factory(config, TLS_FLAGS)
    topic = f"tls/{new_id()}"
    old = Client(router, transport="mqtts", tls_context=client_context(pki))
    try:
        assert old.connect()[1] == 0
        old.subscribe(topic, qos=1)
        renewed = Ca(tmp_path, "renewed")
        new_cert, new_key = renewed.issue("router")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        router.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: "TLS certificates reloaded" in router.logs(), 5, "the reload is logged")
        # New connections get the new certificate.
        assert tls_version(router.addr["mqtts"], client_context(renewed)) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            tls_version(router.addr["mqtts"], client_context(pki))
        # The connection made before the reload goes on.
        newer = Client(router, transport="mqtts", tls_context=client_context(renewed))
        try:
            assert newer.connect()[1] == 0
            newer.publish(topic, b"after reload", qos=1)
        finally:
            newer.disconnect()
        assert old.get().payload == b"after reload"
        # A bad file: refused with a log line, the renewed certificate stays.
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        router.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: "not reloaded" in router.logs(), 5, "the refused reload is logged")
        assert tls_version(router.addr["mqtts"], client_context(renewed)) == "TLSv1.3"
        assert router.proc.poll() is None
    finally:
        old.disconnect()


def test_bad_tls_settings_are_refused_at_start(tmp_path):
    from conftest import Router
    cases = [
        '[tls]\ncert = "missing.pem"\nkey = "missing-key.pem"\n',
        '[tls]\ncert = "c.pem"\n',
        '[tls]\ncert = "c.pem"\nkey = "k.pem"\nclient_cert = "required"\n',
    ]
    for config in cases:
        router = Router(config, ["--admin", "off"])
        try:
            with pytest.raises(RuntimeError) as refused:
                router.start(timeout=10)
            assert router.proc.wait(5) != 0
            assert "tls" in refused.value.args[0].lower() or "TLS" in router.logs(), router.logs()
        finally:
            router.close()


def test_the_admin_listener_over_https(router_factory, pki):
    import http.client
    router = tls_router(router_factory, pki, "admin = true\n")
    host, port = router.addr["admin"]
    conn = http.client.HTTPSConnection("localhost", port, context=client_context(pki), timeout=5)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert response.status == 200, response.read()
    conn.close()
    conn = http.client.HTTPSConnection("localhost", port, context=client_context(pki), timeout=5)
    conn.request("GET", "/metrics")
    assert b"foxrouter" in conn.getresponse().read()
    conn.close()
    # Plain HTTP on the HTTPS port gets no answer, and the listener goes on serving.
    plain = http.client.HTTPConnection(host, port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse()
    # A client that connects and says nothing does not hold up the others.
    silent = socket.create_connection((host, port), timeout=5)
    try:
        conn = http.client.HTTPSConnection("localhost", port, context=client_context(pki), timeout=5)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        silent.close()


IDENTITY_USERS = """
[[role]]
name = "device"
permissions = [ { uri = "dev.", match = "prefix", publish = true, subscribe = true } ]

[[user]]
authid = "device-7"
secret = "unused"
role = "device"
"""


def test_a_certificate_name_logs_in_as_that_user_over_mqtt_and_wamp(router_factory, pki):
    """`identity = "cn"`: the verified certificate's common name is the MQTT user name
    (whatever user name and password the client sends) and WAMP authmethod `tls`; the
    user's role applies; a name that is no user is refused without `identity_role`."""
    config = f'client_ca = "{pki.pem}"\nidentity = "cn"\n' + IDENTITY_USERS
    router = tls_router(router_factory, pki, config)
    device = pki.issue("device-7", server=False)
    topic = f"dev/{new_id()}"
    client = Client(router, transport="mqtts", tls_context=client_context(pki, cert=device))
    try:
        assert client.connect(username="somebody-else", password=b"wrong")[1] == 0
        assert int(getattr(client.subscribe(topic, qos=1)[0], "value", 0)) == 1
        client.publish(topic, b"certified", qos=1)
        assert client.get().payload == b"certified"
        refused = client.subscribe(f"other/{new_id()}", qos=1)[0]
        assert int(getattr(refused, "value", refused)) == 0x87, "the device role applies"
    finally:
        client.disconnect()
    # paho 2.x reports a 3.1.1 return code 5 as reason code 0x87 too.
    for version, code in ((5, 0x87), (4, 0x87)):
        stranger = Client(router, transport="mqtts", version=version,
                          tls_context=client_context(pki, cert=pki.issue("stranger", server=False)))
        try:
            rc = stranger.connect()[1]
            assert int(getattr(rc, "value", rc)) == code, rc
        finally:
            stranger.c.loop_stop()
    assert "is no user and [tls] identity_role is not set" in router.logs()

    async def scenario():
        host, port = router.addr["wss"]
        joined = await wamp_session(f"wss://localhost:{port}/ws", router.addr["wss"],
                                    client_context(pki, cert=device), authmethods=["tls"])
        welcome = joined.details
        assert (welcome.authid, welcome.authmethod, welcome.authrole) == ("device-7", "tls", "device")
        joined.leave()

    run(scenario())


def test_identity_role_admits_certificate_names_that_are_no_user(router_factory, pki):
    config = f'client_ca = "{pki.pem}"\nidentity = "cn"\nidentity_role = "device"\n' + IDENTITY_USERS
    router = tls_router(router_factory, pki, config)
    client = Client(router, transport="mqtts",
                    tls_context=client_context(pki, cert=pki.issue("sensor-99", server=False)))
    try:
        assert client.connect()[1] == 0
        topic = f"dev/{new_id()}"
        client.subscribe(topic, qos=1)
        client.publish(topic, b"by role", qos=1)
        assert client.get().payload == b"by role"
    finally:
        client.disconnect()
