//! Gateway session ids. Replicas share no state, so the `Mcp-Session-Id` the gateway hands a
//! client carries everything needed to continue the session: the upstream session id(s),
//! sealed with AES-256-GCM under a key every replica derives from the shared proxy key. The
//! seal also binds the session to the server and the subject that started it, so a session id
//! is useless to anyone else and on any other server.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::index::Subject;

const NONCE_LEN: usize = 12;
/// Domain separation: the proxy key authenticates snapshot pulls; this derivation gives the
/// session key its own identity.
const KEY_LABEL: &[u8] = b"mcpgate gateway session key v1\0";
/// Marks gateway session ids, so an id from elsewhere is told apart from a tampered one.
const PREFIX: &str = "mgs1.";

/// What one gateway session id carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySession {
    /// The server the session belongs to.
    #[serde(rename = "s")]
    pub server: i64,
    /// `u<id>` or `v<id>`: who started it.
    #[serde(rename = "p")]
    pub subject: String,
    /// One entry per upstream (one for a remote server, one per member of a virtual one): the
    /// upstream's session id, or `None` when the upstream runs without sessions.
    #[serde(rename = "u")]
    pub upstreams: Vec<Option<String>>,
    /// Virtual servers: the member server ids, in the order of `upstreams`, so a session
    /// started before the membership changed is recognised.
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<i64>,
    /// Members that could not be initialized when the session started.
    #[serde(rename = "f", default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<usize>,
    /// The client declared URL-mode elicitation at initialize.
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub url_elicitation: bool,
    /// Over an upstream that takes stateless requests: what the client declared it can be
    /// asked (elicitation, sampling, roots), which each request's envelope carries upstream.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

pub fn subject_tag(subject: Subject) -> String {
    match subject {
        Subject::User(id) => format!("u{id}"),
        Subject::VirtualAccount(id) => format!("v{id}"),
    }
}

/// The subject a `u<id>` / `v<id>` tag names.
pub fn subject_from_tag(tag: &str) -> Option<Subject> {
    let (kind, id) = tag.split_at_checked(1)?;
    let id = id.parse().ok()?;
    match kind {
        "u" => Some(Subject::User(id)),
        "v" => Some(Subject::VirtualAccount(id)),
        _ => None,
    }
}

#[derive(Clone)]
pub struct SessionSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSealer(..)")
    }
}

impl SessionSealer {
    pub fn from_proxy_key(proxy_key: &SecretString) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(KEY_LABEL);
        hasher.update(proxy_key.expose_secret().as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) }
    }

    /// A visible-ASCII id (base64url), as the transport requires of session ids.
    pub fn seal(&self, session: &GatewaySession) -> String {
        self.seal_as(PREFIX, session)
    }

    /// `None` for anything this key did not seal, tampered or truncated.
    pub fn open(&self, id: &str) -> Option<GatewaySession> {
        self.open_as(PREFIX, id)
    }

    /// Seals any state a replica hands out for another replica to continue, as `prefix`
    /// followed by base64url. The prefix is also the ciphertext's associated data, so a value
    /// sealed as one kind of state never opens as another (session ids keep the empty
    /// associated data they were always sealed with, so ids handed out before stay valid).
    pub fn seal_as<T: Serialize>(&self, prefix: &str, value: &T) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Serializing plain data cannot fail; encryption fails only past 64 GiB of input.
        let plaintext = serde_json::to_vec(value).unwrap_or_default();
        let payload = Payload { msg: plaintext.as_slice(), aad: associated(prefix) };
        let ciphertext = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What `seal_as` sealed under the same prefix; `None` for anything else.
    pub fn open_as<T: DeserializeOwned>(&self, prefix: &str, sealed: &str) -> Option<T> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(prefix)?).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload { msg: ciphertext, aad: associated(prefix) };
        let plaintext = self.cipher.decrypt(Nonce::from_slice(nonce), payload).ok()?;
        serde_json::from_slice(&plaintext).ok()
    }
}

fn associated(prefix: &str) -> &[u8] {
    if prefix == PREFIX {
        b""
    } else {
        prefix.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GatewaySession {
        GatewaySession {
            server: 7,
            subject: "u3".into(),
            upstreams: vec![Some("abc-123".into()), None],
            members: vec![4, 5],
            failed: vec![1],
            url_elicitation: true,
            input: Some(serde_json::json!({"elicitation": {}})),
        }
    }

    #[test]
    fn any_replica_with_the_proxy_key_opens_what_another_sealed() {
        let a = SessionSealer::from_proxy_key(&SecretString::from("mgw_proxy_shared".to_owned()));
        let b = SessionSealer::from_proxy_key(&SecretString::from("mgw_proxy_shared".to_owned()));
        let id = a.seal(&sample());
        assert!(id.bytes().all(|c| (0x21..=0x7e).contains(&c)), "visible ASCII only");
        assert!(!id.contains("abc-123"), "upstream session ids are not readable");
        assert_eq!(b.open(&id), Some(sample()));
    }

    #[test]
    fn tampered_foreign_and_garbage_ids_do_not_open() {
        let sealer = SessionSealer::from_proxy_key(&SecretString::from("k1".to_owned()));
        let other = SessionSealer::from_proxy_key(&SecretString::from("k2".to_owned()));
        let id = sealer.seal(&sample());
        assert_eq!(other.open(&id), None);
        let mut tampered = id.clone().into_bytes();
        let at = tampered.len() - 3;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer.open(&String::from_utf8(tampered).unwrap()), None);
        assert_eq!(sealer.open("mgs1."), None);
        assert_eq!(sealer.open("3f0c2d8e-upstream-id"), None);
    }

    #[test]
    fn a_value_sealed_as_one_kind_of_state_does_not_open_as_another() {
        let sealer = SessionSealer::from_proxy_key(&SecretString::from("k1".to_owned()));
        let id = sealer.seal(&sample());
        let relabelled = id.replacen(PREFIX, "other.", 1);
        assert_eq!(sealer.open_as::<GatewaySession>("other.", &relabelled), None);
        let state = sealer.seal_as("other.", &sample());
        assert_eq!(sealer.open_as::<GatewaySession>("other.", &state), Some(sample()));
    }
}
