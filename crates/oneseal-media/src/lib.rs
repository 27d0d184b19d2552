//! # oneseal-media
//!
//! Streaming media encryption for WhatsApp uploads, broadcasts and downloaded media, in the
//! media formats of DESIGN §3 (`gcm`: nonce ‖ ciphertext ‖ tag; `cbc`: IV ‖ padded
//! ciphertext). Encryption computes the SHA-256 of the **plaintext** in the same pass
//! (`sha256FileHash` / `sha256Hash`), on a second core: one thread reads and hashes while the
//! other encrypts and writes. Memory is a few fixed 256 KiB buffers whatever the file size.
//!
//! Decryption writes to a temporary file beside the destination, verifies the GCM tag and
//! (when given) the plaintext SHA-256, and only then renames it into place: on any failure
//! nothing is left at the destination.
//!
//! ```
//! use oneseal_core::{SecretKey, Suite, DecryptSuite};
//! use oneseal_media::{encrypt_file, decrypt_file};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (plain, sealed, back) = (dir.path().join("a.pdf"), dir.path().join("a.enc"), dir.path().join("b.pdf"));
//! std::fs::write(&plain, b"%PDF-1.7 statement").unwrap();
//! let key = SecretKey::from_bytes([1; 32]); // in real use: a data key from KMS
//!
//! let enc = encrypt_file(&key, Suite::Gcm, &plain, &sealed, &|_| {}).unwrap();
//! assert_eq!(enc.encrypted_byte_size, enc.byte_size + 28);
//! let dec = decrypt_file(&key, DecryptSuite::Auto, &sealed, &back, Some(enc.sha256), &|_| {}).unwrap();
//! assert_eq!(std::fs::read(&back).unwrap(), b"%PDF-1.7 statement");
//! assert_eq!(dec.sha256, enc.sha256);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use oneseal_core::stream::{StreamOpener, StreamSealer};
use oneseal_core::suite::{cbc_len_fits, CryptoError};
use oneseal_core::{DecryptSuite, SecretKey, Suite};
use sha2::{Digest, Sha256};

/// Size of one pipeline buffer (a multiple of 16).
pub const CHUNK: usize = 256 * 1024;
/// Buffers in flight between the two threads.
const DEPTH: usize = 4;

/// Errors of media encryption and decryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Reading or writing a file failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file did not decrypt (wrong key, altered, truncated, or not this suite).
    #[error("{}: {source}", path.display())]
    Crypto {
        /// The encrypted file.
        path: PathBuf,
        /// Why (coarse on purpose).
        source: CryptoError,
    },
    /// The decrypted bytes do not have the expected SHA-256.
    #[error("{}: SHA-256 of the decrypted file does not match the expected hash (altered file, wrong key, or hash of another file); nothing was written", path.display())]
    HashMismatch {
        /// The encrypted file.
        path: PathBuf,
    },
}

impl MediaError {
    /// Whether this is a cryptographic failure (exit 4) rather than I/O (exit 2).
    pub fn is_crypto(&self) -> bool {
        matches!(
            self,
            MediaError::Crypto { .. } | MediaError::HashMismatch { .. }
        )
    }
}

/// What [`encrypt_file`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptOutcome {
    /// Plaintext size.
    pub byte_size: u64,
    /// Encrypted file size.
    pub encrypted_byte_size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
}

/// What [`decrypt_file`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptOutcome {
    /// Plaintext size.
    pub byte_size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// The suite the file turned out to be.
    pub suite: Suite,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MediaError + 'a {
    move |source| MediaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, MediaError> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".oneseal-")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file beside", dest))
}

/// The channel that carries empty buffers back between the two pipeline threads, primed
/// with `DEPTH` buffers of `CHUNK` bytes: all the memory a stream ever uses.
fn buffer_pool() -> (mpsc::SyncSender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
    for _ in 0..DEPTH {
        // The channel has DEPTH + 1 slots and its receiver is alive: cannot block or fail.
        let _ = tx.send(vec![0u8; CHUNK]);
    }
    (tx, rx)
}

/// Fills `buf` from `r` until full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Encrypts `reader` into `writer` (header, body, trailer) while hashing the plaintext on a
/// second thread. Returns (plaintext bytes, ciphertext bytes, SHA-256).
pub fn encrypt_stream<R: Read + Send, W: Write>(
    key: &SecretKey,
    suite: Suite,
    mut reader: R,
    writer: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, u64, [u8; 32]), StreamError> {
    let (mut sealer, header) = StreamSealer::new(key, suite).map_err(StreamError::Crypto)?;
    writer.write_all(&header).map_err(StreamError::Write)?;
    let mut written = header.len() as u64;
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize, bool)>(DEPTH);
    let (free_tx, free_rx) = buffer_pool();
    thread::scope(|s| {
        let hasher = s.spawn(move || -> Result<(u64, [u8; 32]), io::Error> {
            let mut h = Sha256::new();
            let mut total = 0u64;
            while let Ok(mut buf) = free_rx.recv() {
                let n = read_full(&mut reader, &mut buf)?;
                h.update(&buf[..n]);
                total += n as u64;
                let last = n < CHUNK;
                if full_tx.send((buf, n, last)).is_err() || last {
                    break;
                }
            }
            Ok((total, h.finalize().into()))
        });
        let mut done = 0u64;
        let mut result = Ok(());
        let mut out = Vec::with_capacity(CHUNK + 16);
        while let Ok((mut buf, n, last)) = full_rx.recv() {
            let step = (|| {
                if last {
                    let whole = n / 16 * 16;
                    sealer
                        .update(&mut buf[..whole])
                        .map_err(StreamError::Crypto)?;
                    writer
                        .write_all(&buf[..whole])
                        .map_err(StreamError::Write)?;
                    let sealer = std::mem::replace(
                        &mut sealer,
                        StreamSealer::new(key, suite)
                            .map_err(StreamError::Crypto)?
                            .0,
                    );
                    let tail = sealer.finish(&buf[whole..n]).map_err(StreamError::Crypto)?;
                    writer.write_all(&tail).map_err(StreamError::Write)?;
                    written += (whole + tail.len()) as u64;
                } else {
                    sealer
                        .update_into(&buf[..n], &mut out)
                        .map_err(StreamError::Crypto)?;
                    writer.write_all(&out).map_err(StreamError::Write)?;
                    written += n as u64;
                }
                Ok(())
            })();
            done += n as u64;
            progress(done);
            if let Err(e) = step {
                result = Err(e);
                break;
            }
            if last {
                break;
            }
            // The reader may already have finished (and dropped its end); that is fine.
            let _ = free_tx.send(buf);
        }
        drop(full_rx);
        drop(free_tx);
        let hashed = match hasher.join() {
            Ok(r) => r.map_err(StreamError::Read),
            Err(_) => Err(StreamError::Read(io::Error::other("hashing thread failed"))),
        };
        result?;
        let (total, digest) = hashed?;
        Ok((total, written, digest))
    })
}

/// Errors of the stream functions, before a path is attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Reading the input failed.
    #[error("read failed: {0}")]
    Read(io::Error),
    /// Writing the output failed.
    #[error("write failed: {0}")]
    Write(io::Error),
    /// Decryption or verification failed.
    #[error("{0}")]
    Crypto(CryptoError),
}

/// Encrypts `input` to `output` atomically (temp file + rename).
pub fn encrypt_file(
    key: &SecretKey,
    suite: Suite,
    input: &Path,
    output: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EncryptOutcome, MediaError> {
    let src = File::open(input).map_err(io_err("open", input))?;
    let mut tmp = temp_beside(output)?;
    let (byte_size, encrypted_byte_size, sha256) = {
        let mut w = io::BufWriter::with_capacity(CHUNK, tmp.as_file_mut());
        let r = encrypt_stream(key, suite, src, &mut w, progress).map_err(|e| match e {
            StreamError::Read(source) => MediaError::Io {
                op: "read",
                path: input.to_path_buf(),
                source,
            },
            StreamError::Write(source) => MediaError::Io {
                op: "write",
                path: output.to_path_buf(),
                source,
            },
            StreamError::Crypto(source) => MediaError::Crypto {
                path: input.to_path_buf(),
                source,
            },
        })?;
        w.flush().map_err(io_err("write", output))?;
        r
    };
    tmp.as_file().sync_all().map_err(io_err("write", output))?;
    tmp.persist(output).map_err(|e| MediaError::Io {
        op: "write",
        path: output.to_path_buf(),
        source: e.error,
    })?;
    Ok(EncryptOutcome {
        byte_size,
        encrypted_byte_size,
        sha256,
    })
}

/// Decrypts `input` (of a known suite) into `writer`, hashing the plaintext on a second
/// thread. The plaintext written is unverified until this returns `Ok`.
pub fn decrypt_stream<R: Read, W: Write + Send>(
    key: &SecretKey,
    suite: Suite,
    mut reader: R,
    total_len: u64,
    writer: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, [u8; 32]), StreamError> {
    let h = StreamOpener::header_len(suite) as u64;
    let t = StreamOpener::trailer_len(suite) as u64;
    if total_len < h + t || (suite == Suite::Cbc && !cbc_len_fits(total_len as usize)) {
        return Err(StreamError::Crypto(CryptoError::BadLength));
    }
    let mut header = vec![0u8; h as usize];
    reader.read_exact(&mut header).map_err(StreamError::Read)?;
    let mut opener = StreamOpener::new(key, suite, &header).map_err(StreamError::Crypto)?;
    let body = total_len - h;
    // Everything before the tail goes through `update` in whole blocks.
    let mut bulk = (body - t) / 16 * 16;
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(DEPTH);
    let (free_tx, free_rx) = buffer_pool();
    thread::scope(|s| {
        let sink = s.spawn(move || -> Result<(u64, [u8; 32]), io::Error> {
            let mut hs = Sha256::new();
            let mut total = 0u64;
            while let Ok((buf, n)) = full_rx.recv() {
                hs.update(&buf[..n]);
                writer.write_all(&buf[..n])?;
                total += n as u64;
                // The decrypting side may be done with buffers; keep draining regardless.
                let _ = free_tx.send(buf);
            }
            writer.flush()?;
            Ok((total, hs.finalize().into()))
        });
        let run = (|| -> Result<(), StreamError> {
            let mut done = 0u64;
            while bulk > 0 {
                let Ok(mut buf) = free_rx.recv() else {
                    return Err(StreamError::Write(io::Error::other(
                        "writer thread stopped",
                    )));
                };
                let want = bulk.min(CHUNK as u64) as usize;
                reader
                    .read_exact(&mut buf[..want])
                    .map_err(StreamError::Read)?;
                opener
                    .update(&mut buf[..want])
                    .map_err(StreamError::Crypto)?;
                bulk -= want as u64;
                done += want as u64;
                progress(done);
                if full_tx.send((buf, want)).is_err() {
                    return Err(StreamError::Write(io::Error::other(
                        "writer thread stopped",
                    )));
                }
            }
            let mut tail = Vec::new();
            reader.read_to_end(&mut tail).map_err(StreamError::Read)?;
            let opener = std::mem::replace(
                &mut opener,
                StreamOpener::new(key, suite, &header).map_err(StreamError::Crypto)?,
            );
            let last = opener.finish(&tail).map_err(StreamError::Crypto)?;
            let n = last.len();
            let mut buf = last;
            buf.resize(n.max(1), 0);
            if full_tx.send((buf, n)).is_err() {
                return Err(StreamError::Write(io::Error::other(
                    "writer thread stopped",
                )));
            }
            Ok(())
        })();
        drop(full_tx);
        let sunk = match sink.join() {
            Ok(r) => r.map_err(StreamError::Write),
            Err(_) => Err(StreamError::Write(io::Error::other("writer thread failed"))),
        };
        run?;
        sunk
    })
}

/// Decrypts `input` to `output`: into a temp file beside it, verify the tag (gcm) and the
/// expected SHA-256 if given, then rename. On failure nothing is left at `output`.
/// `DecryptSuite::Auto` tries gcm, then cbc when gcm fails and the length fits.
pub fn decrypt_file(
    key: &SecretKey,
    suite: DecryptSuite,
    input: &Path,
    output: &Path,
    expected_sha256: Option<[u8; 32]>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DecryptOutcome, MediaError> {
    let mut src = File::open(input).map_err(io_err("open", input))?;
    let total = src.metadata().map_err(io_err("read", input))?.len();
    let tries: &[Suite] = match suite {
        DecryptSuite::Gcm => &[Suite::Gcm],
        DecryptSuite::Cbc => &[Suite::Cbc],
        _ if cbc_len_fits(total as usize) => &[Suite::Gcm, Suite::Cbc],
        _ => &[Suite::Gcm],
    };
    let mut first_err = None;
    for &s in tries {
        src.seek(SeekFrom::Start(0))
            .map_err(io_err("read", input))?;
        let mut tmp = temp_beside(output)?;
        let res = {
            let mut w = io::BufWriter::with_capacity(CHUNK, tmp.as_file_mut());
            decrypt_stream(
                key,
                s,
                io::BufReader::with_capacity(CHUNK, &mut src),
                total,
                &mut w,
                progress,
            )
        };
        match res {
            Ok((byte_size, sha256)) => {
                if expected_sha256.is_some_and(|e| e != sha256) {
                    // A cbc false accept under a wrong key would also land here.
                    first_err.get_or_insert(MediaError::HashMismatch {
                        path: input.to_path_buf(),
                    });
                    continue;
                }
                tmp.as_file().sync_all().map_err(io_err("write", output))?;
                tmp.persist(output).map_err(|e| MediaError::Io {
                    op: "write",
                    path: output.to_path_buf(),
                    source: e.error,
                })?;
                return Ok(DecryptOutcome {
                    byte_size,
                    sha256,
                    suite: s,
                });
            }
            Err(StreamError::Crypto(source)) => {
                first_err.get_or_insert(MediaError::Crypto {
                    path: input.to_path_buf(),
                    source,
                });
            }
            Err(StreamError::Read(source)) => {
                return Err(MediaError::Io {
                    op: "read",
                    path: input.to_path_buf(),
                    source,
                })
            }
            Err(StreamError::Write(source)) => {
                return Err(MediaError::Io {
                    op: "write",
                    path: output.to_path_buf(),
                    source,
                })
            }
        }
        // `tmp` is dropped here: the unverified plaintext is deleted.
    }
    Err(first_err.unwrap_or(MediaError::Crypto {
        path: input.to_path_buf(),
        source: CryptoError::BadLength,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes([5; 32])
    }

    #[test]
    fn round_trip_sizes_around_chunk_edges() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0usize,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join("p");
            std::fs::write(&p, &data).unwrap();
            for suite in [Suite::Gcm, Suite::Cbc] {
                let e = dir.path().join("e");
                let d = dir.path().join("d");
                let out = encrypt_file(&key(), suite, &p, &e, &|_| {}).unwrap();
                assert_eq!(out.byte_size, size as u64);
                assert_eq!(out.encrypted_byte_size, suite.sealed_len(size) as u64);
                assert_eq!(
                    std::fs::metadata(&e).unwrap().len(),
                    out.encrypted_byte_size
                );
                let sealed = std::fs::read(&e).unwrap();
                assert_eq!(
                    oneseal_core::stream::open_buffer(&key(), suite, &sealed).unwrap(),
                    data
                );
                let r = decrypt_file(
                    &key(),
                    DecryptSuite::Auto,
                    &e,
                    &d,
                    Some(out.sha256),
                    &|_| {},
                )
                .unwrap();
                assert_eq!(r.suite, suite);
                assert_eq!(std::fs::read(&d).unwrap(), data, "size {size} {suite}");
                std::fs::remove_file(&d).unwrap();
            }
        }
    }

    #[test]
    fn failures_leave_nothing_at_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        std::fs::write(&p, vec![9u8; 100_000]).unwrap();
        let e = dir.path().join("e");
        let d = dir.path().join("d");
        let out = encrypt_file(&key(), Suite::Gcm, &p, &e, &|_| {}).unwrap();
        let mut bytes = std::fs::read(&e).unwrap();
        bytes[5000] ^= 1;
        std::fs::write(&e, &bytes).unwrap();
        let err = decrypt_file(&key(), DecryptSuite::Auto, &e, &d, None, &|_| {}).unwrap_err();
        assert!(err.is_crypto(), "{err}");
        assert!(!d.exists());
        bytes[5000] ^= 1;
        std::fs::write(&e, &bytes).unwrap();
        let err =
            decrypt_file(&key(), DecryptSuite::Gcm, &e, &d, Some([0; 32]), &|_| {}).unwrap_err();
        assert!(matches!(err, MediaError::HashMismatch { .. }));
        assert!(!d.exists());
        let err = decrypt_file(
            &SecretKey::from_bytes([6; 32]),
            DecryptSuite::Auto,
            &e,
            &d,
            Some(out.sha256),
            &|_| {},
        )
        .unwrap_err();
        assert!(err.is_crypto());
        std::fs::write(&e, &bytes[..bytes.len() - 3]).unwrap();
        assert!(
            decrypt_file(&key(), DecryptSuite::Auto, &e, &d, None, &|_| {})
                .unwrap_err()
                .is_crypto()
        );
        assert!(!d.exists());
        // No temp files left behind either.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
