//! Secrets at rest are sealed with AES-256-GCM under the master key: `MCPGATE_MASTER_KEY`
//! (base64, 32 bytes) or, without it, a key file created in the data directory on first start
//! with mode 0600. A sealed value is `v2:` + base64(nonce ‖ ciphertext ‖ tag), with the place it
//! is stored at (table, column, row) bound in as associated data, so a value copied into
//! another row or column does not open; `v1:` values (sealed before places were bound) still
//! open, and `mcpgate keys rotate-master` re-seals them bound.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

const VERSION: &str = "v1:";
const BOUND: &str = "v2:";
const NONCE_LEN: usize = 12;
pub const KEY_FILE: &str = "master.key";

/// Where a sealed value is stored: its table, column and row, by a key that does not change for
/// the life of the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place(String);

impl Place {
    fn new(table: &str, column: &str, row: impl std::fmt::Display) -> Self {
        Self(format!("mcpgate:{table}.{column}:{row}"))
    }

    /// A server's outbound auth (slugs never change).
    pub fn server_auth(tenant_id: i64, slug: &str) -> Self {
        Self::new("servers", "auth_data", format!("{tenant_id}/{slug}"))
    }

    /// A virtual server's own credential for one member.
    pub fn member_auth(tenant_id: i64, virtual_slug: &str, member_slug: &str) -> Self {
        Self::new("virtual_members", "auth_data", format!("{tenant_id}/{virtual_slug}/{member_slug}"))
    }

    /// One subject's Auth Override on one server.
    pub fn override_values(server_id: i64, subject_kind: &str, subject_id: i64) -> Self {
        Self::new("auth_overrides", "values", format!("{server_id}/{subject_kind}/{subject_id}"))
    }

    /// A user's upstream grant: `access_token` or `refresh_token`.
    pub fn grant(server_id: i64, user_id: i64, column: &str) -> Self {
        Self::new("upstream_grants", column, format!("{server_id}/{user_id}"))
    }

    /// The PKCE verifier of an authorization in progress, by its state's digest.
    pub fn auth_state(state_digest: &str) -> Self {
        Self::new("upstream_auth_states", "verifier", state_digest)
    }

    /// The gateway's client secret at a server's provider.
    pub fn upstream_client(server_id: i64) -> Self {
        Self::new("upstream_clients", "client_secret", server_id)
    }

    /// A snapshot signing key.
    pub fn signing_key(kid: &str) -> Self {
        Self::new("signing_keys", "private_key", kid)
    }

    /// A rotated virtual-account token waiting to be claimed, by the token's public id.
    pub fn idp_secret(idp_id: i64) -> Self {
        Self::new("identity_providers", "client_secret", idp_id)
    }

    pub fn idp_session(user_id: i64, idp_id: i64) -> Self {
        Self::new("idp_sessions", "refresh_token", format!("{user_id}/{idp_id}"))
    }

    /// A sign-in at an identity provider in progress, kept in the browser's cookie.
    pub fn sso_flow() -> Self {
        Self::new("browser", "sso_flow", "-")
    }

    pub fn pending_token(public_id: &str) -> Self {
        Self::new("access_tokens", "pending_secret", public_id)
    }
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD.decode(encoded.trim()).context("the master key is not valid base64")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("the master key must be exactly 32 bytes (base64-encoded)"))
}

impl Sealer {
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) }
    }

    /// The configured key, or the key file in `data_dir` (created on first use).
    pub fn load(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(key) = configured {
            return Ok(Self::from_key(decode_key(key.expose_secret()).context("MCPGATE_MASTER_KEY")?));
        }
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            let encoded = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(Self::from_key(decode_key(&encoded).with_context(|| path.display().to_string())?));
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        write_private(&path, &STANDARD.encode(key))?;
        tracing::info!(path = %path.display(), "created a new master key file");
        Ok(Self::from_key(key))
    }

    /// A new master key — the given one, or fresh random bytes — and its sealer.
    pub fn new_key(configured: Option<&SecretString>) -> anyhow::Result<(SecretString, Self)> {
        let key = match configured {
            Some(k) => decode_key(k.expose_secret()).context("MCPGATE_NEW_MASTER_KEY")?,
            None => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        Ok((SecretString::from(STANDARD.encode(key)), Self::from_key(key)))
    }

    /// Seals a value that travels rather than rests (no place to bind it to).
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<String> {
        self.seal_with(plaintext, b"", VERSION)
    }

    /// Seals a value to be stored at `place`.
    pub fn seal_at(&self, plaintext: &[u8], place: &Place) -> anyhow::Result<String> {
        self.seal_with(plaintext, place.0.as_bytes(), BOUND)
    }

    /// Opens a value stored at `place`: sealed for exactly that place, or unbound (`v1:`, from
    /// before places were bound).
    pub fn open_at(&self, sealed: &str, place: &Place) -> anyhow::Result<Vec<u8>> {
        match sealed.strip_prefix(BOUND) {
            Some(encoded) => self.open_with(encoded, place.0.as_bytes()),
            None => self.open(sealed),
        }
    }

    /// Opens a value sealed without a place (values that travel rather than rest, and `v1:`).
    pub fn open(&self, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let Some(encoded) = sealed.strip_prefix(VERSION) else { bail!("unknown sealed-value format") };
        self.open_with(encoded, b"")
    }

    /// `prefix` + base64(nonce ‖ ciphertext ‖ tag); an unbound value is one with no
    /// associated data.
    fn seal_with(&self, plaintext: &[u8], aad: &[u8], prefix: &str) -> anyhow::Result<String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{prefix}{}", STANDARD.encode(out)))
    }

    fn open_with(&self, encoded: &str, aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let bytes = STANDARD.decode(encoded).context("sealed value is not base64")?;
        if bytes.len() < NONCE_LEN {
            bail!("sealed value is too short");
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .map_err(|_| anyhow::anyhow!("sealed value does not open here (another master key, or another place)"))
    }
}

/// Writes a new key file beside the current one; `commit_key_file` puts it in place.
pub fn stage_key_file(data_dir: &Path, encoded: &SecretString) -> anyhow::Result<std::path::PathBuf> {
    let staged = data_dir.join(format!("{KEY_FILE}.new"));
    if staged.exists() {
        std::fs::remove_file(&staged).with_context(|| format!("removing {}", staged.display()))?;
    }
    write_private(&staged, encoded.expose_secret())?;
    Ok(staged)
}

/// Replaces the key file with the staged one (an atomic rename).
pub fn commit_key_file(data_dir: &Path, staged: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(KEY_FILE);
    std::fs::rename(staged, &path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

pub const PROXY_KEY_FILE: &str = "proxy.key";

/// The proxy credential: configured, or read from (or created in) the data directory.
pub fn load_proxy_key(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<SecretString> {
    if let Some(key) = configured {
        return Ok(key.clone());
    }
    let path = data_dir.join(PROXY_KEY_FILE);
    if path.exists() {
        let key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(SecretString::from(key.trim().to_owned()));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = format!("mgw_proxy_{}", crate::auth::session::random_secret());
    write_private(&path, &key)?;
    Ok(SecretString::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_at_its_own_place() {
        let sealer = Sealer::from_key([7; 32]);
        let alice = Place::override_values(3, "user", 1);
        let mallory = Place::override_values(3, "user", 2);
        let sealed = sealer.seal_at(b"alice's key", &alice).unwrap();
        assert!(sealed.starts_with("v2:"));
        assert_eq!(sealer.open_at(&sealed, &alice).unwrap(), b"alice's key");
        assert!(sealer.open_at(&sealed, &mallory).is_err(), "swapped into another row");
        assert!(sealer.open_at(&sealed, &Place::grant(3, 1, "access_token")).is_err(), "another column");
        assert!(sealer.open(&sealed).is_err(), "a bound value needs its place");
        // Values sealed before places were bound still open, wherever they are read.
        let legacy = sealer.seal(b"old").unwrap();
        assert_eq!(sealer.open_at(&legacy, &alice).unwrap(), b"old");
    }

    #[test]
    fn seals_and_opens_and_detects_tampering() {
        let sealer = Sealer::from_key([7; 32]);
        let sealed = sealer.seal(b"top secret").unwrap();
        assert!(!sealed.contains("top secret"));
        assert_ne!(sealed, sealer.seal(b"top secret").unwrap(), "fresh nonce each time");
        assert_eq!(sealer.open(&sealed).unwrap(), b"top secret");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(sealer.open(&String::from_utf8(tampered).unwrap()).is_err());
        assert!(Sealer::from_key([8; 32]).open(&sealed).is_err(), "another key cannot open it");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Sealer::load(None, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal(b"x").unwrap();
        assert_eq!(Sealer::load(None, dir.path()).unwrap().open(&sealed).unwrap(), b"x");
        let configured = SecretString::from(STANDARD.encode([1u8; 32]));
        assert!(Sealer::load(Some(&configured), dir.path()).unwrap().open(&sealed).is_err());
        assert!(Sealer::load(Some(&SecretString::from("short".to_owned())), dir.path()).is_err());
    }
}
