//! WAMP-Cryptosign: Ed25519 challenge-response authentication (the WAMP spec's advanced
//! profile, as Crossbar.io and autobahn implement it), without channel binding.
//!
//! ```text
//! HELLO     authmethods [.., "cryptosign"], authid?, authextra {pubkey: hex(32 bytes)}
//! CHALLENGE "cryptosign", {challenge: hex(32 random bytes), channel_binding: null}
//! AUTHENTICATE signature: hex(Ed25519 signature of the challenge bytes, 64 bytes),
//!              optionally followed by hex(challenge) (autobahn sends the signed message)
//! ```
//!
//! A user's authorized keys are `pubkeys` in the config file (hex). A HELLO without authid
//! is matched by its public key.

use ed25519_dalek::{Signature, VerifyingKey};

/// Length of a challenge in bytes.
pub const CHALLENGE_BYTES: usize = 32;

/// Decodes lowercase or uppercase hex; `None` for anything else.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Lowercase hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An Ed25519 public key from its hex form (64 hex digits), if valid.
pub fn public_key(hex: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex_decode(hex)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Whether `signature_hex` (the AUTHENTICATE signature) is `key`'s signature of
/// `challenge`: 64 signature bytes, or those followed by the challenge itself.
pub fn verify(key: &VerifyingKey, challenge: &[u8; CHALLENGE_BYTES], signature_hex: &str) -> bool {
    let Some(bytes) = hex_decode(signature_hex) else {
        return false;
    };
    let signature = match bytes.len() {
        64 => &bytes[..],
        96 if bytes[64..] == challenge[..] => &bytes[..64],
        _ => return false,
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(challenge, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn signatures_verify_with_or_without_the_challenge_appended() {
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let key = public_key(&hex_encode(signing.verifying_key().as_bytes())).unwrap();
        let challenge = [42u8; CHALLENGE_BYTES];
        let signature = signing.sign(&challenge).to_bytes();
        let alone = hex_encode(&signature);
        assert!(verify(&key, &challenge, &alone));
        assert!(verify(&key, &challenge, &alone.to_uppercase()));
        let signed_message = format!("{alone}{}", hex_encode(&challenge));
        assert!(verify(&key, &challenge, &signed_message));
        // another challenge, a tampered signature, the wrong appended message, garbage
        assert!(!verify(&key, &[41u8; CHALLENGE_BYTES], &alone));
        let mut tampered = signature;
        tampered[0] ^= 1;
        assert!(!verify(&key, &challenge, &hex_encode(&tampered)));
        assert!(!verify(
            &key,
            &challenge,
            &format!("{alone}{}", hex_encode(&[0u8; 32]))
        ));
        assert!(!verify(&key, &challenge, "zz"));
        assert!(!verify(&key, &challenge, ""));
        // a different key
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(!verify(&other, &challenge, &alone));
    }

    #[test]
    fn public_keys_must_be_32_bytes_of_hex() {
        assert!(public_key(&"ab".repeat(31)).is_none());
        assert!(public_key(&"g0".repeat(32)).is_none());
        let valid = hex_encode(
            SigningKey::from_bytes(&[1u8; 32])
                .verifying_key()
                .as_bytes(),
        );
        assert!(public_key(&valid).is_some());
    }
}
