//! TLS settings, loading, reloading and client identities, with certificates made here
//! (rcgen) and real handshakes over loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A CA that signs server and client certificates.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM.
pub(crate) struct Issued {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 with the given common name and extra
    /// subject alternative names.
    pub(crate) fn issue(&self, common_name: &str, sans: Vec<SanType>) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.subject_alt_names.extend(sans);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client certificate whose only names are the common name and `sans`.
    pub(crate) fn issue_client(&self, common_name: &str, sans: Vec<SanType>) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn settings(dir: &Path, ca: &TestCa, server: &Issued) -> TlsSettings {
    let _ = ca;
    TlsSettings {
        cert: write(dir, "server.pem", &server.cert),
        key: write(dir, "server-key.pem", &server.key),
        ..TlsSettings::default()
    }
}

/// A rustls client trusting `ca`, with a client certificate when given.
fn connector(ca_pem: &str, client: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One connection through `tls`: the server echoes one line and reports the client's
/// identity; the client's result is the echo, or the handshake's error.
async fn handshake(
    tls: &Tls,
    connector: tokio_rustls::TlsConnector,
) -> (Result<Vec<u8>, std::io::Error>, Option<Option<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = acceptor.accept(stream).await.ok()?;
        let identity = tls.peer_identity(stream.get_ref().1);
        let mut line = [0u8; 5];
        stream.read_exact(&mut line).await.ok()?;
        stream.write_all(&line).await.ok()?;
        stream.shutdown().await.ok()?;
        Some(identity)
    };
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await?;
        stream.write_all(b"hello").await?;
        let mut echo = Vec::new();
        stream.read_to_end(&mut echo).await?;
        Ok(echo)
    };
    let (server, client) = tokio::join!(server, client);
    (client, server)
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_completes_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let tls = Tls::load(&settings(dir.path(), &ca, &ca.issue("router", vec![]))).unwrap();
    let (echo, identity) = handshake(&tls, connector(&ca.pem, None)).await;
    assert_eq!(echo.unwrap(), b"hello");
    assert_eq!(identity, Some(None), "no client certificate, no identity");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_refused_at_load_and_reload_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let first = ca.issue("router", vec![]);
    let settings = settings(dir.path(), &ca, &first);
    let tls = Tls::load(&settings).unwrap();
    // The key of another certificate.
    let other = ca.issue("other", vec![]);
    write(dir.path(), "server-key.pem", &other.key);
    let error = Tls::load(&settings).unwrap_err();
    assert!(matches!(error, TlsError::Config(_)), "{error}");
    assert!(tls.reload().is_err());
    // Garbage in the certificate file.
    write(dir.path(), "server-key.pem", &first.key);
    write(dir.path(), "server.pem", "not a certificate\n");
    let error = tls.reload().unwrap_err();
    assert!(error.to_string().contains("server.pem"), "{error}");
    // The old configuration still serves.
    let (echo, _) = handshake(&tls, connector(&ca.pem, None)).await;
    assert_eq!(echo.unwrap(), b"hello");
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new("old CA");
    let settings = settings(dir.path(), &old_ca, &old_ca.issue("router", vec![]));
    let tls = Tls::load(&settings).unwrap();
    let new_ca = TestCa::new("new CA");
    let renewed = new_ca.issue("router", vec![]);
    write(dir.path(), "server.pem", &renewed.cert);
    write(dir.path(), "server-key.pem", &renewed.key);
    // Before the reload, a client that trusts only the new CA is refused.
    let (echo, _) = handshake(&tls, connector(&new_ca.pem, None)).await;
    assert!(echo.is_err());
    tls.reload().unwrap();
    let (echo, _) = handshake(&tls, connector(&new_ca.pem, None)).await;
    assert_eq!(echo.unwrap(), b"hello");
    let (echo, _) = handshake(&tls, connector(&old_ca.pem, None)).await;
    assert!(echo.is_err(), "the old certificate is no longer served");
}

#[tokio::test]
async fn a_verified_client_certificate_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let mut settings = settings(dir.path(), &ca, &ca.issue("router", vec![]));
    settings.client_ca = Some(write(dir.path(), "ca.pem", &ca.pem));
    settings.identity = IdentitySource::Cn;
    let tls = Tls::load(&settings).unwrap();
    let alice = ca.issue_client(
        "alice",
        vec![SanType::Rfc822Name("alice@example.com".try_into().unwrap())],
    );
    let (echo, identity) = handshake(&tls, connector(&ca.pem, Some(&alice))).await;
    assert_eq!(echo.unwrap(), b"hello");
    assert_eq!(identity, Some(Some("alice".to_owned())));
    // Optional: a client without a certificate is served, unnamed.
    let (echo, identity) = handshake(&tls, connector(&ca.pem, None)).await;
    assert_eq!(echo.unwrap(), b"hello");
    assert_eq!(identity, Some(None));
    // The subject alternative name instead of the common name.
    settings.identity = IdentitySource::San;
    let tls = Tls::load(&settings).unwrap();
    let (_, identity) = handshake(&tls, connector(&ca.pem, Some(&alice))).await;
    assert_eq!(identity, Some(Some("alice@example.com".to_owned())));
}

#[tokio::test]
async fn a_required_client_certificate_refuses_clients_without_one_or_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let mut settings = settings(dir.path(), &ca, &ca.issue("router", vec![]));
    settings.client_ca = Some(write(dir.path(), "ca.pem", &ca.pem));
    settings.client_cert = ClientCert::Required;
    let tls = Tls::load(&settings).unwrap();
    let (echo, identity) = handshake(&tls, connector(&ca.pem, None)).await;
    assert!(
        echo.is_err() || identity.is_none(),
        "refused without a certificate"
    );
    assert!(identity.is_none());
    let stranger = TestCa::new("stranger CA").issue_client("mallory", vec![]);
    let (_, identity) = handshake(&tls, connector(&ca.pem, Some(&stranger))).await;
    assert!(
        identity.is_none(),
        "refused with a certificate of another CA"
    );
    let bob = ca.issue_client("bob", vec![]);
    let (echo, identity) = handshake(&tls, connector(&ca.pem, Some(&bob))).await;
    assert_eq!(echo.unwrap(), b"hello");
    assert_eq!(identity, Some(None), "identity = none by default");
}

#[test]
fn settings_are_checked_and_paths_resolved_from_the_config_file() {
    let config = crate::config::Config::parse(
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nws = \"127.0.0.1:8443\"\n",
        "test",
    )
    .unwrap();
    let mut tls = config.tls.unwrap();
    assert_eq!(tls.mqtt, Some(SocketAddr::from(([127, 0, 0, 1], 8883))));
    assert_eq!(tls.ws, Some(SocketAddr::from(([127, 0, 0, 1], 8443))));
    assert_eq!(tls.rawsocket, None);
    tls.resolve_paths(Path::new("/etc/fox"));
    assert_eq!(tls.cert, Path::new("/etc/fox/c.pem"));
    let refused = [
        "[tls]\ncert = \"c.pem\"\n",
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_cert = \"required\"\n",
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nidentity = \"cn\"\n",
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nidentity = \"dn\"\n",
    ];
    for text in refused {
        assert!(
            crate::config::Config::parse(text, "test").is_err(),
            "{text}"
        );
    }
    let off = crate::config::Config::parse("[tls]\ncert = \"c\"\nkey = \"k\"\nmqtt = \"\"\n", "t");
    assert_eq!(off.unwrap().tls.unwrap().mqtt, None);
}

/// WAMP-Cryptosign with the `tls-exporter` channel binding over a real TLS RawSocket
/// connection: the router announces the binding in CHALLENGE, accepts a signature of the
/// challenge XORed with the connection's exporter value, and refuses one made without it
/// (what a relaying attacker would forward from another connection).
mod channel_binding {
    use ed25519_dalek::{Signer, SigningKey};
    use fox_wamp_proto::rawsocket;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::router::Router;
    use crate::server::{self, Gate, Listener};

    struct Client {
        stream: tokio_rustls::client::TlsStream<TcpStream>,
    }

    impl Client {
        async fn connect(addr: SocketAddr, ca: &TestCa) -> Self {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut stream = connector(&ca.pem, None).connect(name, tcp).await.unwrap();
            stream
                .write_all(&rawsocket::client_handshake(15, 1))
                .await
                .unwrap();
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).await.unwrap();
            rawsocket::parse_server_handshake(reply).unwrap();
            Self { stream }
        }

        async fn send(&mut self, json: serde_json::Value) {
            let bytes = json.to_string().into_bytes();
            let frame = rawsocket::encode_frame(rawsocket::FrameKind::Message, &bytes);
            self.stream.write_all(&frame).await.unwrap();
        }

        async fn recv(&mut self) -> serde_json::Value {
            let mut header = [0u8; 4];
            self.stream.read_exact(&mut header).await.unwrap();
            let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.unwrap();
            serde_json::from_slice(&payload).unwrap()
        }

        fn exporter(&self) -> [u8; 32] {
            let mut out = [0u8; 32];
            self.stream
                .get_ref()
                .1
                .export_keying_material(&mut out, CHANNEL_BINDING_LABEL, None)
                .unwrap();
            out
        }
    }

    async fn start(dir: &Path, ca: &TestCa, key: &SigningKey) -> (SocketAddr, Arc<Router>) {
        let settings = settings(dir, ca, &ca.issue("router", vec![]));
        let mut config = crate::config::Config::parse(
            &format!(
                "[[user]]\nauthid = \"signer\"\npubkeys = [\"{}\"]\nrole = \"anonymous\"\n",
                crate::cryptosign::hex_encode(key.verifying_key().as_bytes())
            ),
            "test",
        )
        .unwrap();
        config.tls = Some(settings.clone());
        let tls = Tls::load(&settings).unwrap();
        let listener = Listener::bind_tls(Gate::RawSocket, "127.0.0.1:0".parse().unwrap(), tls)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new(config);
        tokio::spawn(server::run(router.clone(), vec![listener]));
        (addr, router)
    }

    fn hello(key: &SigningKey, binding: &str) -> serde_json::Value {
        serde_json::json!([1, "realm1", {
            "roles": {"subscriber": {}},
            "authmethods": ["cryptosign"],
            "authid": "signer",
            "authextra": {
                "pubkey": crate::cryptosign::hex_encode(key.verifying_key().as_bytes()),
                "channel_binding": binding,
            },
        }])
    }

    fn challenge_of(message: &serde_json::Value) -> [u8; 32] {
        assert_eq!(message[0], 4, "CHALLENGE: {message}");
        assert_eq!(message[2]["channel_binding"], "tls-exporter");
        let hex = message[2]["challenge"].as_str().unwrap();
        crate::cryptosign::hex_decode(hex)
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[tokio::test]
    async fn a_signature_bound_to_this_connection_is_accepted_and_an_unbound_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("test CA");
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let (addr, router) = start(dir.path(), &ca, &key).await;

        let mut bound = Client::connect(addr, &ca).await;
        bound.send(hello(&key, "tls-exporter")).await;
        let challenge = challenge_of(&bound.recv().await);
        let mut message = challenge;
        for (byte, key) in message.iter_mut().zip(bound.exporter()) {
            *byte ^= key;
        }
        let signature = key.sign(&message).to_bytes();
        let signed = format!(
            "{}{}",
            crate::cryptosign::hex_encode(&signature),
            crate::cryptosign::hex_encode(&message)
        );
        bound.send(serde_json::json!([5, signed, {}])).await;
        let welcome = bound.recv().await;
        assert_eq!(welcome[0], 2, "WELCOME: {welcome}");
        assert_eq!(welcome[2]["authmethod"], "cryptosign");

        // The challenge signed as if there were no binding: refused.
        let mut unbound = Client::connect(addr, &ca).await;
        unbound.send(hello(&key, "tls-exporter")).await;
        let challenge = challenge_of(&unbound.recv().await);
        let signature = key.sign(&challenge).to_bytes();
        unbound
            .send(serde_json::json!([
                5,
                crate::cryptosign::hex_encode(&signature),
                {}
            ]))
            .await;
        let abort = unbound.recv().await;
        assert_eq!(abort[0], 3, "ABORT: {abort}");
        assert_eq!(abort[2], "wamp.error.not_authorized");

        // tls-unique is not offered; the reason says what is.
        let mut unique = Client::connect(addr, &ca).await;
        unique.send(hello(&key, "tls-unique")).await;
        let abort = unique.recv().await;
        assert_eq!(abort[0], 3, "ABORT: {abort}");
        assert!(
            abort[1]["message"]
                .as_str()
                .unwrap()
                .contains("tls-exporter"),
            "{abort}"
        );
        router.shut_down();
    }

    #[test]
    fn without_tls_a_binding_is_refused() {
        let auth = crate::auth::Authenticator::new(Arc::new(
            crate::config::Config::parse(
                "[[user]]\nauthid = \"signer\"\npubkeys = [\"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\"]\nrole = \"anonymous\"\n",
                "test",
            )
            .unwrap(),
        ));
        let details = match hello(&SigningKey::from_bytes(&[1u8; 32]), "tls-exporter") {
            serde_json::Value::Array(items) => items[2].clone(),
            _ => unreachable!(),
        };
        let details: fox_wamp_proto::Dict = serde_json::from_value(details).unwrap();
        let outcome = auth.hello("realm1", &details, 1, "n", "t", None);
        let crate::auth::HelloOutcome::Abort { reason, message } = outcome else {
            panic!("ABORT expected");
        };
        assert_eq!(reason, "wamp.error.invalid_argument");
        assert!(message.contains("needs a TLS connection"), "{message}");
    }
}
