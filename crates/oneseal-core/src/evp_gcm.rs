//! Incremental AES-256-GCM (96-bit nonce, no AAD) through aws-lc's `EVP_aes_256_gcm`.
//!
//! Neither RustCrypto's `aes-gcm` nor `aws-lc-rs` offers GCM over a stream: both seal one
//! whole buffer. Composing CTR and GHASH from separate crates works, but costs two passes
//! over the data (2.7 GB/s on the reference machine); aws-lc's stitched AES-NI/VAES + CLMUL
//! code does both in one (11.8 GB/s), which keeps media encryption ahead of SHA-256. This
//! is the only `unsafe` in the crate: a thin owner of one `EVP_CIPHER_CTX`. The output is
//! checked against `aes-gcm` by a property test and against Python's `cryptography` by the
//! test vectors.

use std::ffi::c_int;
use std::ptr::{self, NonNull};

use aws_lc_sys as ffi;

use crate::secret::SecretKey;
use crate::suite::{CryptoError, GCM_NONCE_LEN, GCM_TAG_LEN};

/// Largest piece handed to one `EVP_*Update` call, whose length is a C `int`.
const MAX_PIECE: usize = 1 << 30;

/// One AES-256-GCM operation in progress, encrypting or decrypting.
pub(crate) struct EvpGcm {
    ctx: NonNull<ffi::EVP_CIPHER_CTX>,
    encrypt: bool,
}

// SAFETY: the context is owned by this value alone (never shared or aliased), and aws-lc
// cipher contexts have no thread affinity, so moving it to another thread is sound.
unsafe impl Send for EvpGcm {}

impl std::fmt::Debug for EvpGcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvpGcm([REDACTED])")
    }
}

impl EvpGcm {
    /// Starts encrypting (`encrypt`) or decrypting under `key` and `nonce`.
    pub(crate) fn new(
        key: &SecretKey,
        nonce: &[u8; GCM_NONCE_LEN],
        encrypt: bool,
    ) -> Result<Self, CryptoError> {
        // SAFETY: plain FFI calls. `CRYPTO_library_init` is idempotent and thread-safe.
        // The new context is checked for NULL and owned by `this` (freed by `Drop`) before
        // anything can fail. The key is 32 bytes and the nonce 12, the lengths
        // EVP_aes_256_gcm reads by default; aws-lc copies both into the context.
        unsafe {
            ffi::CRYPTO_library_init();
            let ctx = NonNull::new(ffi::EVP_CIPHER_CTX_new()).ok_or(CryptoError::Library)?;
            let this = EvpGcm { ctx, encrypt };
            let init = if encrypt {
                ffi::EVP_EncryptInit_ex(
                    ctx.as_ptr(),
                    ffi::EVP_aes_256_gcm(),
                    ptr::null_mut(),
                    key.expose().as_ptr(),
                    nonce.as_ptr(),
                )
            } else {
                ffi::EVP_DecryptInit_ex(
                    ctx.as_ptr(),
                    ffi::EVP_aes_256_gcm(),
                    ptr::null_mut(),
                    key.expose().as_ptr(),
                    nonce.as_ptr(),
                )
            };
            if init != 1 {
                return Err(CryptoError::Library);
            }
            Ok(this)
        }
    }

    /// Transforms `len` bytes from `input` to `output`, which may be the same pointer.
    ///
    /// # Safety
    /// `input` must be valid for reads and `output` for writes of `len` bytes, and the two
    /// ranges must be identical or disjoint.
    unsafe fn apply_raw(
        &mut self,
        input: *const u8,
        output: *mut u8,
        len: usize,
    ) -> Result<(), CryptoError> {
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(MAX_PIECE);
            let mut out_len: c_int = 0;
            // `piece` <= 2^30 fits a C int. GCM is a stream mode in aws-lc's EVP layer
            // (a custom cipher): each call writes exactly its input length.
            // SAFETY: the caller's ranges cover `done..done + piece`.
            let ok = unsafe {
                let (i, o) = (input.add(done), output.add(done));
                if self.encrypt {
                    ffi::EVP_EncryptUpdate(self.ctx.as_ptr(), o, &mut out_len, i, piece as c_int)
                } else {
                    ffi::EVP_DecryptUpdate(self.ctx.as_ptr(), o, &mut out_len, i, piece as c_int)
                }
            };
            // aws-lc refuses input past GCM's 2^36 - 32 byte limit.
            if ok != 1 || usize::try_from(out_len) != Ok(piece) {
                return Err(CryptoError::BadLength);
            }
            done += piece;
        }
        Ok(())
    }

    /// Encrypts or decrypts `buf` in place.
    pub(crate) fn apply(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let p = buf.as_mut_ptr();
        // SAFETY: one slice, read and written in place (identical ranges).
        unsafe { self.apply_raw(p, p, buf.len()) }
    }

    /// Encrypts or decrypts `input` into `output`, which must be as long.
    pub(crate) fn apply_into(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        if input.len() != output.len() {
            return Err(CryptoError::BadLength);
        }
        // SAFETY: two slices of the same length; `&[u8]` and `&mut [u8]` cannot overlap.
        unsafe { self.apply_raw(input.as_ptr(), output.as_mut_ptr(), input.len()) }
    }

    /// Ends an encryption and returns the tag.
    pub(crate) fn tag(self) -> Result<[u8; GCM_TAG_LEN], CryptoError> {
        if !self.encrypt {
            return Err(CryptoError::Authentication);
        }
        let mut tag = [0u8; GCM_TAG_LEN];
        let mut out_len: c_int = 0;
        // SAFETY: GCM's final step writes no output (`out_len` stays 0; aws-lc's GCM has no
        // buffered bytes); GET_TAG copies 16 bytes into `tag`, which has 16.
        let ok = unsafe {
            ffi::EVP_EncryptFinal_ex(self.ctx.as_ptr(), tag.as_mut_ptr(), &mut out_len) == 1
                && ffi::EVP_CIPHER_CTX_ctrl(
                    self.ctx.as_ptr(),
                    ffi::EVP_CTRL_GCM_GET_TAG,
                    GCM_TAG_LEN as c_int,
                    tag.as_mut_ptr().cast(),
                ) == 1
        };
        if ok && out_len == 0 {
            Ok(tag)
        } else {
            Err(CryptoError::BadLength)
        }
    }

    /// Ends a decryption: succeeds only if `tag` is the tag of everything decrypted.
    /// aws-lc compares in constant time.
    pub(crate) fn verify(self, tag: &[u8; GCM_TAG_LEN]) -> Result<(), CryptoError> {
        if self.encrypt {
            return Err(CryptoError::Authentication);
        }
        let mut expected = *tag;
        let mut scratch = [0u8; 16];
        let mut out_len: c_int = 0;
        // SAFETY: SET_TAG reads 16 bytes from `expected` (a 16-byte array aws-lc copies);
        // the final step writes nothing for GCM, and `scratch` has room for a block anyway.
        let ok = unsafe {
            ffi::EVP_CIPHER_CTX_ctrl(
                self.ctx.as_ptr(),
                ffi::EVP_CTRL_GCM_SET_TAG,
                GCM_TAG_LEN as c_int,
                expected.as_mut_ptr().cast(),
            ) == 1
                && ffi::EVP_DecryptFinal_ex(self.ctx.as_ptr(), scratch.as_mut_ptr(), &mut out_len)
                    == 1
        };
        if ok && out_len == 0 {
            Ok(())
        } else {
            Err(CryptoError::Authentication)
        }
    }
}

impl Drop for EvpGcm {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from EVP_CIPHER_CTX_new, is owned by this value alone and is
        // freed exactly once here. aws-lc cleanses the key schedule before freeing it.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.ctx.as_ptr()) }
    }
}
