//! Bearer token format: `mgw_pat_…` (personal access tokens) and `mgw_va_…` (virtual-account
//! tokens). After the prefix come 43 base62 characters drawn uniformly from the OS CSPRNG
//! (43 × log2 62 ≈ 256 bits) and 6 base62 characters of CRC32 over everything before them.
//! The checksum lets the gateway reject a mistyped or truncated token without a database
//! lookup, and lets secret scanners recognise real tokens. Only the SHA-256 digest is stored.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

const SECRET_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Characters of the token shown in lists so people can tell tokens apart.
const DISPLAY_SECRET_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    PersonalAccess,
    VirtualAccount,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::PersonalAccess => "mgw_pat_",
            Self::VirtualAccount => "mgw_va_",
        }
    }

    /// The value stored in `access_tokens.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PersonalAccess => "pat",
            Self::VirtualAccount => "va",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value; `None` for other schemes.
pub fn from_bearer_header(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// A freshly generated token: the secret (shown once) and what is stored about it.
pub struct NewToken {
    pub secret: String,
    pub digest: String,
    pub display_prefix: String,
}

fn base62_u32(mut n: u32) -> String {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

fn checksum(body: &str) -> String {
    base62_u32(crc32fast::hash(body.as_bytes()))
}

/// SHA-256 of the token, as the proxy looks it up.
pub fn digest_bytes(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Hex SHA-256 of the token, as the store keeps it.
pub fn digest(token: &str) -> String {
    hex::encode(digest_bytes(token))
}

pub fn generate(kind: TokenKind) -> NewToken {
    // ThreadRng is a CSPRNG (ChaCha) reseeded from the OS; the secret needs nothing stronger.
    let body = format!("{}{}", kind.prefix(), Alphanumeric.sample_string(&mut rand::rng(), SECRET_LEN));
    let secret = format!("{body}{}", checksum(&body));
    let display_prefix = secret[..kind.prefix().len() + DISPLAY_SECRET_CHARS].to_owned();
    NewToken { digest: digest(&secret), display_prefix, secret }
}

/// Checks the shape and checksum of a presented token. `None` means it cannot be one of ours,
/// so no lookup is needed.
pub fn parse(token: &str) -> Option<TokenKind> {
    let kind =
        [TokenKind::PersonalAccess, TokenKind::VirtualAccount].into_iter().find(|k| token.starts_with(k.prefix()))?;
    let rest = &token[kind.prefix().len()..];
    if rest.len() != SECRET_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (body, sum) = token.split_at(token.len() - CHECKSUM_LEN);
    (checksum(body) == sum).then_some(kind)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        for kind in [TokenKind::PersonalAccess, TokenKind::VirtualAccount] {
            let a = generate(kind);
            let b = generate(kind);
            assert_ne!(a.secret, b.secret);
            assert_eq!(parse(&a.secret), Some(kind));
            assert!(a.secret.starts_with(kind.prefix()));
            assert!(a.secret.starts_with(&a.display_prefix));
            assert_eq!(a.digest, digest(&a.secret));
            assert_eq!(a.digest.len(), 64);
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let t = generate(TokenKind::PersonalAccess).secret;
        assert_eq!(parse(&t[..t.len() - 1]), None, "truncated");
        assert_eq!(parse(&format!("{t}x")), None, "extended");
        assert_eq!(parse(&t.replacen("mgw_pat_", "mgw_va_", 1)), None, "other kind, same body");
        assert_eq!(parse("mgw_pat_"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse(&t.replacen("mgw_pat_", "ghp_", 1)), None);
    }

    proptest! {
        /// Any change to a valid token, however small, yields something that does not parse
        /// or is a different token altogether (a different digest, so it authenticates nothing).
        #[test]
        fn random_mutations_never_pass_as_the_original(pos in 0usize..57, replacement in any::<char>(), cut in 0usize..57) {
            let token = generate(TokenKind::PersonalAccess).secret;
            let mut chars: Vec<char> = token.chars().collect();
            let pos = pos % chars.len();
            prop_assume!(chars[pos] != replacement);
            chars[pos] = replacement;
            let substituted: String = chars.into_iter().collect();
            let truncated = token[..cut % token.len()].to_owned();
            for mutated in [substituted, truncated] {
                prop_assert!(parse(&mutated).is_none() || digest(&mutated) != digest(&token));
                // A single substituted character is always caught by the CRC.
                prop_assert!(parse(&mutated).is_none(), "{} passed the checksum", mutated);
            }
        }
    }
}
