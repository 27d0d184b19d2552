//! `oneseal`: the command-line front end. Thin by design: parse (`cli`), validate
//! (`config`), call the libraries, and map errors to one stderr line and an exit code.

mod cli;
mod config;
mod docs;
mod error;
mod flows;
mod io;
mod media;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use crate::cli::{Cli, Command, KeyCommand};
use crate::config::FileConfig;
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print and exit 0.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Usage errors: one line (DESIGN §5), exit 2.
            let text = e.render().to_string();
            // clap's first paragraph says what is wrong (and lists missing arguments).
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!(
                "{}",
                CliError::usage(format!("{first} (see oneseal --help)"))
            );
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Only oneseal's own events: dependency logs (HTTP bodies, headers) are never shown.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "oneseal={default},oneseal_core={default},oneseal_kms={default}"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))
}

/// Media makes one key-service call and then works on its own threads: a single-threaded
/// runtime is enough and keeps worker threads (and their memory) out of the RSS budget.
fn small_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))
}

fn run(cli: Cli) -> Result<(), CliError> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Encrypt(a) => runtime()?.block_on(docs::encrypt(a, &file)),
        Command::Decrypt(a) => runtime()?.block_on(docs::decrypt(a, &file)),
        Command::Media(m) => small_runtime()?.block_on(media::run(m, &file)),
        Command::Flows(f) => flows::run(f),
        Command::Key(KeyCommand::Init { local_key }) => docs::key_init(local_key, &file),
    }
}
