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

/// A writer that accepts `left` bytes, then fails like a full disk.
struct FullDisk {
    left: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("no space left on device"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that yields `left` bytes, then fails like a vanished network mount.
struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("stale file handle"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

/// Whichever thread writes (the encrypting one for gcm, the hashing one for cbc), a write
/// or read failure mid-stream comes back as that error, and neither thread hangs.
#[test]
fn mid_stream_failures_surface_and_do_not_hang() {
    let data = vec![1u8; 5 * CHUNK + 3];
    for suite in [Suite::Gcm, Suite::Cbc] {
        for left in [0, 100, 2 * CHUNK + 5] {
            let mut w = FullDisk { left };
            let e = encrypt_stream(&key(), suite, &data[..], &mut w, &|_| {}).unwrap_err();
            assert!(matches!(e, StreamError::Write(_)), "{suite} {left}: {e}");
        }
        for left in [0, 10, 3 * CHUNK] {
            let r = FailingReader { left };
            let e = encrypt_stream(&key(), suite, r, &mut io::sink(), &|_| {}).unwrap_err();
            assert!(matches!(e, StreamError::Read(_)), "{suite} {left}: {e}");
        }
        let mut sealed = Vec::new();
        encrypt_stream(&key(), suite, &data[..], &mut sealed, &|_| {}).unwrap();
        let mut w = FullDisk { left: CHUNK + 1 };
        let e = decrypt_stream(
            &key(),
            suite,
            &sealed[..],
            sealed.len() as u64,
            &mut w,
            &|_| {},
        )
        .unwrap_err();
        assert!(matches!(e, StreamError::Write(_)), "{suite}: {e}");
    }
}

/// Regression: `tampered_gcm_media_was_accepted_as_cbc` — under auto, a GCM file that
/// failed its tag was tried as CBC and, with no hash to check, released as garbage. CBC
/// media is now only released against an expected hash, and refused without one.
#[test]
fn tampered_gcm_media_is_never_accepted_as_cbc() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    // 4 + 28 = 32 bytes: a length CBC can produce too.
    std::fs::write(&p, b"1234").unwrap();
    let e = dir.path().join("e");
    let d = dir.path().join("d");
    let out = encrypt_file(&key(), Suite::Gcm, &p, &e, &|_| {}).unwrap();
    let mut bytes = std::fs::read(&e).unwrap();
    assert!(cbc_len_fits(bytes.len()));
    bytes[20] ^= 1;
    std::fs::write(&e, &bytes).unwrap();
    for suite in [DecryptSuite::Auto, DecryptSuite::Cbc] {
        let err = decrypt_file(&key(), suite, &e, &d, None, &|_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::Crypto {
                    source: CryptoError::CbcNeedsHash,
                    ..
                }
            ),
            "{suite}: {err}"
        );
        let err = decrypt_file(&key(), suite, &e, &d, Some(out.sha256), &|_| {}).unwrap_err();
        assert!(
            matches!(err, MediaError::Crypto { source: CryptoError::Undecryptable(s), .. } if s == suite),
            "{suite}: {err}"
        );
        assert!(!d.exists());
    }
    // A real CBC file decrypts with its hash and is refused without it.
    let c = dir.path().join("c");
    let out = encrypt_file(&key(), Suite::Cbc, &p, &c, &|_| {}).unwrap();
    assert!(decrypt_file(&key(), DecryptSuite::Cbc, &c, &d, None, &|_| {}).is_err());
    let r = decrypt_file(&key(), DecryptSuite::Cbc, &c, &d, Some(out.sha256), &|_| {}).unwrap();
    assert_eq!(r.suite, Suite::Cbc);
    assert_eq!(std::fs::read(&d).unwrap(), b"1234");
}

#[test]
fn decrypt_to_a_writer_releases_only_verified_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p");
    std::fs::write(&p, vec![3u8; 70_000]).unwrap();
    let e = dir.path().join("e");
    let out = encrypt_file(&key(), Suite::Gcm, &p, &e, &|_| {}).unwrap();
    let mut sink = Vec::new();
    decrypt_file_to(
        &key(),
        DecryptSuite::Gcm,
        &e,
        &mut sink,
        Some(out.sha256),
        &|_| {},
    )
    .unwrap();
    assert_eq!(sink, vec![3u8; 70_000]);
    let mut bytes = std::fs::read(&e).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&e, &bytes).unwrap();
    let mut sink = Vec::new();
    assert!(decrypt_file_to(&key(), DecryptSuite::Gcm, &e, &mut sink, None, &|_| {}).is_err());
    assert!(sink.is_empty());
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
    let err = decrypt_file(&key(), DecryptSuite::Gcm, &e, &d, None, &|_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::Crypto {
                source: CryptoError::Undecryptable(DecryptSuite::Gcm),
                ..
            }
        ),
        "{err}"
    );
    bytes[5000] ^= 1;
    std::fs::write(&e, &bytes).unwrap();
    let err = decrypt_file(&key(), DecryptSuite::Gcm, &e, &d, Some([0; 32]), &|_| {}).unwrap_err();
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
