//! The settings stage shared by the CLI and the gateway.
//!
//! A setting is resolved once, in the order flag → environment → config file → default
//! ([`resolve`]), and every error names where the bad value came from ([`Origin`]): the
//! flag, the environment variable, or the config file's key. Every environment variable
//! oneseal reads itself is named in [`env`](mod@env); every range, URL, address and secret check is in
//! [`check`], so the CLI's flags and the gateway's tables refuse a value the same way.

#![warn(missing_docs)]

pub mod check;
pub mod env;

use std::fmt;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--suite`).
    Flag(&'static str),
    /// An environment variable (`ONESEAL_SUITE`).
    Env(&'static str),
    /// A config file key, dotted (`suite`, `gateway.upstream`).
    File(String),
}

impl Origin {
    /// The config file key `key`.
    pub fn file(key: impl Into<String>) -> Origin {
        Origin::File(key.into())
    }

    /// The flag, variable or key, as the user would spell it.
    pub fn name(&self) -> &str {
        match self {
            Origin::Flag(f) | Origin::Env(f) => f,
            Origin::File(k) => k,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A setting that cannot be used: where it came from and what is wrong with it, with advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// Where the bad value came from.
    pub origin: Origin,
    /// What is wrong with it, and what to do.
    pub message: String,
}

impl ConfigError {
    /// An error about the value from `origin`.
    pub fn new(origin: Origin, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin,
            message: message.into(),
        }
    }

    /// An error about the config file key `key`.
    pub fn file(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(Origin::file(key), message)
    }

    /// The flag, variable or config key the error is about.
    pub fn key(&self) -> &str {
        self.origin.name()
    }

    /// Whether the value came from the config file (whose path the caller adds).
    pub fn in_file(&self) -> bool {
        matches!(self.origin, Origin::File(_))
    }
}

/// Every error found in a config, so one run reports them all (`--check-config` lists each
/// on its own line) instead of one per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The value of `r`, or `None` with its error kept.
    pub fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// The value of `r`, or `None` with all its errors kept (a table checked on its own).
    pub fn take_all<T>(&mut self, r: Result<T, ConfigErrors>) -> Option<T> {
        r.map_err(|e| self.0.extend(e.0)).ok()
    }

    /// Keeps `e`.
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// `v` if nothing was found, else every error.
    pub fn or<T>(self, v: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(self)
        }
    }

    /// The errors, in the order of the file's tables.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key of the first (what a caller with one error to show names).
    pub fn key(&self) -> &str {
        self.0.first().map_or("", |e| e.key())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One place a setting may be given, and what it says there (if anything).
pub type Source<'a> = (Origin, Option<&'a str>);

/// The first source that gives a value, with its origin (the flag before the environment
/// before the config file, in the order given).
pub fn given<T>(sources: impl IntoIterator<Item = (Origin, Option<T>)>) -> Option<(Origin, T)> {
    sources
        .into_iter()
        .find_map(|(origin, v)| v.map(|v| (origin, v)))
}

/// The first source that gives a value, parsed; `None` when none does (the caller's default
/// applies). A parse error names that source, never another.
pub fn resolve<T, E: fmt::Display>(
    sources: &[Source<'_>],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ConfigError> {
    match given(sources.iter().cloned()) {
        Some((origin, v)) => parse(v)
            .map(Some)
            .map_err(|e| ConfigError::new(origin, e.to_string())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(s: &str) -> Result<u32, String> {
        s.parse().map_err(|_| format!("{s:?} is not a number"))
    }

    #[test]
    fn the_first_source_that_gives_a_value_wins() {
        let sources = [
            (Origin::Flag("--n"), None),
            (Origin::Env("N"), Some("2")),
            (Origin::file("n"), Some("3")),
        ];
        assert_eq!(resolve(&sources, number), Ok(Some(2)));
    }

    #[test]
    fn nothing_given_leaves_the_default_to_the_caller() {
        let sources = [(Origin::Flag("--n"), None), (Origin::file("n"), None)];
        assert_eq!(resolve(&sources, number), Ok(None));
    }

    #[test]
    fn a_bad_value_is_named_by_its_own_origin() {
        let sources = [
            (Origin::Env("N"), Some("x")),
            (Origin::file("n"), Some("3")),
        ];
        let e = resolve(&sources, number).unwrap_err();
        assert_eq!(e.to_string(), "N: \"x\" is not a number");
        assert!(!e.in_file());
    }
}
