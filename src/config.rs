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
    "log",
    "log_format",
];

const ENV_PREFIX: &str = "MCPGATE_";

fn is_known_key(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|known| key.eq_ignore_ascii_case(known))
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
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
        let settings: Settings = Figment::from(Serialized::defaults(DEFAULTS))
            .merge(("data_dir", data_dir))
            .extract()
            .map_err(Box::new)?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Value(format!("public_url must be an http(s) URL, got {url:?}")));
            }
        }
        if self.session_ttl_minutes == 0 || self.login_max_failures == 0 || self.db_max_connections == 0 {
            return Err(ConfigError::Value(
                "session_ttl_minutes, login_max_failures and db_max_connections must be positive".into(),
            ));
        }
        Ok(())
    }

    /// `MCPGATE_*` variables that no setting reads: most likely typos.
    pub fn unknown_env_vars() -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| {
                k.strip_prefix(ENV_PREFIX)
                    .is_some_and(|rest| !is_known_key(rest))
            })
            .collect()
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
