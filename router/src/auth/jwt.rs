//! JWT tickets and MQTT passwords: the signature (one configured algorithm and key),
//! `exp`, `nbf`, `aud` and `iss` are checked, and two claims give the authid and the role.
//!
//! Runs synchronously in the connection task: a verification is a few microseconds
//! (HMAC) to a fraction of a millisecond (RSA), no I/O.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::settings::{covers, JwtSettings};

/// Why a token is refused: logged, never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtRefused {
    /// `exp` is past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not verify with the configured key.
    #[error("bad token signature")]
    BadSignature,
    /// Signed with another algorithm than the configured one.
    #[error("wrong token algorithm")]
    WrongAlgorithm,
    /// `aud` does not name the configured audience.
    #[error("wrong token audience")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// A claim that must be there is missing, or not a string.
    #[error("token claim '{0}' missing or not a string")]
    MissingClaim(String),
    /// Not a token at all, or its parts do not decode.
    #[error("malformed token")]
    Malformed,
}

/// Verifies tokens with one key, as `[auth.jwt]` configures it.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    authid_claim: String,
    role_claim: String,
    role_default: Option<String>,
    realms: Vec<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("authid_claim", &self.authid_claim)
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// The verifier of these settings; why not, when the key does not fit the algorithm or
    /// cannot be read.
    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        let key = decoding_key(settings)?;
        let mut validation = Validation::new(settings.algorithm);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        // Without a configured audience, validate_aud (on by default) refuses a token that
        // names one: it is meant for someone else.
        if let Some(audience) = &settings.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            authid_claim: settings.authid_claim.clone(),
            role_claim: settings.role_claim.clone(),
            role_default: settings.role_default.clone(),
            realms: settings.realms.clone(),
        })
    }

    /// Whether tokens are accepted on this realm.
    pub fn covers(&self, realm: &str) -> bool {
        covers(&self.realms, realm)
    }

    /// The token's authid and role, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<(String, String), JwtRefused> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| refusal(e.kind()))?;
        map_claims(
            &data.claims,
            &self.authid_claim,
            &self.role_claim,
            self.role_default.as_deref(),
        )
    }
}

fn decoding_key(settings: &JwtSettings) -> Result<DecodingKey, String> {
    let family = settings.algorithm.family();
    match (family, &settings.secret, &settings.public_key_file) {
        (AlgorithmFamily::Hmac, Some(secret), None) if !secret.is_empty() => {
            Ok(DecodingKey::from_secret(secret.as_bytes()))
        }
        (AlgorithmFamily::Hmac, _, _) => Err(format!(
            "auth.jwt: {:?} needs a non-empty secret and no public_key_file",
            settings.algorithm
        )),
        (_, None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "auth.jwt: cannot read public_key_file {}: {e}",
                    path.display()
                )
            })?;
            let key = match family {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            };
            key.map_err(|e| {
                format!(
                    "auth.jwt: public_key_file {} is not a {:?} public key: {e}",
                    path.display(),
                    settings.algorithm
                )
            })
        }
        _ => Err(format!(
            "auth.jwt: {:?} needs a public_key_file and no secret",
            settings.algorithm
        )),
    }
}

fn refusal(kind: &ErrorKind) -> JwtRefused {
    match kind {
        ErrorKind::ExpiredSignature => JwtRefused::Expired,
        ErrorKind::ImmatureSignature => JwtRefused::NotYetValid,
        ErrorKind::InvalidSignature => JwtRefused::BadSignature,
        ErrorKind::InvalidAlgorithm => JwtRefused::WrongAlgorithm,
        ErrorKind::InvalidAudience => JwtRefused::WrongAudience,
        ErrorKind::InvalidIssuer => JwtRefused::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => JwtRefused::MissingClaim(claim.clone()),
        _ => JwtRefused::Malformed,
    }
}

/// The authid and role from a token's claims: the authid claim must be a string; the role
/// claim a string or a list whose first string counts, else `role_default` if set.
pub fn map_claims(
    claims: &Map<String, Value>,
    authid_claim: &str,
    role_claim: &str,
    role_default: Option<&str>,
) -> Result<(String, String), JwtRefused> {
    let authid = claims
        .get(authid_claim)
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| JwtRefused::MissingClaim(authid_claim.to_owned()))?;
    let role = match claims.get(role_claim) {
        Some(Value::String(role)) => Some(role.as_str()),
        Some(Value::Array(roles)) => roles.iter().find_map(Value::as_str),
        _ => None,
    }
    .filter(|r| !r.is_empty())
    .or(role_default)
    .ok_or_else(|| JwtRefused::MissingClaim(role_claim.to_owned()))?;
    Ok((authid.to_owned(), role.to_owned()))
}

/// Whether a credential has a JWT's shape (three base64url parts, the first two
/// non-empty), so that it goes to the JWT verifier rather than the other authenticators.
pub fn looks_like_jwt(credential: &str) -> bool {
    let parts: Vec<&str> = credential.split('.').collect();
    let base64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| base64url(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
    use serde_json::json;

    fn settings(audience: Option<&str>) -> JwtSettings {
        let text = match audience {
            Some(a) => format!("algorithm = \"HS256\"\nsecret = \"k\"\naudience = \"{a}\"\n"),
            None => "algorithm = \"HS256\"\nsecret = \"k\"\n".to_owned(),
        };
        toml::from_str(&text).unwrap()
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn claims_map_to_authid_and_role() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let ok = claims(json!({"sub": "joe", "role": "backend"}));
        assert_eq!(
            map_claims(&ok, "sub", "role", None),
            Ok(("joe".to_owned(), "backend".to_owned()))
        );
        let custom = claims(json!({"user": "ann", "roles": ["ops", "dev"]}));
        assert_eq!(
            map_claims(&custom, "user", "roles", None),
            Ok(("ann".to_owned(), "ops".to_owned()))
        );
        let no_role = claims(json!({"sub": "joe"}));
        assert_eq!(
            map_claims(&no_role, "sub", "role", None),
            Err(JwtRefused::MissingClaim("role".to_owned()))
        );
        assert_eq!(
            map_claims(&no_role, "sub", "role", Some("device"))
                .unwrap()
                .1,
            "device"
        );
        let numeric_sub = claims(json!({"sub": 7, "role": "r"}));
        assert_eq!(
            map_claims(&numeric_sub, "sub", "role", None),
            Err(JwtRefused::MissingClaim("sub".to_owned()))
        );
    }

    #[test]
    fn verification_reasons() {
        let now = get_current_timestamp();
        let verifier = JwtVerifier::new(&settings(Some("fox"))).unwrap();
        let good = json!({"sub": "joe", "role": "r", "aud": "fox", "exp": now + 600});
        assert_eq!(verifier.verify(&token(good.clone(), "k")).unwrap().0, "joe");
        let mut expired = good.clone();
        expired["exp"] = json!(now - 3600);
        assert_eq!(
            verifier.verify(&token(expired, "k")),
            Err(JwtRefused::Expired)
        );
        let mut early = good.clone();
        early["nbf"] = json!(now + 3600);
        assert_eq!(
            verifier.verify(&token(early, "k")),
            Err(JwtRefused::NotYetValid)
        );
        let mut other_audience = good.clone();
        other_audience["aud"] = json!("someone-else");
        assert_eq!(
            verifier.verify(&token(other_audience, "k")),
            Err(JwtRefused::WrongAudience)
        );
        assert_eq!(
            verifier.verify(&token(good.clone(), "other-key")),
            Err(JwtRefused::BadSignature)
        );
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &good,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(verifier.verify(&hs384), Err(JwtRefused::WrongAlgorithm));
        assert_eq!(verifier.verify("a.b.c"), Err(JwtRefused::Malformed));
        // Without a configured audience, a token naming one is refused.
        let verifier = JwtVerifier::new(&settings(None)).unwrap();
        assert_eq!(
            verifier.verify(&token(good, "k")),
            Err(JwtRefused::WrongAudience)
        );
    }

    #[test]
    fn key_must_fit_the_algorithm() {
        let text = "algorithm = \"RS256\"\nsecret = \"k\"\n";
        let rs: JwtSettings = toml::from_str(text).unwrap();
        assert!(JwtVerifier::new(&rs)
            .unwrap_err()
            .contains("public_key_file"));
        let text = "algorithm = \"EdDSA\"\npublic_key_file = \"/nonexistent.pem\"\n";
        let ed: JwtSettings = toml::from_str(text).unwrap();
        assert!(JwtVerifier::new(&ed).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqb2UifQ.c2ln"
        ));
        assert!(!looks_like_jwt("s3cret"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
    }
}
