//! `[admin]` of the configuration file, and `--admin`: where the admin listener listens
//! and its bearer token (re-exported by [`crate::config`]).

use std::net::SocketAddr;

use serde::Deserialize;

/// The admin listener's default address.
pub const ADMIN_LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8090);

/// Where the admin listener listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdminListen {
    /// Nothing configured: [`ADMIN_LISTEN_DEFAULT`]; when that address cannot be bound
    /// (another router on the machine has it), the router warns and runs without.
    #[default]
    Default,
    /// `off` (or `""`): no admin listener.
    Off,
    /// An address given in the file or with `--admin`: it must bind.
    At(SocketAddr),
}

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" | "off" => Ok(Self::Off),
            address => address
                .parse()
                .map(Self::At)
                .map_err(|_| format!("'{address}' is neither an address (host:port) nor \"off\"")),
        }
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The admin HTTP listener: metrics, health, JSON status, session kicks.
///
/// ```toml
/// [admin]
/// listen = "127.0.0.1:8090"   # default; "off" turns it off
/// token = "..."               # bearer token; required on an address other than loopback
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Where it listens. Default 127.0.0.1:8090 (see [`AdminListen::Default`]).
    pub listen: AdminListen,
    /// Requests must carry `Authorization: Bearer <token>` when set. Required when
    /// `listen` is not a loopback address. Default none.
    pub token: Option<String>,
}

impl AdminSettings {
    /// Checks the settings: a token is not empty, and a listener on an address other than
    /// loopback has one.
    pub fn validate(&self) -> Result<(), String> {
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err("admin.token must not be empty (leave it out for none)".to_owned());
        }
        if let AdminListen::At(address) = self.listen {
            if !address.ip().is_loopback() && self.token.is_none() {
                return Err(format!(
                    "the admin listener on {address} is reachable from other machines: \
                     set admin.token in the config file (or listen on a loopback address)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_listener_settings() {
        let c = crate::config::Config::parse("", "t").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Default);
        assert_eq!(c.admin.token, None);
        let c = crate::config::Config::parse("[admin]\nlisten = \"off\"\n", "t").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Off);
        let c = crate::config::Config::parse("[admin]\nlisten = \"\"\n", "t").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Off);
        let c = crate::config::Config::parse("[admin]\nlisten = \"127.0.0.1:0\"\n", "t").unwrap();
        assert_eq!(
            c.admin.listen,
            AdminListen::At("127.0.0.1:0".parse().unwrap())
        );
        let err = crate::config::Config::parse("[admin]\nlisten = \"nowhere\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("nowhere"), "{err}");
        let err = crate::config::Config::parse("[admin]\nlisten = \"0.0.0.0:8090\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin.token"), "{err}");
        let c = crate::config::Config::parse(
            "[admin]\nlisten = \"0.0.0.0:8090\"\ntoken = \"t0ken\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.admin.token.as_deref(), Some("t0ken"));
        let c = crate::config::Config::parse("[admin]\nlisten = \"[::1]:8090\"\n", "t").unwrap();
        assert!(matches!(c.admin.listen, AdminListen::At(a) if a.ip().is_loopback()));
        let err = crate::config::Config::parse("[admin]\ntoken = \"\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not be empty"), "{err}");
        let err = crate::config::Config::parse("[admin]\nport = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }
}
