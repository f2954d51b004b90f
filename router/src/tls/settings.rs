//! `[tls]` settings: what the configuration file says (std + serde only, so that the
//! `router_config` fuzz target can compile it without rustls; see docs/fuzzing.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Whether clients must present a certificate (with `client_ca`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// Asked for, verified when given; a client without one is still served.
    #[default]
    Optional,
    /// A client without a valid certificate is refused during the TLS handshake.
    Required,
}

/// What of a verified client certificate names the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// The certificate does not name the client (it only opens the door).
    #[default]
    None,
    /// The subject's common name.
    Cn,
    /// The first DNS name, else the first e-mail address, among the subject alternative
    /// names.
    San,
}

/// `[tls]`: certificate, key, client certificates and the TLS listeners.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first. Relative paths are relative to the
    /// configuration file's directory.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates are verified against. Without it,
    /// clients are not asked for one.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `optional` (default) or `required`.
    pub client_cert: ClientCert,
    /// With `client_ca`: `none` (default), `cn` or `san` (see [`IdentitySource`]).
    pub identity: IdentitySource,
    /// The role of a client named by its certificate when no `[[user]]` has that name;
    /// without it such a client is refused (a `[[user]]` of that name gives its role).
    pub identity_role: Option<String>,
    /// MQTT over TLS. Default 127.0.0.1:8883; `""` turns it off.
    #[serde(deserialize_with = "crate::config::optional_addr")]
    pub mqtt: Option<SocketAddr>,
    /// WebSocket over TLS (WAMP at `/ws`, MQTT at `/mqtt`). Default off.
    #[serde(deserialize_with = "crate::config::optional_addr")]
    pub ws: Option<SocketAddr>,
    /// WAMP RawSocket over TLS. Default off.
    #[serde(deserialize_with = "crate::config::optional_addr")]
    pub rawsocket: Option<SocketAddr>,
    /// The admin listener speaks HTTPS with the same certificate. Default false.
    pub admin: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: None,
            client_cert: ClientCert::default(),
            identity: IdentitySource::default(),
            identity_role: None,
            mqtt: Some(SocketAddr::from(([127, 0, 0, 1], 8883))),
            ws: None,
            rawsocket: None,
            admin: false,
        }
    }
}

impl TlsSettings {
    /// Makes relative file names relative to `dir` (the configuration file's directory).
    pub fn resolve_paths(&mut self, dir: &Path) {
        for path in [&mut self.cert, &mut self.key] {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = dir.join(&*path);
            }
        }
        if let Some(path) = self.client_ca.as_mut().filter(|p| p.is_relative()) {
            *path = dir.join(&*path);
        }
    }

    /// What is wrong with the settings on their face (files are read by [`Tls::load`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.cert.as_os_str().is_empty() || self.key.as_os_str().is_empty() {
            return Err("[tls] needs both cert and key".to_owned());
        }
        if self.client_ca.is_none() && self.client_cert == ClientCert::Required {
            return Err("[tls] client_cert = \"required\" needs client_ca".to_owned());
        }
        if self.client_ca.is_none() && self.identity != IdentitySource::None {
            return Err("[tls] identity needs client_ca".to_owned());
        }
        if self.identity_role.is_some() && self.identity == IdentitySource::None {
            return Err("[tls] identity_role needs identity = \"cn\" or \"san\"".to_owned());
        }
        Ok(())
    }
}
