//! The checks every setting goes through, whichever command or table it belongs to: numeric
//! ranges, URLs, listen addresses, blank values and secrets from the environment. Each takes
//! the setting's [`Origin`] and names it in its error.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::env::Env;
use crate::{ConfigError, Origin};

/// `v` (or `default` when unset) if it lies in `range`, else an error naming `origin` and
/// the range. `NaN` lies in no range.
pub fn within<T, R>(origin: Origin, v: Option<T>, default: T, range: R) -> Result<T, ConfigError>
where
    T: PartialOrd + Copy + Display,
    R: RangeBounds<T>,
{
    let n = v.unwrap_or(default);
    if range.contains(&n) {
        return Ok(n);
    }
    let what = match (range.start_bound(), range.end_bound()) {
        (Bound::Included(a), Bound::Included(b)) => format!("{a} to {b}"),
        (Bound::Excluded(a), Bound::Included(b)) => format!("more than {a} and at most {b}"),
        (Bound::Included(a), Bound::Unbounded) => format!("at least {a}"),
        (Bound::Excluded(a), Bound::Unbounded) => format!("more than {a}"),
        (_, Bound::Excluded(b)) => format!("less than {b}"),
        (Bound::Unbounded, Bound::Included(b)) => format!("at most {b}"),
        (Bound::Unbounded, Bound::Unbounded) => "a number".to_string(),
    };
    Err(ConfigError::new(
        origin,
        format!("must be {what} (got {n})"),
    ))
}

/// [`within`] for a whole number of seconds.
pub fn seconds(
    origin: Origin,
    v: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    within(origin, v, default, range).map(Duration::from_secs)
}

/// A value that is given must not be blank (`--kms-key-id "$KEY"` with an empty `$KEY` must
/// not quietly mean "not given"). Returns it trimmed.
pub fn non_blank(origin: Origin, v: &str, advice: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ConfigError::new(origin, format!("is empty: {advice}")));
    }
    Ok(t.to_string())
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(origin: Origin, v: &str) -> Result<http::Uri, ConfigError> {
    let u: http::Uri = v
        .parse()
        .map_err(|_| ConfigError::new(origin.clone(), format!("{v:?} is not a URL")))?;
    match u.scheme_str() {
        Some("http" | "https") if u.authority().is_some() => Ok(u),
        _ => Err(ConfigError::new(
            origin,
            format!("{v:?}: expected an http:// or https:// URL"),
        )),
    }
}

/// A listen address (`v`, else `default`).
pub fn addr(origin: Origin, v: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    v.unwrap_or(default)
        .parse()
        .map_err(|_| ConfigError::new(origin, "expected IP:PORT, e.g. 127.0.0.1:8080"))
}

/// Whether `host` (of a URL, brackets allowed) is a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `u` is plain http to a host that is not on loopback.
pub fn plain_http_remote(u: &http::Uri) -> bool {
    u.scheme_str() == Some("http") && !u.host().is_some_and(is_loopback_host)
}

/// A secret, never written in a file: the value of the environment variable `var`, which the
/// setting `origin` names. Unset and empty are the same mistake.
pub fn secret_env(
    origin: Origin,
    var: &str,
    env: &dyn Env,
) -> Result<Zeroizing<String>, ConfigError> {
    env.get(var)
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new)
        .ok_or_else(|| {
            ConfigError::new(
                origin,
                format!("the environment variable {var} is not set (or empty)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Origin {
        Origin::file("k")
    }

    #[test]
    fn a_value_in_range_is_kept_and_unset_takes_the_default() {
        assert_eq!(within(key(), Some(5), 1, 1..=10), Ok(5));
        assert_eq!(within(key(), None, 7, 1..=10), Ok(7));
    }

    #[test]
    fn out_of_range_names_the_key_and_the_range() {
        let e = within(key(), Some(0u64), 1, 1..=10).unwrap_err();
        assert_eq!(e.to_string(), "k: must be 1 to 10 (got 0)");
    }

    #[test]
    fn an_open_lower_bound_is_said_in_words() {
        let r = (Bound::Excluded(0.0), Bound::Included(3600.0));
        let e = within(Origin::Flag("--t"), Some(0.0), 1.0, r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--t: must be more than 0 and at most 3600 (got 0)"
        );
    }

    #[test]
    fn nan_is_in_no_range() {
        let r = (Bound::Excluded(0.0), Bound::Included(3600.0));
        assert!(within(key(), Some(f64::NAN), 1.0, r).is_err());
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert!(http_url(key(), "https://example.com/x").is_ok());
        assert!(http_url(key(), "ftp://example.com").is_err());
        assert!(http_url(key(), "/relative").is_err());
    }

    #[test]
    fn blank_is_an_error_not_unset() {
        assert!(non_blank(Origin::Env("E"), "  ", "give one").is_err());
        assert_eq!(non_blank(Origin::Env("E"), " k ", "").unwrap(), "k");
    }

    #[test]
    fn an_empty_secret_is_the_same_mistake_as_none() {
        let env = |_: &str| Some(String::new());
        let e = secret_env(key(), "S", &env).unwrap_err();
        assert!(e.message.contains("S is not set (or empty)"));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
