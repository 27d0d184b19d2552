//! Documents held in memory, bytes in and bytes out: the splice driver when it takes the
//! document (requests written compact), the tree driver otherwise. Both give the same bytes,
//! so which one ran is never visible.

use super::item::{Engine, Report};
use super::json::{parse, serialize_sized};
use super::splice::Stop;
use crate::error::Error;

/// The splice driver's result: its output, `None` when the tree driver is to run, or the
/// failure both drivers report alike.
fn spliced<T>(r: Result<T, Stop>) -> Result<Option<T>, Error> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(Stop::Tree) => Ok(None),
        Err(Stop::Err(e)) => Err(*e),
    }
}

impl Engine {
    /// Parses, encrypts and serializes a document.
    pub async fn encrypt_slice(&self, input: &[u8], pretty: bool) -> Result<Vec<u8>, Error> {
        if !pretty {
            if let Some(out) = spliced(self.splice_encrypt(input).await)? {
                return Ok(out);
            }
        }
        let mut doc = parse(input)?;
        self.encrypt_document(&mut doc).await?;
        // Ciphertext is base64 of nonce + text + tag, plus a key per message: about twice.
        serialize_sized(&doc, pretty, input.len() * 2 + 4096)
    }

    /// [`Engine::encrypt_slice`] for a request body: anything but a request (a callback) is
    /// bad input, refused before any key is made.
    pub async fn encrypt_request_slice(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        // The splice driver takes requests only.
        if let Some(out) = spliced(self.splice_encrypt(input).await)? {
            return Ok(out);
        }
        let mut doc = parse(input)?;
        self.encrypt_request_document(&mut doc).await?;
        serialize_sized(&doc, false, input.len() * 2 + 4096)
    }

    /// Parses, decrypts and serializes a document.
    pub async fn decrypt_slice(
        &self,
        input: &[u8],
        pretty: bool,
    ) -> Result<(Vec<u8>, Report), Error> {
        if !pretty {
            if let Some(done) = spliced(self.splice_decrypt(input).await)? {
                return Ok(done);
            }
        }
        let mut doc = parse(input)?;
        let report = self.decrypt_document(&mut doc).await?;
        Ok((serialize_sized(&doc, pretty, input.len() + 4096)?, report))
    }
}
