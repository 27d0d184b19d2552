//! The CLI's one error type: a message for one stderr line and an exit code.

use std::fmt;
use std::path::Path;

use oneseal_core::ErrorClass;

/// Exit code for usage or configuration errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for bad input.
pub const EXIT_INPUT: u8 = 3;
/// Exit code for cryptographic failures.
pub const EXIT_CRYPTO: u8 = 4;
/// Exit code for key service failures.
pub const EXIT_KEY_SERVICE: u8 = 5;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    /// Further problems of the same run, one line each under the message.
    pub details: Vec<String>,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(EXIT_INPUT, message)
    }
    pub fn crypto(message: impl Into<String>) -> Self {
        Self::new(EXIT_CRYPTO, message)
    }
    pub fn io(what: &str, path: &Path, err: std::io::Error) -> Self {
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => ": no such file",
            std::io::ErrorKind::PermissionDenied => ": permission denied",
            std::io::ErrorKind::IsADirectory => {
                return Self::usage(format!(
                    "{} is a directory: give a file (or '-' for standard input/output)",
                    path.display()
                ))
            }
            _ => "",
        };
        let detail = if hint.is_empty() {
            format!(": {err}")
        } else {
            hint.to_string()
        };
        Self::usage(format!("cannot {what} {}{detail}", path.display()))
    }
    /// Prefixes the message with where it happened (a file name).
    pub fn in_file(mut self, file: Option<&Path>) -> Self {
        if let Some(f) = file {
            self.message = format!("{}: {}", f.display(), self.message);
        }
        self
    }
}

pub fn code_for(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Config => EXIT_USAGE,
        ErrorClass::Input => EXIT_INPUT,
        ErrorClass::Crypto => EXIT_CRYPTO,
        ErrorClass::KeyService => EXIT_KEY_SERVICE,
        _ => EXIT_USAGE,
    }
}

impl From<oneseal_core::Error> for CliError {
    fn from(e: oneseal_core::Error) -> Self {
        CliError::new(code_for(e.class()), e.to_string())
    }
}

impl From<oneseal_core::KeyError> for CliError {
    fn from(e: oneseal_core::KeyError) -> Self {
        CliError::new(code_for(e.class()), e.to_string())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line per problem, always: a message may quote a multi-line library error.
        let one_line = |m: &str| -> String {
            m.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                .collect()
        };
        write!(f, "oneseal: error: {}", one_line(&self.message))?;
        for d in &self.details {
            write!(f, "\n  {}", one_line(d))?;
        }
        Ok(())
    }
}
