//! TLS for the client listeners (rustls, TLS 1.2 and 1.3 only, the ring crypto provider).
//!
//! `[tls]` in the configuration file names a PEM certificate chain and its private key, and
//! the listeners that speak TLS: MQTT (default 127.0.0.1:8883), WebSocket (WAMP at
//! `wss://.../ws`, MQTT at `wss://.../mqtt`) and WAMP RawSocket. With `client_ca`, clients
//! are asked for a certificate, verified against that CA; `client_cert = "required"`
//! refuses those without one. A verified certificate's common name or first DNS / e-mail
//! subject alternative name (`identity = "cn" | "san"`) can then stand for the client's
//! user name, as Mosquitto's `use_identity_as_username` does (see [`peer_identity`]).
//!
//! On SIGHUP the files are read again ([`Tls::reload`]): new connections use the new
//! certificate, established ones keep theirs. A file that cannot be read or does not fit
//! (a key that is not the certificate's) is refused with a log line and the old
//! configuration stays.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

mod settings;
pub use settings::{ClientCert, IdentitySource, TlsSettings};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the combination (a key that is not the certificate's, a CA that is
    /// not a CA certificate).
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The crypto provider: ring. rustls marks it deprecated because it has no post-quantum
/// key exchange; aws-lc-rs has, but its C build needs cmake, which a fresh machine lacks.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a rustls server configuration from the settings' files.
fn server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = read_certs(&settings.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| file_error(&settings.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| file_error(path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.client_cert {
                ClientCert::Required => verifier,
                ClientCert::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| file_error(path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", settings.key.display())))
}

/// The TLS side of the listeners: the current rustls configuration, replaced on reload.
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate, key and client CA.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let config = server_config(settings)?;
        Ok(Arc::new(Self {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again. On success new connections use them; on failure the old
    /// configuration stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        *crate::locks::write(&self.current) = Arc::new(config);
        Ok(())
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = crate::locks::read(&self.current).clone();
        TlsAcceptor::from(config)
    }

    /// The settings it was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// What the gates and the authenticator learn from a finished handshake.
    pub fn context(&self, connection: &rustls::ServerConnection) -> TlsContext {
        let mut exporter = [0u8; 32];
        let exported = connection
            .export_keying_material(&mut exporter, CHANNEL_BINDING_LABEL, None)
            .is_ok();
        TlsContext {
            identity: self.peer_identity(connection),
            exporter: exported.then_some(exporter),
        }
    }

    /// The client's name from its verified certificate, as the settings say
    /// (`identity`); `None` without a certificate or with `identity = "none"`.
    pub fn peer_identity(&self, connection: &rustls::ServerConnection) -> Option<String> {
        let leaf = connection.peer_certificates()?.first()?;
        peer_identity(leaf, self.settings.identity)
    }
}

/// RFC 9266's exporter label for the `tls-exporter` channel binding.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// What a TLS connection tells the session layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsContext {
    /// The client's name from its verified certificate (`[tls] identity`).
    pub identity: Option<String>,
    /// The `tls-exporter` channel binding (RFC 9266): 32 bytes of keying material both
    /// ends derive from this connection's secrets. WAMP-Cryptosign signs the challenge
    /// XORed with it, so a signature made for one connection is worthless on another.
    pub exporter: Option<[u8; 32]>,
}

/// The name a certificate gives its holder: its subject's common name, or its first DNS
/// name (else e-mail address) among the subject alternative names.
pub fn peer_identity(cert: &CertificateDer<'_>, source: IdentitySource) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    if source == IdentitySource::None {
        return None;
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    match source {
        IdentitySource::None => None,
        IdentitySource::Cn => parsed
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()
            .map(str::to_owned),
        IdentitySource::San => {
            let names = &parsed.subject_alternative_name().ok()??.value.general_names;
            let dns = names.iter().find_map(|n| match n {
                GeneralName::DNSName(name) => Some(*name),
                _ => None,
            });
            let email = || {
                names.iter().find_map(|n| match n {
                    GeneralName::RFC822Name(name) => Some(*name),
                    _ => None,
                })
            };
            dns.or_else(email).map(str::to_owned)
        }
    }
}

#[cfg(test)]
mod tests;
