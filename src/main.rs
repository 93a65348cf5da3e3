//! The `mcpgate` command: a thin layer over the library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcpgate::config::{Overrides, Settings};
use mcpgate::control::users::{self, Bootstrap, NewUser};
use mcpgate::domain::{DisplayName, Email, NewPassword};
use mcpgate::{api, startup, telemetry, Application, Clock};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(name = "mcpgate", version, about = "MCP gateway: control plane, authorization server and proxy")]
struct Cli {
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
    /// Apply database migrations and exit.
    Migrate {
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
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcpgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: Option<&std::path::Path>, overrides: Overrides) -> anyhow::Result<Settings> {
    let settings = Settings::load(config, overrides)?;
    telemetry::init(&settings.log, settings.log_format);
    for var in Settings::unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown MCPGATE_ environment variable ignored (typo?)");
    }
    Ok(settings)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { listen, data_dir } => serve(load(config, Overrides { listen, data_dir })?).await,
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
fn users_actor() -> mcpgate::control::audit::Actor {
    mcpgate::control::audit::Actor { subject: "cli".into(), request_id: None }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let base = settings.public_base_url();
    let app = Application::build(settings, Clock::system()).await?;
    match &app.bootstrap {
        Bootstrap::NotNeeded => {}
        Bootstrap::Configured { email } => println!("Created the first platform admin {email}."),
        Bootstrap::Generated { email, password } => {
            // Shown once, on stdout only, never logged.
            println!("Created the first platform admin.");
            println!("  email:    {email}");
            println!("  password: {}", password.expose_secret());
            println!("  This password is shown only now; change it with POST /api/v1/me/password.");
        }
    }
    println!("mcpgate is listening on port {} — open {base}/api/docs for the API explorer.", app.port());
    tracing::info!(port = app.port(), "listening");
    app.run_until_stopped().await.context("server error")
}
