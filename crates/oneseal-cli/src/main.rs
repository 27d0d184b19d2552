//! `oneseal`: the command-line front end. Thin by design: parse (`cli`), resolve and validate
//! (`config`), call the libraries, and map errors to one stderr line and an exit code.

mod cli;
mod config;
mod docs;
mod error;
mod flows;
mod gateway;
mod io;
mod media;
mod ndjson;

use std::io::IsTerminal;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, KeyCommand};
use crate::config::Sources;
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    // The gateway shuts down gracefully on its own signals; everything else removes its
    // unfinished outputs and exits.
    let json_logs = match &cli.command {
        Command::Gateway(g) => g.log_format == "json",
        _ => {
            if let Err(e) = watch_signals() {
                eprintln!("{e}");
                return ExitCode::from(error::EXIT_USAGE);
            }
            false
        }
    };
    let base = if matches!(cli.command, Command::Gateway(_)) {
        1
    } else {
        0
    };
    init_logging(cli.verbose + base, &cli.color, json_logs);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code)
        }
    }
}

/// Help and version print and exit 0; a missing subcommand prints the help (exit 2); usage
/// errors are one line that keeps clap's tips ("a similar argument exists") and
/// points at the subcommand's own `--help`, exit 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(error::EXIT_USAGE);
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    // clap puts a list on the lines after its heading ("not provided:"): a heading joins
    // its list with a space, separate sentences with "; ".
    let mut text = String::new();
    for p in &parts {
        if !text.is_empty() {
            text.push_str(if text.ends_with(':') { " " } else { "; " });
        }
        text.push_str(p);
    }
    eprintln!(
        "{}",
        CliError::usage(format!("{text} (see {} --help)", subcommand_path()))
    );
    ExitCode::from(error::EXIT_USAGE)
}

/// The subcommand the user was typing (`oneseal media encrypt`), from the raw arguments:
/// the deepest known subcommand named, skipping options and their values.
fn subcommand_path() -> String {
    let mut cmd = Cli::command();
    let mut path = vec!["oneseal".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if let Some(name) = a.strip_prefix("--") {
            let takes_value = !name.contains('=')
                && cmd
                    .get_arguments()
                    .find(|x| x.get_long() == Some(name))
                    .is_some_and(|x| x.get_action().takes_values());
            if takes_value {
                args.next();
            }
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd.find_subcommand(&a).cloned() else {
            break;
        };
        path.push(a);
        cmd = sub;
    }
    path.join(" ")
}

/// SIGINT/SIGTERM: remove every unfinished output (temp files beside `-o`, unverified
/// plaintext of a media decrypt) and exit 130/143. A signal's default action would run no
/// destructors and leave them behind.
fn watch_signals() -> Result<(), CliError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| CliError::usage(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let removed = oneseal_core::atomic::remove_pending_files();
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!(
                    "oneseal: interrupted ({name}); removed {removed} unfinished output file(s)"
                );
                std::process::exit(128 + sig);
            }
        })
        .map_err(|e| CliError::usage(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

fn init_logging(verbose: u8, color: &str, json: bool) {
    use tracing_subscriber::field::MakeExt;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let ansi = match color {
        "always" => true,
        "never" => false,
        _ => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    // Only oneseal's own events: dependency logs (HTTP bodies, headers) are never shown.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "oneseal={default},oneseal_core={default},oneseal_kms={default},oneseal_gateway={default},tower_http={default}"
        ))
    });
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Text logs escape control characters in every field value: a value a caller chose (a
    // JSON member name in an error, a header) can never start a forged log line or send
    // terminal escapes. JSON logs are escaped by their encoder.
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    let _ = if json {
        fmt.json().try_init()
    } else if base_is_service(verbose) {
        fmt.fmt_fields(fields).with_ansi(ansi).try_init()
    } else {
        fmt.fmt_fields(fields)
            .with_ansi(ansi)
            .without_time()
            .try_init()
    };
}

/// `text` with every control character (newlines, escapes, …) written as its Rust escape.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Timestamps only where logs are a service's (the gateway runs at verbosity 1 or more).
fn base_is_service(verbose: u8) -> bool {
    verbose >= 1
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
    if let Command::Completions { shell } = &cli.command {
        return completions(shell);
    }
    if let Command::Man { out_dir } = &cli.command {
        return man(out_dir.as_deref());
    }
    if let Command::Gateway(g) = &cli.command {
        if g.print_config {
            // Before the config file is read: a broken one must not hide its own sample.
            print!("{}", config::SAMPLE);
            return Ok(());
        }
    }
    let src = Sources::load(
        cli.config.as_deref(),
        Box::new(oneseal_settings::env::Process),
    )?;
    match cli.command {
        Command::Encrypt(a) => runtime()?.block_on(docs::encrypt(a, &src)),
        Command::Decrypt(a) => runtime()?.block_on(docs::decrypt(a, &src)),
        Command::Media(m) => small_runtime()?.block_on(media::run(m, &src)),
        Command::Flows(f) => flows::run(f),
        Command::Key(KeyCommand::Init { local_key }) => docs::key_init(local_key, &src),
        Command::Gateway(g) => gateway::run(g, &src),
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

fn completions(shell: &str) -> Result<(), CliError> {
    use clap_complete::Shell;
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        "powershell" => Shell::PowerShell,
        other => {
            return Err(CliError::usage(format!(
                "unknown shell {other:?}: use bash, zsh, fish or powershell"
            )))
        }
    };
    // Into memory first: clap_complete panics on a write error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "oneseal", &mut script);
    print_quietly(&script)
}

/// `oneseal man`: the man pages, from the same clap definitions as `--help`.
fn man(out_dir: Option<&std::path::Path>) -> Result<(), CliError> {
    // The release, not the commit: the pages in the repository (docs/man) stay equal.
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::io("create", dir, e))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| CliError::io("write", dir, e))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| CliError::io("render", std::path::Path::new("oneseal.1"), e))?;
            print_quietly(&page)
        }
    }
}

/// Writes `bytes` to stdout; a reader that stops early (`| head -1`) is not an error.
fn print_quietly(bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io("write", std::path::Path::new("<stdout>"), e)),
    }
}

#[cfg(test)]
mod tests {
    /// Regression: a forged log line through a value a caller chose.
    #[test]
    fn control_characters_in_log_values_are_escaped() {
        assert_eq!(
            super::escape_controls("a\nINFO forged\u{1b}[31m"),
            "a\\nINFO forged\\u{1b}[31m"
        );
        assert_eq!(super::escape_controls("plain"), "plain");
    }
}
