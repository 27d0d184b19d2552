//! # oneseal-media
//!
//! Streaming media encryption for WhatsApp uploads, broadcasts and downloaded media, in the
//! media formats (`gcm`: nonce ‖ ciphertext ‖ tag; `cbc`: IV ‖ padded
//! ciphertext). Encryption computes the SHA-256 of the **plaintext** in the same pass
//! (`sha256FileHash` / `sha256Hash`), on a second core: SHA-256, the one step that cannot be
//! split, gets a thread of its own while the other reads, encrypts and writes (see
//! [`encrypt_stream`] for cbc). Memory is a few fixed 256 KiB buffers whatever the file size,
//! and output files are synced behind the writes so the sync before the rename is short.
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
//! let dec = decrypt_file(&key, DecryptSuite::Gcm, &sealed, &back, Some(enc.sha256), &|_| {}).unwrap();
//! assert_eq!(std::fs::read(&back).unwrap(), b"%PDF-1.7 statement");
//! assert_eq!(dec.sha256, enc.sha256);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Borrow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;

use oneseal_core::atomic::PendingFile;
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
    /// A few words on what failed, without file names (for answers to remote callers).
    pub fn short(&self) -> &'static str {
        match self {
            MediaError::Io { .. } => "an I/O error on the gateway",
            MediaError::Crypto { .. } => "it does not decrypt with its key",
            MediaError::HashMismatch { .. } => "its SHA-256 does not match",
        }
    }

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

fn temp_beside(dest: &Path) -> Result<PendingFile, MediaError> {
    PendingFile::beside(dest).map_err(io_err("create a temporary file beside", dest))
}

/// Output written after which a helper thread starts an `fdatasync` of what is on the file
/// so far. The disk then works while the next stretch is encrypted, and the sync before the
/// rename waits for the last stretch instead of the whole file. Measured on 256 MiB to ext4
/// (README "Performance"): no flush-behind 61% of the SHA-256 rate, 64 MiB 69-84%, 16 MiB
/// 81-84%, 1-8 MiB 93-105% (noise between those).
const FLUSH_BEHIND: u64 = 4 << 20;

/// A writer into a file that, every [`FLUSH_BEHIND`] bytes, nudges the syncing thread.
struct FlushBehind<'a> {
    file: &'a File,
    pending: u64,
    kick: mpsc::SyncSender<()>,
}

impl Write for FlushBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.pending += n as u64;
        if self.pending >= FLUSH_BEHIND {
            self.pending = 0;
            // A sync still running covers this stretch's start; the next nudge the rest.
            let _ = self.kick.try_send(());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with a buffered writer into `file` that syncs behind itself, then flushes and
/// makes the whole file durable if `body` succeeded. Returns `body`'s result and the outcome
/// of flush + sync.
///
/// A failed background sync is kept and returned: the kernel reports a writeback error to
/// an open file once, so the final `sync_all` on the same handle would not see it again.
fn write_synced<T, E>(
    file: &File,
    body: impl FnOnce(&mut io::BufWriter<FlushBehind<'_>>) -> Result<T, E>,
) -> (Result<T, E>, io::Result<()>) {
    thread::scope(|s| {
        let (kick, nudges) = mpsc::sync_channel::<()>(1);
        let syncer = s.spawn(move || {
            let mut first = Ok(());
            while nudges.recv().is_ok() {
                if let Err(e) = file.sync_data() {
                    first = first.and(Err(e));
                }
            }
            first
        });
        let mut w = io::BufWriter::with_capacity(
            CHUNK,
            FlushBehind {
                file,
                pending: 0,
                kick,
            },
        );
        let out = body(&mut w);
        let flushed = if out.is_ok() { w.flush() } else { Ok(()) };
        // Dropping the writer drops `kick`, which ends the syncing thread.
        drop(w);
        let behind = syncer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sync thread failed")));
        let synced = match out {
            Ok(_) => flushed.and(behind).and_then(|()| file.sync_all()),
            // The caller discards the file.
            Err(_) => Ok(()),
        };
        (out, synced)
    })
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

/// Buffers a stream lends its hashing thread: up to `DEPTH` are made with `make`, after
/// which each is reused once the hashing thread hands it back.
struct Pool<T> {
    fresh: usize,
    make: fn() -> T,
    back: mpsc::Receiver<T>,
}

impl<T> Pool<T> {
    fn new(make: fn() -> T, back: mpsc::Receiver<T>) -> Self {
        Pool {
            fresh: DEPTH,
            make,
            back,
        }
    }

    /// The next buffer to fill, or `None` if the hashing thread has stopped.
    fn next(&mut self) -> Option<T> {
        if self.fresh > 0 {
            self.fresh -= 1;
            Some((self.make)())
        } else {
            self.back.recv().ok()
        }
    }
}

/// A plaintext chunk, shared read-only with the hashing thread.
fn new_chunk() -> Arc<Vec<u8>> {
    Arc::new(vec![0u8; CHUNK])
}

/// A chunk's bytes for refilling. The hashing thread hands a chunk back after we dropped our
/// clone, so this is the only reference and nothing is copied.
fn refill(chunk: &mut Arc<Vec<u8>>) -> &mut Vec<u8> {
    Arc::make_mut(chunk)
}

/// What the encrypting thread hands the hashing thread, in stream order.
enum ToHasher {
    /// A plaintext chunk (its first `usize` bytes) to hash, then hand back.
    Plain(Arc<Vec<u8>>, usize),
    /// Ciphertext to write, then hand back (cbc only, see [`encrypt_stream`]).
    Sealed(Vec<u8>),
}

/// Encrypts `reader` into `writer` (header, body, trailer) while hashing the plaintext on a
/// second thread. Returns (plaintext bytes, ciphertext bytes, SHA-256).
///
/// The work is split so that neither thread waits on the other. SHA-256 cannot be split, so
/// the hashing thread gets it whole; the other thread reads and encrypts. Writing goes with
/// the lighter side: with gcm (aws-lc, ~12 GB/s) the encrypting thread writes too and the
/// hashing thread only hashes; with cbc, whose encryption is inherently serial and slower
/// than SHA-256, the hashing thread writes. Each plaintext chunk is shared read-only by the
/// two threads and comes back to be refilled once hashed, so memory stays at a few chunks.
pub fn encrypt_stream<R: Read, W: Write + Send>(
    key: &SecretKey,
    suite: Suite,
    mut reader: R,
    writer: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, u64, [u8; 32]), StreamError> {
    let (sealer, header) = StreamSealer::new(key, suite).map_err(StreamError::Crypto)?;
    writer.write_all(&header).map_err(StreamError::Write)?;
    let write_on_hasher = suite == Suite::Cbc;
    let (mut own_writer, hasher_writer) = if write_on_hasher {
        (None, Some(writer))
    } else {
        (Some(writer), None)
    };
    let (to_hasher, hasher_rx) = mpsc::sync_channel::<ToHasher>(2 * DEPTH);
    let (plain_back, plain_back_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(DEPTH);
    let (sealed_back, sealed_back_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
    thread::scope(|s| {
        let hasher = s.spawn(move || -> Result<[u8; 32], io::Error> {
            let mut h = Sha256::new();
            let mut writer = hasher_writer;
            while let Ok(msg) = hasher_rx.recv() {
                // A buffer handed back after the encrypting side stopped is simply dropped.
                match msg {
                    ToHasher::Plain(buf, n) => {
                        h.update(&buf[..n]);
                        let _ = plain_back.send(buf);
                    }
                    ToHasher::Sealed(bytes) => {
                        if let Some(w) = writer.as_mut() {
                            // Returning drops the receiver, which stops the encrypting side.
                            w.write_all(&bytes)?;
                        }
                        let _ = sealed_back.send(bytes);
                    }
                }
            }
            Ok(h.finalize().into())
        });
        let stopped = || StreamError::Write(io::Error::other("hashing thread stopped"));
        let run = (|| -> Result<(u64, u64), StreamError> {
            let mut sealer = Some(sealer);
            let mut chunks = Pool::new(new_chunk, plain_back_rx);
            let mut sealed = Pool::new(|| Vec::with_capacity(CHUNK + 16), sealed_back_rx);
            let mut own_out = Vec::with_capacity(CHUNK + 16);
            let (mut total, mut written) = (0u64, header.len() as u64);
            // Writes here (gcm) or hands the bytes to the hashing thread (cbc).
            let mut emit = |bytes: &mut Vec<u8>| -> Result<(), StreamError> {
                match own_writer.as_mut() {
                    Some(w) => w.write_all(bytes).map_err(StreamError::Write),
                    None => {
                        let next = sealed.next().ok_or_else(stopped)?;
                        let full = std::mem::replace(bytes, next);
                        to_hasher
                            .send(ToHasher::Sealed(full))
                            .map_err(|_| stopped())
                    }
                }
            };
            loop {
                let mut buf = chunks.next().ok_or_else(stopped)?;
                let n =
                    read_full(&mut reader, &mut refill(&mut buf)[..]).map_err(StreamError::Read)?;
                to_hasher
                    .send(ToHasher::Plain(Arc::clone(&buf), n))
                    .map_err(|_| stopped())?;
                total += n as u64;
                let last = n < CHUNK;
                let whole = if last { n / 16 * 16 } else { n };
                let Some(sl) = sealer.as_mut() else {
                    // `sealer` is only taken on the last chunk, after which the loop ends.
                    return Err(StreamError::Crypto(CryptoError::BadLength));
                };
                sl.update_into(&buf[..whole], &mut own_out)
                    .map_err(StreamError::Crypto)?;
                if last {
                    if let Some(sl) = sealer.take() {
                        let tail = sl.finish(&buf[whole..n]).map_err(StreamError::Crypto)?;
                        own_out.extend_from_slice(&tail);
                    }
                }
                written += own_out.len() as u64;
                emit(&mut own_out)?;
                progress(total);
                if last {
                    return Ok((total, written));
                }
            }
        })();
        drop(to_hasher);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("hashing thread failed")));
        match (run, hashed) {
            (Ok((total, written)), Ok(digest)) => Ok((total, written, digest)),
            // The hashing thread's own write error says more than "it stopped".
            (_, Err(e)) => Err(StreamError::Write(e)),
            (Err(e), Ok(_)) => Err(e),
        }
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

impl StreamError {
    /// The error with its file attached: reads name `input`, writes `output`, and
    /// cryptographic failures the file being processed (`input`).
    fn at(self, input: &Path, output: &Path) -> MediaError {
        match self {
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
        }
    }
}

/// Puts a finished temp file in place once it is durable (`synced` from [`write_synced`]).
fn commit(tmp: PendingFile, synced: io::Result<()>, output: &Path) -> Result<(), MediaError> {
    synced.map_err(io_err("write", output))?;
    tmp.commit().map_err(io_err("write", output))
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
    let tmp = temp_beside(output)?;
    let (r, synced) = write_synced(tmp.file(), |w| encrypt_stream(key, suite, src, w, progress));
    let (byte_size, encrypted_byte_size, sha256) = r.map_err(|e| e.at(input, output))?;
    commit(tmp, synced, output)?;
    Ok(EncryptOutcome {
        byte_size,
        encrypted_byte_size,
        sha256,
    })
}

/// Decrypts `input` (of a known suite) into `writer`, hashing the plaintext on a second
/// thread. The plaintext written is unverified until this returns `Ok`.
///
/// As in [`encrypt_stream`], the hashing thread only hashes; this one reads, decrypts (in
/// place, both suites are fast to decrypt) and writes, sharing each chunk read-only.
pub fn decrypt_stream<R: Read, W: Write>(
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
    let opener = StreamOpener::new(key, suite, &header).map_err(StreamError::Crypto)?;
    let body = total_len - h;
    // Everything before the tail goes through `update` in whole blocks.
    let bulk = (body - t) / 16 * 16;
    let (to_hasher, hasher_rx) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(DEPTH);
    let (plain_back, plain_back_rx) = mpsc::sync_channel::<Arc<Vec<u8>>>(DEPTH);
    thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            while let Ok((buf, n)) = hasher_rx.recv() {
                h.update(&buf[..n]);
                // The decrypting side may have stopped; the buffer is simply dropped then.
                let _ = plain_back.send(buf);
            }
            <[u8; 32]>::from(h.finalize())
        });
        let stopped = || StreamError::Read(io::Error::other("hashing thread stopped"));
        let run = (|| -> Result<u64, StreamError> {
            let mut opener = Some(opener);
            let mut chunks = Pool::new(new_chunk, plain_back_rx);
            let (mut done, mut left) = (0u64, bulk);
            loop {
                let mut buf = chunks.next().ok_or_else(stopped)?;
                let v = refill(&mut buf);
                let Some(op) = opener.as_mut() else {
                    // `opener` is only taken for the tail, after which the loop ends.
                    return Err(StreamError::Crypto(CryptoError::BadLength));
                };
                let n = if left > 0 {
                    let want = left.min(CHUNK as u64) as usize;
                    reader
                        .read_exact(&mut v[..want])
                        .map_err(StreamError::Read)?;
                    op.update(&mut v[..want]).map_err(StreamError::Crypto)?;
                    left -= want as u64;
                    want
                } else {
                    let mut tail = Vec::new();
                    reader.read_to_end(&mut tail).map_err(StreamError::Read)?;
                    let last = match opener.take() {
                        Some(op) => op.finish(&tail).map_err(StreamError::Crypto)?,
                        None => return Err(StreamError::Crypto(CryptoError::BadLength)),
                    };
                    // The tail is at most a block or two; it replaces the buffer outright.
                    *v = last;
                    v.len()
                };
                to_hasher
                    .send((Arc::clone(&buf), n))
                    .map_err(|_| stopped())?;
                writer.write_all(&buf[..n]).map_err(StreamError::Write)?;
                done += n as u64;
                progress(done.min(bulk));
                if opener.is_none() {
                    writer.flush().map_err(StreamError::Write)?;
                    return Ok(done);
                }
            }
        })();
        drop(to_hasher);
        let digest = hasher
            .join()
            .map_err(|_| StreamError::Read(io::Error::other("hashing thread failed")));
        let done = run?;
        Ok((done, digest?))
    })
}

/// Checks what can be checked before a data key is unwrapped: that `len` is a length the
/// suite(s) can produce, and that CBC (unauthenticated) has an expected hash to be released
/// against. The CLI calls this before any key-service call.
pub fn precheck(
    suite: DecryptSuite,
    len: u64,
    expected_sha256: Option<[u8; 32]>,
) -> Result<(), CryptoError> {
    let gcm_fits = len
        >= (StreamOpener::header_len(Suite::Gcm) + StreamOpener::trailer_len(Suite::Gcm)) as u64;
    let cbc_fits = usize::try_from(len).is_ok_and(cbc_len_fits);
    match suite {
        DecryptSuite::Cbc if expected_sha256.is_none() => Err(CryptoError::CbcNeedsHash),
        DecryptSuite::Cbc if !cbc_fits => Err(CryptoError::Undecryptable(suite)),
        DecryptSuite::Gcm if !gcm_fits => Err(CryptoError::Undecryptable(suite)),
        _ if !gcm_fits && !cbc_fits => Err(CryptoError::Undecryptable(suite)),
        _ => Ok(()),
    }
}

/// The suites to try, in order. CBC only with an expected hash (binary CBC is released only
/// against a known hash).
fn attempts(suite: DecryptSuite, len: u64, expected: Option<[u8; 32]>) -> &'static [Suite] {
    let cbc_ok = expected.is_some() && usize::try_from(len).is_ok_and(cbc_len_fits);
    match suite {
        DecryptSuite::Cbc => &[Suite::Cbc],
        DecryptSuite::Auto if cbc_ok => &[Suite::Gcm, Suite::Cbc],
        _ => &[Suite::Gcm],
    }
}

/// Decrypts `src` (of `total` bytes) into files from `make_out` (one per attempt; a failed
/// attempt's file is dropped with its unverified plaintext) until one verifies. Failures of a
/// suite are one error, [`CryptoError::Undecryptable`] naming `suite`: under CBC a hash
/// mismatch would otherwise say "the padding was valid". A hash mismatch after GCM verified
/// its tag is reported as such (no oracle: the bytes are authentic).
fn decrypt_verified<F, O>(
    key: &SecretKey,
    suite: DecryptSuite,
    input: &Path,
    expected: Option<[u8; 32]>,
    progress: &(dyn Fn(u64) + Sync),
    mut make_out: F,
) -> Result<(O, DecryptOutcome), MediaError>
where
    F: FnMut() -> Result<O, MediaError>,
    O: Borrow<File>,
{
    let mut src = File::open(input).map_err(io_err("open", input))?;
    let total = src.metadata().map_err(io_err("read", input))?.len();
    let crypto = |source| MediaError::Crypto {
        path: input.to_path_buf(),
        source,
    };
    precheck(suite, total, expected).map_err(crypto)?;
    for &s in attempts(suite, total, expected) {
        src.seek(SeekFrom::Start(0))
            .map_err(io_err("read", input))?;
        let out = make_out()?;
        let (res, synced) = write_synced(out.borrow(), |w| {
            decrypt_stream(
                key,
                s,
                io::BufReader::with_capacity(CHUNK, &mut src),
                total,
                w,
                progress,
            )
        });
        match res {
            Ok((byte_size, sha256)) => {
                let matches = expected.is_none_or(|e| e == sha256);
                if s == Suite::Gcm && !matches {
                    return Err(MediaError::HashMismatch {
                        path: input.to_path_buf(),
                    });
                }
                if matches {
                    synced.map_err(io_err("write", input))?;
                    let outcome = DecryptOutcome {
                        byte_size,
                        sha256,
                        suite: s,
                    };
                    return Ok((out, outcome));
                }
            }
            Err(StreamError::Crypto(_)) => {}
            Err(e) => return Err(e.at(input, input)),
        }
        // `out` is dropped here: the unverified plaintext is deleted.
    }
    let gcm_failed_cbc_possible = suite == DecryptSuite::Auto
        && expected.is_none()
        && usize::try_from(total).is_ok_and(cbc_len_fits);
    Err(crypto(if gcm_failed_cbc_possible {
        CryptoError::CbcNeedsHash
    } else {
        CryptoError::Undecryptable(suite)
    }))
}

/// An attempt's output in [`decrypt_file`].
struct Beside(PendingFile);

impl Borrow<File> for Beside {
    fn borrow(&self) -> &File {
        self.0.file()
    }
}

/// Decrypts `input` to `output`: into a temp file beside it, verify the tag (gcm) and the
/// expected SHA-256 if given, then rename. On failure nothing is left at `output`.
/// `DecryptSuite::Auto` tries gcm, then cbc when gcm fails, the length fits and a hash is
/// expected. CBC without an expected hash is refused ([`CryptoError::CbcNeedsHash`]).
pub fn decrypt_file(
    key: &SecretKey,
    suite: DecryptSuite,
    input: &Path,
    output: &Path,
    expected_sha256: Option<[u8; 32]>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DecryptOutcome, MediaError> {
    let (out, outcome) = decrypt_verified(key, suite, input, expected_sha256, progress, || {
        temp_beside(output).map(Beside)
    })?;
    out.0.commit().map_err(io_err("write", output))?;
    Ok(outcome)
}

/// Decrypts `input` into an unnamed temp file in `scratch_dir` (gone on any exit) and
/// returns it, positioned at the start, once the tag and hash verified.
pub fn decrypt_file_verified(
    key: &SecretKey,
    suite: DecryptSuite,
    input: &Path,
    scratch_dir: &Path,
    expected_sha256: Option<[u8; 32]>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(File, DecryptOutcome), MediaError> {
    let (mut out, outcome) =
        decrypt_verified(key, suite, input, expected_sha256, progress, || {
            tempfile::tempfile_in(scratch_dir)
                .map_err(io_err("create a temporary file in", scratch_dir))
        })?;
    out.seek(SeekFrom::Start(0))
        .map_err(io_err("read", scratch_dir))?;
    Ok((out, outcome))
}

/// Like [`decrypt_file`], but streams the verified plaintext into `writer` (stdout, a pipe):
/// it is decrypted into an unnamed temp file first (gone on any exit), and not one byte
/// reaches `writer` before the tag and hash verified.
pub fn decrypt_file_to(
    key: &SecretKey,
    suite: DecryptSuite,
    input: &Path,
    writer: &mut dyn Write,
    expected_sha256: Option<[u8; 32]>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DecryptOutcome, MediaError> {
    let (mut out, outcome) = decrypt_file_verified(
        key,
        suite,
        input,
        &std::env::temp_dir(),
        expected_sha256,
        progress,
    )?;
    let write_err = |source| MediaError::Io {
        op: "write",
        path: PathBuf::from("<output>"),
        source,
    };
    io::copy(&mut out, writer).map_err(write_err)?;
    writer.flush().map_err(write_err)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests;
