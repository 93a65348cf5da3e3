//! Layered configuration: built-in defaults < `mcpgate.toml` (or `--config FILE`) <
//! `MCPGATE_*` environment variables (`__` separates nested keys) < command-line flags.
//! `DATABASE_URL` is honoured as well, as the conventional name.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Base URL users reach the gateway at; used in MCP URLs and metadata.
    pub public_url: Option<String>,
    /// Holds the SQLite database and key files.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite in the data directory.
    pub database_url: Option<SecretString>,
    /// First platform admin, created on an empty database.
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    /// Console session lifetime in minutes.
    pub session_ttl_minutes: u32,
    /// Failed sign-ins allowed per account within `login_window_minutes` before refusing.
    pub login_max_failures: u32,
    pub login_window_minutes: u32,
    /// Maximum database connections in the pool.
    pub db_max_connections: u32,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Master key (base64, 32 bytes) sealing secrets at rest; without it a key file in the data
    /// directory is used (created on first start, mode 0600).
    pub master_key: Option<SecretString>,
    /// Credential proxies present to read policy snapshots; without it a key file in the data
    /// directory is used (created on first start, mode 0600; `mcpgate proxy-key` prints it).
    pub proxy_key: Option<SecretString>,
    /// Longest lifetime of a personal access token, in days; also the default lifetime.
    pub pat_max_lifetime_days: u32,
    /// How often coalesced `last_used_at` updates are written, in seconds.
    pub token_usage_flush_seconds: u32,
    /// Upper bound on an upstream probe (connect, initialize, tools/list), in seconds.
    pub probe_timeout_seconds: u32,
    /// Longest wait for an upstream's response headers, in seconds; past it the client gets a
    /// JSON-RPC error instead of a hang.
    pub upstream_timeout_seconds: u32,
    /// Requests and streams the proxy serves at once; past it, `503` with a JSON-RPC error.
    pub proxy_max_concurrent: usize,
    /// MCP requests one identity (user or virtual account) may make per minute through one
    /// proxy process, in bursts up to the same number; past it, `429`. 0 turns it off.
    pub proxy_rate_limit_per_minute: u32,
    /// Lifetime of the access tokens the gateway's authorization server issues, in seconds.
    pub oauth_access_token_ttl_seconds: u32,
    /// A client's sign-in ends when it has not refreshed for this long (hours)…
    pub oauth_sign_in_idle_hours: u32,
    /// …and at the latest this long after the user approved it (hours); then the user signs in again.
    pub oauth_sign_in_max_hours: u32,
    /// Lets Client ID Metadata Documents be fetched from private and loopback addresses (and
    /// from `http://` on loopback): for development and tests, never on a public gateway.
    pub oauth_cimd_allow_private: bool,
    /// Lets upstream requests (proxy, probe, upstream OAuth) reach private, loopback,
    /// link-local and reserved addresses. Off by default: a member registering a server must
    /// not be able to make the gateway call its own network.
    pub upstream_allow_private: bool,
    /// Networks (CIDR) upstream requests may reach even though they are private.
    #[serde(default, deserialize_with = "comma_list")]
    pub upstream_allowed_networks: Vec<String>,
    /// Browser origins allowed besides the public URL's own (comma-separated in the env).
    #[serde(default, deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
    /// The control plane a standalone `mcpgate proxy` replica follows: one base URL, or
    /// several comma-separated (control planes on one database), tried in turn when one fails.
    pub control_plane: Option<String>,
    /// On SIGTERM: how long requests and streams in flight may take to finish before they are
    /// cut, in seconds.
    pub shutdown_timeout_seconds: u32,
    /// Whether a replica takes policy updates as signed deltas (default) or always in full.
    pub snapshot_deltas: bool,
    /// Address for Prometheus `GET /metrics`, e.g. `127.0.0.1:9464`. Not served when unset,
    /// and never on `listen`: the metrics name tenants and servers.
    pub metrics_listen: Option<String>,
    /// `tracing` filter, e.g. `info` or `mcpgate=debug`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The defaults, as a serializable document so figment can layer the others on top.
#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    data_dir: &'static str,
    session_ttl_minutes: u32,
    login_max_failures: u32,
    login_window_minutes: u32,
    db_max_connections: u32,
    workers: usize,
    probe_timeout_seconds: u32,
    pat_max_lifetime_days: u32,
    token_usage_flush_seconds: u32,
    upstream_timeout_seconds: u32,
    proxy_max_concurrent: usize,
    proxy_rate_limit_per_minute: u32,
    oauth_access_token_ttl_seconds: u32,
    oauth_sign_in_idle_hours: u32,
    oauth_sign_in_max_hours: u32,
    oauth_cimd_allow_private: bool,
    upstream_allow_private: bool,
    shutdown_timeout_seconds: u32,
    snapshot_deltas: bool,
    log: &'static str,
    log_format: LogFormat,
}

const DEFAULTS: Defaults = Defaults {
    listen: "127.0.0.1:8080",
    data_dir: "./data",
    session_ttl_minutes: 12 * 60,
    login_max_failures: 5,
    login_window_minutes: 15,
    db_max_connections: 10,
    workers: 0,
    probe_timeout_seconds: 10,
    pat_max_lifetime_days: 365,
    token_usage_flush_seconds: 30,
    upstream_timeout_seconds: 120,
    proxy_max_concurrent: 4096,
    proxy_rate_limit_per_minute: 3000,
    oauth_access_token_ttl_seconds: 3600,
    oauth_sign_in_idle_hours: 14 * 24,
    oauth_sign_in_max_hours: 90 * 24,
    oauth_cimd_allow_private: false,
    upstream_allow_private: false,
    shutdown_timeout_seconds: 30,
    snapshot_deltas: true,
    log: "info",
    log_format: LogFormat::Text,
};

/// Every key `Settings` accepts, for the unknown-variable warning.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "data_dir",
    "database_url",
    "admin_email",
    "admin_password",
    "session_ttl_minutes",
    "login_max_failures",
    "login_window_minutes",
    "db_max_connections",
    "workers",
    "probe_timeout_seconds",
    "master_key",
    "proxy_key",
    "pat_max_lifetime_days",
    "token_usage_flush_seconds",
    "upstream_timeout_seconds",
    "proxy_max_concurrent",
    "proxy_rate_limit_per_minute",
    "oauth_access_token_ttl_seconds",
    "oauth_sign_in_idle_hours",
    "oauth_sign_in_max_hours",
    "oauth_cimd_allow_private",
    "upstream_allow_private",
    "upstream_allowed_networks",
    "allowed_origins",
    "control_plane",
    "metrics_listen",
    "shutdown_timeout_seconds",
    "snapshot_deltas",
    "log",
    "log_format",
];

const ENV_PREFIX: &str = "MCPGATE_";

fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|known| key.eq_ignore_ascii_case(known))
}

/// A list given either as a TOML array or as one comma-separated string (environment).
fn comma_list<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(de)? {
        Either::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Either::Many(v) => v,
    })
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Value(String),
}

impl Settings {
    /// Loads the layers. `config_file` is the `--config` flag; without it `mcpgate.toml` in the
    /// working directory is read when present.
    pub fn load(config_file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        match config_file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.to_owned())),
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file("mcpgate.toml")),
        }
        let settings: Settings = figment
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(Env::prefixed(ENV_PREFIX).split("__").filter(|k| is_known_key(k.as_str())))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings for tests and embedding: defaults, then the given data directory.
    pub fn with_defaults(data_dir: PathBuf) -> Result<Self, ConfigError> {
        let settings: Settings =
            Figment::from(Serialized::defaults(DEFAULTS)).merge(("data_dir", data_dir)).extract().map_err(Box::new)?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Value(format!("public_url must be an http(s) URL, got {url:?}")));
            }
        }
        if self.oauth_access_token_ttl_seconds == 0
            || self.oauth_sign_in_idle_hours == 0
            || self.oauth_sign_in_max_hours == 0
        {
            return Err(ConfigError::Value(
                "oauth_access_token_ttl_seconds, oauth_sign_in_idle_hours and oauth_sign_in_max_hours must be positive"
                    .into(),
            ));
        }
        crate::egress::Egress::parse_networks(&self.upstream_allowed_networks).map_err(ConfigError::Value)?;
        if self.session_ttl_minutes == 0 || self.login_max_failures == 0 || self.db_max_connections == 0 {
            return Err(ConfigError::Value(
                "session_ttl_minutes, login_max_failures and db_max_connections must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The egress policy these settings describe.
    pub fn egress(&self) -> crate::egress::Egress {
        let networks = crate::egress::Egress::parse_networks(&self.upstream_allowed_networks).unwrap_or_default();
        crate::egress::Egress::new(self.upstream_allow_private, networks)
    }

    /// What a standalone proxy replica takes from these settings.
    pub fn replica_config(&self) -> crate::proxy::replica::ReplicaConfig {
        crate::proxy::replica::ReplicaConfig {
            listen: self.listen.clone(),
            public_url: self.public_url.clone(),
            control_plane: self.control_plane.clone(),
            proxy_key: self.proxy_key.clone(),
            upstream_timeout_seconds: self.upstream_timeout_seconds,
            max_concurrent: self.proxy_max_concurrent,
            allowed_origins: self.allowed_origins.clone(),
            rate_limit_per_minute: self.proxy_rate_limit_per_minute,
            egress: self.egress(),
            workers: self.workers,
            metrics_listen: self.metrics_listen.clone(),
            shutdown_timeout_seconds: self.shutdown_timeout_seconds,
            snapshot_deltas: self.snapshot_deltas,
        }
    }

    /// `MCPGATE_*` variables that no setting reads: most likely typos.
    pub fn unknown_env_vars() -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.strip_prefix(ENV_PREFIX).is_some_and(|rest| !is_known_key(rest)))
            .collect()
    }

    /// Where links point when no public URL is set: the address actually bound (port 0 becomes
    /// the real port); a wildcard bind is reachable on loopback, so links use that.
    pub fn bound_base_url(bound: std::net::SocketAddr) -> String {
        crate::proxy::replica::bound_base_url(bound)
    }

    /// The base URL with no trailing slash.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("mcpgate.db").display()),
        }
    }

    /// Cookies get the `Secure` attribute whenever users reach the gateway over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_base_url().starts_with("https://")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures must return figment's (large) error
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn layers_defaults_file_env_and_flags_in_that_order() {
        Jail::expect_with(|jail| {
            let s = Settings::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "127.0.0.1:8080");
            assert_eq!(s.data_dir, PathBuf::from("./data"));
            assert_eq!(s.public_base_url(), "http://127.0.0.1:8080");
            assert!(s.database_url().starts_with("sqlite://./data/mcpgate.db"));

            jail.create_file("mcpgate.toml", "listen = \"0.0.0.0:9000\"\nsession_ttl_minutes = 30\nlog = \"debug\"")?;
            let s = Settings::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!((s.listen.as_str(), s.session_ttl_minutes, s.log.as_str()), ("0.0.0.0:9000", 30, "debug"));

            jail.set_env("MCPGATE_SESSION_TTL_MINUTES", "45");
            jail.set_env("MCPGATE_PUBLIC_URL", "https://gw.example.com/");
            jail.set_env("DATABASE_URL", "postgres://db/mcpgate");
            let s = Settings::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!((s.listen.as_str(), s.session_ttl_minutes), ("0.0.0.0:9000", 45));
            assert_eq!(s.public_base_url(), "https://gw.example.com");
            assert!(s.secure_cookies());
            assert_eq!(s.database_url(), "postgres://db/mcpgate");

            jail.set_env("MCPGATE_LISTEN", "127.0.0.1:7000");
            let s = Settings::load(None, Overrides { listen: Some("127.0.0.1:6000".into()), ..Default::default() })
                .map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "127.0.0.1:6000", "flags win over env");
            Ok(())
        });
    }

    #[test]
    fn unknown_variables_are_reported_not_fatal_and_secrets_are_not_printed() {
        Jail::expect_with(|jail| {
            jail.set_env("MCPGATE_LISTN", "typo");
            jail.set_env("MCPGATE_ADMIN_PASSWORD", "super-secret-value");
            let s = Settings::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert!(Settings::unknown_env_vars().contains(&"MCPGATE_LISTN".to_owned()));
            assert!(!Settings::unknown_env_vars().contains(&"MCPGATE_ADMIN_PASSWORD".to_owned()));
            assert!(!format!("{s:?}").contains("super-secret-value"), "Debug redacts secrets");
            Ok(())
        });
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        Jail::expect_with(|jail| {
            jail.create_file("mcpgate.toml", "listen_address = \"x\"")?;
            let err = Settings::load(None, Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("listen_address"), "{err}");
            let err = Settings::load(Some(Path::new("missing.toml")), Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("missing.toml"), "{err}");
            jail.create_file("ok.toml", "public_url = \"gw.example.com\"")?;
            let err = Settings::load(Some(Path::new("ok.toml")), Overrides::default()).unwrap_err().to_string();
            assert!(err.contains("public_url"), "{err}");
            Ok(())
        });
    }
}
