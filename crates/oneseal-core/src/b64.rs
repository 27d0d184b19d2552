//! Standard base64 with `=` padding, as every oneseal wire value uses.
//!
//! Decoding trims surrounding ASCII whitespace (the One API reference shows a callback value
//! with a trailing space) and otherwise accepts only canonical base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Encodes bytes as standard padded base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Appends the base64 of `bytes` to `out`, avoiding an intermediate allocation.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    STANDARD.encode_string(bytes, out)
}

/// Appends the base64 of `bytes` to a byte buffer (a document being written).
pub fn encode_append(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    // Four characters per three bytes, the last group padded: the exact encoded length.
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    match STANDARD.encode_slice(bytes, &mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        // Not reached (the buffer has the exact length); correct output all the same.
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
        }
    }
}

/// Decodes canonical standard base64 after trimming surrounding ASCII whitespace.
/// The error carries no detail about the input on purpose: callers name the JSON path.
pub fn decode(s: impl AsRef<[u8]>) -> Result<Vec<u8>, InvalidBase64> {
    STANDARD
        .decode(s.as_ref().trim_ascii())
        .map_err(|_| InvalidBase64)
}

/// The value was not canonical standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_whitespace_and_rejects_noncanonical() {
        assert_eq!(decode(" aGk= ").unwrap(), b"hi");
        assert_eq!(decode("aGk=\n").unwrap(), b"hi");
        assert!(decode("aGk").is_err(), "missing padding");
        assert!(decode("aGl=").is_err(), "non-zero trailing bits");
        assert!(decode("aG k=").is_err(), "inner space");
        assert!(decode("aGk-").is_err(), "url-safe alphabet");
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn encode_append_is_encode() {
        for n in 0..70 {
            let bytes: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut out = b"x".to_vec();
            encode_append(&bytes, &mut out);
            assert_eq!(out, [b"x".as_slice(), encode(&bytes).as_bytes()].concat());
        }
    }
}
