//! Incremental (streaming) forms of the two suites, for media files too large to hold in
//! memory. Output is byte-for-byte the media format of DESIGN §3:
//! `gcm`: nonce(12) ‖ ciphertext ‖ tag(16); `cbc`: iv(16) ‖ PKCS#7-padded ciphertext.
//!
//! AES-GCM is composed exactly as NIST SP 800-38D defines it with a 96-bit nonce and no AAD:
//! the keystream from AES-CTR starting at counter block 2 (aws-lc's CTR; its 128-bit counter
//! equals GCM's inc32 for every length GCM allows, 2^32 - 2 blocks), GHASH from RustCrypto's
//! `ghash` (CLMUL), and the tag masked with E(K, J0) from RustCrypto's `aes`. The tests check
//! it against the `aes-gcm` crate, and the test vectors against Python's `cryptography`.
//!
//! Callers feed whole 16-byte blocks to `update` and the remainder to `finish`.

use aes::cipher::{
    block_padding::Pkcs7, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit,
};
use aes::Aes256;
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::SecretKey;
use crate::suite::{fill_random, CryptoError, Suite, CBC_IV_LEN, GCM_NONCE_LEN, GCM_TAG_LEN};

type Block = aes::Block;

/// GCM's limit for one nonce: 2^32 - 2 blocks of plaintext.
pub const GCM_MAX_PLAINTEXT: u64 = ((1u64 << 32) - 2) * 16;

struct GcmCore {
    ctr: Keystream,
    ghash: GHash,
    ek_j0: Block,
    len: u64,
}

/// AES-256-CTR through aws-lc, applied in place via a reused scratch buffer.
struct Keystream {
    key: aws_lc_rs::cipher::StreamingEncryptingKey,
    scratch: Vec<u8>,
}

impl Keystream {
    fn new(key: &SecretKey, counter_block: [u8; 16]) -> Result<Self, CryptoError> {
        use aws_lc_rs::cipher::{
            EncryptionContext, StreamingEncryptingKey, UnboundCipherKey, AES_256,
        };
        let k =
            UnboundCipherKey::new(&AES_256, key.expose()).map_err(|_| CryptoError::BadLength)?;
        let ctx = EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(counter_block));
        let key =
            StreamingEncryptingKey::less_safe_ctr(k, ctx).map_err(|_| CryptoError::BadLength)?;
        Ok(Keystream {
            key,
            scratch: Vec::new(),
        })
    }

    /// Encrypts `input` into `output` (cleared first), with no copy back.
    fn apply_into(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<(), CryptoError> {
        output.clear();
        output.resize(input.len() + 16, 0);
        let n = self
            .key
            .update(input, output)
            .map_err(|_| CryptoError::BadLength)?
            .written()
            .len();
        if n != input.len() {
            return Err(CryptoError::BadLength);
        }
        output.truncate(n);
        Ok(())
    }

    fn apply(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        if buf.is_empty() {
            return Ok(());
        }
        // aws-lc asks for room for one more block than the input.
        self.scratch.resize(buf.len() + 16, 0);
        let n = self
            .key
            .update(buf, &mut self.scratch)
            .map_err(|_| CryptoError::BadLength)?
            .written()
            .len();
        // CTR is a stream mode: every input byte comes out at once.
        if n != buf.len() {
            return Err(CryptoError::BadLength);
        }
        buf.copy_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

impl GcmCore {
    fn new(key: &SecretKey, nonce: &[u8; GCM_NONCE_LEN]) -> Result<Self, CryptoError> {
        let aes = Aes256::new(key.expose().into());
        let mut h = Block::default();
        aes.encrypt_block(&mut h);
        let mut j0 = [0u8; 16];
        j0[..GCM_NONCE_LEN].copy_from_slice(nonce);
        j0[15] = 1;
        let mut ek_j0 = Block::from(j0);
        aes.encrypt_block(&mut ek_j0);
        j0[15] = 2;
        Ok(GcmCore {
            ctr: Keystream::new(key, j0)?,
            ghash: GHash::new(&h),
            ek_j0,
            len: 0,
        })
    }

    fn count(&mut self, n: usize) -> Result<(), CryptoError> {
        self.len += n as u64;
        if self.len > GCM_MAX_PLAINTEXT {
            return Err(CryptoError::BadLength);
        }
        Ok(())
    }

    fn tag(mut self) -> [u8; GCM_TAG_LEN] {
        let mut lens = Block::default();
        lens[8..].copy_from_slice(&(self.len * 8).to_be_bytes());
        self.ghash.update(&[lens]);
        let mut tag: [u8; GCM_TAG_LEN] = self.ghash.finalize().into();
        for (t, e) in tag.iter_mut().zip(self.ek_j0.iter()) {
            *t ^= e;
        }
        tag
    }
}

enum SealInner {
    Gcm(GcmCore),
    Cbc(Box<cbc::Encryptor<Aes256>>),
}

/// Encrypts a stream chunk by chunk.
pub struct StreamSealer {
    inner: SealInner,
}

impl StreamSealer {
    /// A sealer under `key` with a fresh random nonce/IV; returns it and the header bytes
    /// (the nonce or IV) that start the output.
    pub fn new(key: &SecretKey, suite: Suite) -> Result<(Self, Vec<u8>), CryptoError> {
        match suite {
            Suite::Gcm => {
                let mut nonce = [0u8; GCM_NONCE_LEN];
                fill_random(&mut nonce)?;
                Ok((Self::gcm_with_nonce(key, &nonce)?, nonce.to_vec()))
            }
            Suite::Cbc => {
                let mut iv = [0u8; CBC_IV_LEN];
                fill_random(&mut iv)?;
                let aes = Aes256::new(key.expose().into());
                let enc = cbc::Encryptor::inner_iv_init(aes, (&iv).into());
                Ok((
                    StreamSealer {
                        inner: SealInner::Cbc(Box::new(enc)),
                    },
                    iv.to_vec(),
                ))
            }
        }
    }

    fn gcm_with_nonce(key: &SecretKey, nonce: &[u8; GCM_NONCE_LEN]) -> Result<Self, CryptoError> {
        Ok(StreamSealer {
            inner: SealInner::Gcm(GcmCore::new(key, nonce)?),
        })
    }

    /// Encrypts `buf` in place. `buf.len()` must be a multiple of 16.
    pub fn update(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        if buf.len() % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        match &mut self.inner {
            SealInner::Gcm(g) => {
                g.count(buf.len())?;
                g.ctr.apply(buf)?;
                g.ghash.update_padded(buf);
            }
            SealInner::Cbc(c) => {
                for block in buf.chunks_exact_mut(16) {
                    c.encrypt_block_mut(Block::from_mut_slice(block));
                }
            }
        }
        Ok(())
    }

    /// Encrypts `input` (a multiple of 16 bytes) into `output`, replacing its contents;
    /// saves the copy that in-place [`update`](Self::update) makes for gcm.
    pub fn update_into(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<(), CryptoError> {
        if input.len() % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        match &mut self.inner {
            SealInner::Gcm(g) => {
                g.count(input.len())?;
                g.ctr.apply_into(input, output)?;
                g.ghash.update_padded(output);
                Ok(())
            }
            SealInner::Cbc(_) => {
                output.clear();
                output.extend_from_slice(input);
                self.update(output)
            }
        }
    }

    /// Encrypts the final (possibly partial) piece and returns the bytes that end the
    /// output: its ciphertext plus the tag (gcm), or the padded last blocks (cbc).
    pub fn finish(self, last: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.inner {
            SealInner::Gcm(mut g) => {
                g.count(last.len())?;
                let mut out = last.to_vec();
                g.ctr.apply(&mut out)?;
                g.ghash.update_padded(&out);
                out.extend_from_slice(&g.tag());
                Ok(out)
            }
            SealInner::Cbc(c) => Ok(c.encrypt_padded_vec_mut::<Pkcs7>(last)),
        }
    }
}

enum OpenInner {
    Gcm(GcmCore),
    Cbc(Box<cbc::Decryptor<Aes256>>),
}

/// Decrypts a stream chunk by chunk. For gcm the plaintext it yields is **unverified** until
/// [`finish`](Self::finish) succeeds: write it somewhere that is discarded on failure.
pub struct StreamOpener {
    inner: OpenInner,
}

impl StreamOpener {
    /// Bytes of header (nonce/IV) the suite puts first.
    pub fn header_len(suite: Suite) -> usize {
        match suite {
            Suite::Gcm => GCM_NONCE_LEN,
            Suite::Cbc => CBC_IV_LEN,
        }
    }

    /// Bytes `finish` needs held back at the end: the tag (gcm) or the last block (cbc).
    pub fn trailer_len(_suite: Suite) -> usize {
        16
    }

    /// An opener for `suite` given the header bytes read from the start of the stream.
    pub fn new(key: &SecretKey, suite: Suite, header: &[u8]) -> Result<Self, CryptoError> {
        match suite {
            Suite::Gcm => {
                let nonce: &[u8; GCM_NONCE_LEN] =
                    header.try_into().map_err(|_| CryptoError::BadLength)?;
                Ok(StreamOpener {
                    inner: OpenInner::Gcm(GcmCore::new(key, nonce)?),
                })
            }
            Suite::Cbc => {
                let iv: &[u8; CBC_IV_LEN] =
                    header.try_into().map_err(|_| CryptoError::BadLength)?;
                let aes = Aes256::new(key.expose().into());
                Ok(StreamOpener {
                    inner: OpenInner::Cbc(Box::new(cbc::Decryptor::inner_iv_init(aes, iv.into()))),
                })
            }
        }
    }

    /// Decrypts `buf` in place (a multiple of 16 bytes, never including the held-back trailer).
    pub fn update(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        if buf.len() % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        match &mut self.inner {
            OpenInner::Gcm(g) => {
                g.count(buf.len())?;
                g.ghash.update_padded(buf);
                g.ctr.apply(buf)?;
            }
            OpenInner::Cbc(c) => {
                for block in buf.chunks_exact_mut(16) {
                    c.decrypt_block_mut(Block::from_mut_slice(block));
                }
            }
        }
        Ok(())
    }

    /// Decrypts the tail (remaining ciphertext plus the tag for gcm; the last whole blocks
    /// for cbc), verifies the tag or padding, and returns the final plaintext bytes.
    pub fn finish(self, tail: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.inner {
            OpenInner::Gcm(mut g) => {
                if tail.len() < GCM_TAG_LEN {
                    return Err(CryptoError::BadLength);
                }
                let (ct, tag) = tail.split_at(tail.len() - GCM_TAG_LEN);
                g.count(ct.len())?;
                g.ghash.update_padded(ct);
                let mut out = ct.to_vec();
                g.ctr.apply(&mut out)?;
                let expect = g.tag();
                if bool::from(expect.ct_eq(tag)) {
                    Ok(out)
                } else {
                    Err(CryptoError::Authentication)
                }
            }
            OpenInner::Cbc(c) => {
                if tail.is_empty() || tail.len() % 16 != 0 {
                    return Err(CryptoError::BadLength);
                }
                let mut out = tail.to_vec();
                let n = c
                    .decrypt_padded_mut::<Pkcs7>(&mut out)
                    .map_err(|_| CryptoError::Padding)?
                    .len();
                out.truncate(n);
                Ok(out)
            }
        }
    }
}

/// Seals a whole in-memory buffer in the media format and hashes the plaintext in the same
/// pass over each chunk (the walker's inline-media path and small files).
pub fn seal_with_hash(
    key: &SecretKey,
    suite: Suite,
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), CryptoError> {
    let (mut sealer, header) = StreamSealer::new(key, suite)?;
    let mut out = Vec::with_capacity(suite.sealed_len(plaintext.len()));
    out.extend_from_slice(&header);
    let mut hasher = Sha256::new();
    let whole = plaintext.len() - plaintext.len() % 16;
    for chunk in plaintext[..whole].chunks(64 * 1024) {
        hasher.update(chunk);
        let start = out.len();
        out.extend_from_slice(chunk);
        sealer.update(&mut out[start..])?;
    }
    let last = &plaintext[whole..];
    hasher.update(last);
    out.extend_from_slice(&sealer.finish(last)?);
    Ok((out, hasher.finalize().into()))
}

/// Opens a whole in-memory media buffer of a known suite.
pub fn open_buffer(key: &SecretKey, suite: Suite, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let h = StreamOpener::header_len(suite);
    let t = StreamOpener::trailer_len(suite);
    if data.len() < h + t {
        return Err(CryptoError::BadLength);
    }
    let mut opener = StreamOpener::new(key, suite, &data[..h])?;
    let body = &data[h..];
    let split = (body.len() - t) / 16 * 16;
    let mut out = body[..split].to_vec();
    opener.update(&mut out)?;
    out.extend_from_slice(&opener.finish(&body[split..])?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{DecryptSuite, FieldCipher};
    use proptest::prelude::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x42; 32])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The composed GCM must be exactly aes-gcm's output, for every length.
        #[test]
        fn gcm_stream_matches_aes_gcm(pt in proptest::collection::vec(any::<u8>(), 0..2000), nonce in any::<[u8; 12]>()) {
            let k = key();
            let mut s = StreamSealer::gcm_with_nonce(&k, &nonce).unwrap();
            let whole = pt.len() / 16 * 16;
            let mut out = pt[..whole].to_vec();
            s.update(&mut out).unwrap();
            out.extend_from_slice(&s.finish(&pt[whole..]).unwrap());
            let mut framed = nonce.to_vec();
            framed.extend_from_slice(&out);
            let reference = FieldCipher::new(&k).seal_with_nonce_for_tests(Suite::Gcm, &nonce, &pt).unwrap();
            prop_assert_eq!(&framed, &reference);
            prop_assert_eq!(open_buffer(&k, Suite::Gcm, &framed).unwrap(), pt);
        }

        #[test]
        fn buffer_round_trip_both_suites(pt in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let k = key();
            for suite in [Suite::Gcm, Suite::Cbc] {
                let (ct, digest) = seal_with_hash(&k, suite, &pt).unwrap();
                prop_assert_eq!(ct.len(), suite.sealed_len(pt.len()));
                prop_assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&pt)));
                prop_assert_eq!(open_buffer(&k, suite, &ct).unwrap(), pt.clone());
                // And the field cipher reads the same bytes.
                prop_assert_eq!(FieldCipher::new(&k).open(DecryptSuite::from(suite), &ct).unwrap(), pt.clone());
            }
        }
    }

    #[test]
    fn tampered_stream_fails() {
        let k = key();
        let (mut ct, _) = seal_with_hash(&k, Suite::Gcm, &[7u8; 100]).unwrap();
        ct[20] ^= 0x80;
        assert_eq!(
            open_buffer(&k, Suite::Gcm, &ct),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            open_buffer(&k, Suite::Gcm, &ct[..20]),
            Err(CryptoError::BadLength)
        );
        let (ct, _) = seal_with_hash(&k, Suite::Cbc, &[7u8; 100]).unwrap();
        assert_eq!(
            open_buffer(&k, Suite::Cbc, &ct[..ct.len() - 1]),
            Err(CryptoError::BadLength)
        );
    }
}
