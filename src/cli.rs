//! The `mcpgate` command line: argument parsing and the commands that are not `serve`.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::config::{Overrides, Settings};
use crate::control::users::{self, Bootstrap, NewUser};
use crate::domain::{DisplayName, Email, NewPassword};
use crate::{api, startup, telemetry, Application, Clock};
use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(name = "mcpgate", version, about = "MCP gateway: control plane, authorization server and proxy")]
pub struct Cli {
    /// Configuration file (default: mcpgate.toml in the working directory, if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane and API.
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080 (env MCPGATE_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory for the SQLite database and keys (env MCPGATE_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run a standalone proxy replica that follows a control plane and serves only the MCP
    /// routes. Replicas share nothing; give them all the control plane's proxy key.
    Proxy {
        /// The control plane's base URL, e.g. https://gw.example.com, or several comma-separated
        /// (highly available control planes), used in turn when one fails (env
        /// MCPGATE_CONTROL_PLANE).
        #[arg(long)]
        control_plane: Option<String>,
        /// The control plane's proxy key (env MCPGATE_PROXY_KEY, which keeps it out of `ps`).
        #[arg(long)]
        proxy_key: Option<String>,
        /// Listen address (env MCPGATE_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Data directory (env MCPGATE_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Snapshot signing keys and the master key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        /// Data directory (env MCPGATE_DATA_DIR).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Policy snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Print the proxy key that `mcpgate proxy` replicas present to read snapshots.
    ProxyKey {
        /// Data directory (env MCPGATE_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Personal access tokens and virtual-account tokens, for scripts:
    /// `TOKEN=$(mcpgate token create --user me@example.com --name ci)`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// Data directory (env MCPGATE_DATA_DIR).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new key the signing key; the previous one stays published until `retire`.
    Rotate,
    /// Stop publishing every key but the signing key.
    Retire,
    /// Re-seal every stored secret under a new master key (stop the gateway first: it keeps the
    /// old key in memory): `MCPGATE_NEW_MASTER_KEY` (base64,
    /// 32 bytes) if set, else a generated one. With a key file, the file is replaced; with
    /// `MCPGATE_MASTER_KEY`, the new key is printed once for you to configure.
    RotateMaster,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Verify a snapshot (compact JWS) offline against a JWKS file; prints its version.
    Verify {
        /// The snapshot, as served by GET /api/v1/policy/snapshot.
        file: PathBuf,
        /// The keys, as served by GET /api/v1/policy/keys.
        #[arg(long)]
        keys: PathBuf,
    },
}

/// Whose tokens: a user's, or a tenant's virtual account's.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = true)]
struct TokenOwner {
    /// A user's personal access tokens.
    #[arg(long, conflicts_with_all = ["tenant", "virtual_account"])]
    user: Option<String>,
    /// The tenant of the virtual account.
    #[arg(long, requires = "virtual_account")]
    tenant: Option<String>,
    /// A virtual account's tokens.
    #[arg(long, requires = "tenant")]
    virtual_account: Option<String>,
}

#[derive(Subcommand, Clone)]
enum TokenCommand {
    /// Create a token and print it (only it) on stdout.
    Create {
        #[command(flatten)]
        owner: TokenOwner,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime, e.g. `30d` or `12h`, or an RFC 3339 time. Personal tokens default to the
        /// platform maximum.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        owner: TokenOwner,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        owner: TokenOwner,
        id: String,
    },
    /// Issue a new virtual-account token; the previous ones keep working for the grace period.
    Regenerate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        virtual_account: String,
        #[arg(long)]
        grace_days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a platform admin.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        display_name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Data directory (env MCPGATE_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn load(config: Option<&std::path::Path>, overrides: Overrides) -> anyhow::Result<Settings> {
    let settings = Settings::load(config, overrides)?;
    telemetry::init(&settings.log, settings.log_format);
    for var in Settings::unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown MCPGATE_ environment variable ignored (typo?)");
    }
    Ok(settings)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { listen, data_dir } => {
            serve(load(config, Overrides { listen, data_dir, ..Default::default() })?).await
        }
        Command::Proxy { control_plane, proxy_key, listen } => {
            let settings = load(config, Overrides { listen, control_plane, proxy_key, ..Default::default() })?;
            let replica = crate::proxy::replica::Replica::build(settings.replica_config(), Clock::system()).await?;
            // On stdout like `serve`'s line, so scripts find the port the same way.
            println!("mcpgate proxy replica is listening on port {}.", replica.port());
            tracing::info!(port = replica.port(), "listening");
            replica.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate { data_dir } => {
            let settings = load(config, Overrides { data_dir, ..Default::default() })?;
            startup::open_database(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin { command: AdminCommand::Create { email, display_name, password_stdin: _, data_dir } } => {
            let settings = load(config, Overrides { data_dir, ..Default::default() })?;
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).context("reading the password from stdin")?;
            let password = input.lines().next().unwrap_or("").to_owned();
            let new = NewUser {
                email: Email::parse("email", &email).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?,
                display_name: DisplayName::parse("display_name", &display_name)
                    .map_err(|e| anyhow::anyhow!("--display-name: {}", e.message))?,
                password: Some(
                    NewPassword::parse("password", &password)
                        .map_err(|e| anyhow::anyhow!("password: {}", e.message))?,
                ),
                is_platform_admin: true,
            };
            let db = startup::open_database(&settings).await?;
            let user = users::create(&db, &users_actor(), new, Clock::system().now())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created platform admin {} (id {})", user.email, user.id);
            Ok(())
        }
        Command::Token { command, data_dir } => {
            let settings = load(config, Overrides { data_dir, ..Default::default() })?;
            let db = startup::open_database(&settings).await?;
            retry_busy(|| cli_tokens::run(&db, &settings, command.clone())).await
        }
        Command::Keys { command, data_dir } => {
            let settings = load(config, Overrides { data_dir, ..Default::default() })?;
            let db = startup::open_database(&settings).await?;
            let sealer = crate::auth::seal::Sealer::load(settings.master_key.as_ref(), &settings.data_dir)?;
            let now = Clock::system().now();
            match command {
                KeysCommand::Rotate => {
                    // Make sure a key exists to be rotated out, then rotate.
                    crate::policy::publish::active_key(&db, &sealer, now).await?;
                    let kid = crate::policy::publish::rotate_key(&db, &sealer, now).await?;
                    println!("new signing key {kid}; the previous key stays published until `mcpgate keys retire`");
                }
                KeysCommand::Retire => {
                    let n = crate::policy::publish::retire_published_keys(&db, now).await?;
                    println!("retired {n} key(s)");
                }
                KeysCommand::RotateMaster => {
                    let configured = std::env::var("MCPGATE_NEW_MASTER_KEY").ok().map(SecretString::from);
                    let (encoded, new) = crate::auth::seal::Sealer::new_key(configured.as_ref())?;
                    let from_file = settings.master_key.is_none();
                    // The new key reaches the disk before any value depends on it, and takes
                    // the old one's place only once every value moved.
                    let staged = from_file
                        .then(|| crate::auth::seal::stage_key_file(&settings.data_dir, &encoded))
                        .transpose()?;
                    let moved = crate::control::rekey::reseal_all(&db, &sealer, &new).await?;
                    match staged {
                        Some(staged) => {
                            crate::auth::seal::commit_key_file(&settings.data_dir, &staged)?;
                            println!("re-sealed {moved} value(s); the key file now holds the new master key");
                        }
                        None if configured.is_some() => {
                            println!("re-sealed {moved} value(s) under MCPGATE_NEW_MASTER_KEY; configure it as MCPGATE_MASTER_KEY now");
                        }
                        None => {
                            println!("re-sealed {moved} value(s); set MCPGATE_MASTER_KEY to the new key before the next start:");
                            println!("{}", encoded.expose_secret());
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Snapshot { command: SnapshotCommand::Verify { file, keys } } => {
            let document = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let jwks: crate::policy::Jwks = serde_json::from_str(
                &std::fs::read_to_string(&keys).with_context(|| format!("reading {}", keys.display()))?,
            )
            .with_context(|| format!("{} is not a JWKS", keys.display()))?;
            let snapshot = crate::policy::sign::verify(&document, &jwks)
                .map_err(|e| anyhow::anyhow!("{} does not verify: {e}", file.display()))?;
            println!(
                "valid: version {} issued {} by key {} ({} servers, {} tokens)",
                snapshot.version,
                snapshot.issued_at.to_rfc3339(),
                snapshot.kid,
                snapshot.servers.len(),
                snapshot.tokens.len()
            );
            Ok(())
        }
        Command::ProxyKey { data_dir } => {
            let settings = load(config, Overrides { data_dir, ..Default::default() })?;
            let key = crate::auth::seal::load_proxy_key(settings.proxy_key.as_ref(), &settings.data_dir)?;
            println!("{}", key.expose_secret());
            Ok(())
        }
        Command::Openapi => {
            let mut out = std::io::stdout().lock();
            match out.write_all(api::openapi_json().as_bytes()) {
                // A closed pipe (`mcpgate openapi | head`) is the reader's choice, not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
    }
}

/// Changes made from the command line are attributed to the operator's shell.
fn users_actor() -> crate::control::audit::Actor {
    crate::control::audit::Actor { subject: "cli".into(), request_id: None }
}

mod cli_tokens {
    use crate::control::tokens::{self, Owner};
    use crate::control::{page::PageRequest, tenants, users, virtual_accounts};
    use crate::domain::Email;
    use crate::store::entities::{tenants as tenant_rows, users as user_rows, virtual_accounts as va_rows};
    use crate::{Clock, Settings};
    use chrono::{DateTime, Duration, Utc};
    use sea_orm::DatabaseConnection;

    use super::{users_actor, TokenCommand, TokenOwner};

    enum Resolved {
        User(user_rows::Model),
        Account(tenant_rows::Model, va_rows::Model),
    }

    /// A domain error as the CLI reports it.
    fn api(e: crate::control::error::Error) -> anyhow::Error {
        use crate::control::error::Error;
        match e {
            // The cause stays attached: a busy database is retried, anything else is reported.
            Error::Internal(cause) => cause.context("an internal error occurred"),
            Error::Validation(errors) => anyhow::anyhow!(
                "{}",
                errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            ),
            other => anyhow::anyhow!("{other}"),
        }
    }

    async fn resolve(db: &DatabaseConnection, owner: &TokenOwner) -> anyhow::Result<Resolved> {
        match (&owner.user, &owner.tenant, &owner.virtual_account) {
            (Some(email), _, _) => {
                let email = Email::parse("user", email).map_err(|e| anyhow::anyhow!("--user: {}", e.message))?;
                let user = users::find_by_email(db, &email)
                    .await
                    .map_err(api)?
                    .ok_or_else(|| anyhow::anyhow!("no user {email}"))?;
                Ok(Resolved::User(user))
            }
            (None, Some(tenant), Some(name)) => {
                let tenant = tenants::find_by_slug(db, tenant)
                    .await
                    .map_err(api)?
                    .ok_or_else(|| anyhow::anyhow!("no tenant {tenant}"))?;
                let va = virtual_accounts::get(db, &tenant, name)
                    .await
                    .map_err(|_| anyhow::anyhow!("no virtual account {name} in tenant {}", tenant.slug))?;
                Ok(Resolved::Account(tenant, va))
            }
            _ => anyhow::bail!("name either --user, or --tenant with --virtual-account"),
        }
    }

    /// `30d`, `12h`, `90m`, or an RFC 3339 time.
    fn parse_expiry(raw: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
        let span = number.parse::<i64>().ok().and_then(|n| match unit {
            "d" => Some(Duration::days(n)),
            "h" => Some(Duration::hours(n)),
            "m" => Some(Duration::minutes(n)),
            _ => None,
        });
        match span {
            Some(span) if span > Duration::zero() => Ok(now + span),
            _ => DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| anyhow::anyhow!("--expires: use e.g. 30d, 12h, or an RFC 3339 time")),
        }
    }

    pub async fn run(db: &DatabaseConnection, settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
        let now = Clock::system().now();
        let actor = users_actor();
        match command {
            TokenCommand::Create { owner, name, expires } => {
                let requested = expires.as_deref().map(|e| parse_expiry(e, now)).transpose()?;
                let issued = match resolve(db, &owner).await? {
                    Resolved::User(user) => {
                        let max = Duration::days(i64::from(settings.pat_max_lifetime_days));
                        let at = requested.unwrap_or(now + max);
                        if at > now + max {
                            anyhow::bail!("--expires: at most {} days", max.num_days());
                        }
                        tokens::issue_pat(db, &actor, &user, name, Some(at), now).await.map_err(api)?
                    }
                    Resolved::Account(tenant, va) => {
                        tokens::issue_va_token(db, &actor, &tenant, &va, name, requested, now).await.map_err(api)?
                    }
                };
                println!("{}", issued.secret);
            }
            TokenCommand::Regenerate { tenant, virtual_account, grace_days } => {
                let owner = TokenOwner { user: None, tenant: Some(tenant), virtual_account: Some(virtual_account) };
                let Resolved::Account(tenant, va) = resolve(db, &owner).await? else { unreachable!() };
                let issued =
                    virtual_accounts::regenerate(db, &actor, &tenant, &va, grace_days, now).await.map_err(api)?;
                println!("{}", issued.secret);
            }
            TokenCommand::List { owner } => {
                let page = PageRequest { limit: 200, ..Default::default() };
                let rows = match resolve(db, &owner).await? {
                    Resolved::User(user) => tokens::list_for_user(db, user.id, page).await.map_err(api)?,
                    Resolved::Account(_, va) => tokens::list_for_virtual_account(db, va.id, page).await.map_err(api)?,
                };
                println!("{:<36}  {:<14}  {:<8}  {:<25}  NAME", "ID", "PREFIX", "STATUS", "EXPIRES");
                for t in rows.items {
                    let status = if t.revoked_at.is_some() {
                        "revoked"
                    } else if tokens::is_active(&t, now) {
                        "active"
                    } else {
                        "expired"
                    };
                    let expires = t.expires_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "never".into());
                    println!("{:<36}  {:<14}  {:<8}  {:<25}  {}", t.public_id, t.prefix, status, expires, t.name);
                }
            }
            TokenCommand::Revoke { owner, id } => {
                let (tenant, owner) = match resolve(db, &owner).await? {
                    Resolved::User(user) => (None, Owner::User(user.id)),
                    Resolved::Account(tenant, va) => (Some(tenant), Owner::VirtualAccount(va.id)),
                };
                tokens::revoke(db, &actor, tenant.as_ref(), owner, &id, now).await.map_err(api)?;
                eprintln!("revoked {id}");
            }
        }
        Ok(())
    }
}

/// Runs a CLI change again when SQLite reports the database busy. The CLI is a second process
/// writing beside a running `mcpgate serve`; a transaction that read before the server
/// committed fails at once (SQLITE_BUSY_SNAPSHOT) instead of waiting, and it was rolled back,
/// so running it again is safe.
async fn retry_busy<F, Fut>(mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if tries < 5 && format!("{e:#}").contains("database is locked") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            other => return other,
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings, Clock::system()).await?;
    let base = app.state.settings.public_base_url();
    match &app.bootstrap {
        Bootstrap::NotNeeded => {}
        Bootstrap::Configured { email } => println!("Created the first platform admin {email}."),
        Bootstrap::Generated { email, password } => {
            // Shown once, on stdout only, never logged.
            println!("Created the first platform admin.");
            println!("  email:    {email}");
            println!("  password: {}", password.expose_secret());
            println!("  This password is shown only now: sign in to the console at {base}/ and change it.");
        }
    }
    println!(
        "mcpgate is listening on port {} — open {base}/ for the console, {base}/api/docs for the API explorer.",
        app.port()
    );
    tracing::info!(port = app.port(), "listening");
    app.run_until_stopped().await.context("server error")
}
