//! `oneseal._oneseal`: the native half of the Python package. Everything here drives the
//! same engine as the CLI and the gateway; `python/oneseal/__init__.py` adds the Python
//! types (str/dict documents, file objects, async).
//!
//! The GIL is released around every engine call (crypto, file I/O, KMS): threads sharing one
//! engine run in parallel, and share its key cache. Errors become one exception class per
//! CLI exit class, with messages that never carry keys or plaintext.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneseal_core::{
    b64, cores::Cores, Api, BlobRouter, CacheConfig, DecryptSuite, Engine, EngineOptions,
    ErrorClass, FieldPath, KeyCache, KeyError, KeyProvider, LocalProvider, Policy, Suite,
};
use oneseal_kms::{AwsKmsProvider, KmsConfig};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(_oneseal, Error, PyException, "Every oneseal failure.");
create_exception!(
    _oneseal,
    UsageError,
    Error,
    "A setting or argument that cannot work (the CLI's exit 2)."
);
create_exception!(
    _oneseal,
    BadInputError,
    Error,
    "A document or value that is not what the policy expects (exit 3); `.path` is the JSON path."
);
create_exception!(
    _oneseal,
    CryptoError,
    Error,
    "Decryption or verification failed: altered, truncated, wrong key or wrong hash (exit 4)."
);
create_exception!(
    _oneseal,
    KeyServiceError,
    Error,
    "The key service failed or refused: denied, not found, throttled, unreachable (exit 5)."
);

/// One exception of the class `class` names, with `.path` set (`None` when there is none).
fn raise(class: ErrorClass, message: String, path: Option<String>) -> PyErr {
    let e = match class {
        ErrorClass::Config => UsageError::new_err(message),
        ErrorClass::Input => BadInputError::new_err(message),
        ErrorClass::Crypto => CryptoError::new_err(message),
        ErrorClass::KeyService => KeyServiceError::new_err(message),
        // A class added later: still a oneseal.Error.
        _ => Error::new_err(message),
    };
    Python::with_gil(|py| {
        // Setting an attribute on a fresh exception instance cannot fail but for memory.
        let _ = e.value(py).setattr("path", path);
    });
    e
}

fn core_err(e: oneseal_core::Error) -> PyErr {
    let path = e.path().map(String::from);
    raise(e.class(), e.to_string(), path)
}

fn key_err(e: KeyError) -> PyErr {
    raise(e.class(), e.to_string(), None)
}

fn usage(message: impl Into<String>) -> PyErr {
    raise(ErrorClass::Config, message.into(), None)
}

fn input(message: impl Into<String>, path: Option<String>) -> PyErr {
    raise(ErrorClass::Input, message.into(), path)
}

fn media_err(e: oneseal_media::MediaError) -> PyErr {
    match e {
        oneseal_media::MediaError::Io { .. } => usage(e.to_string()),
        other => raise(ErrorClass::Crypto, other.to_string(), None),
    }
}

/// The items a lenient decrypt left as they were: (JSON path, why).
type Failures = Vec<(Option<String>, String)>;

/// The engine, its key provider and the runtime that drives both.
#[pyclass(frozen, module = "oneseal._oneseal")]
struct NativeEngine {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    provider: Arc<dyn KeyProvider>,
    suite: Suite,
    decrypt_suite: DecryptSuite,
    /// Whether new data keys come from the local key (the platform cannot read them).
    local: bool,
}

fn parse<T: std::str::FromStr>(what: &str, v: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| usage(format!("{what}: {e}")))
}

#[pymethods]
impl NativeEngine {
    #[new]
    #[pyo3(signature = (
        kms_key_id=None, region=None, endpoint_url=None, profile=None, suite="gcm",
        encryption_context=None, local_key=None, fields=Vec::new(), strict=false, api=None,
        max_messages_per_key=1000, key_max_age_seconds=300, fresh_key_per_message=false,
        passthrough=Vec::new(), keep_going=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        kms_key_id: Option<String>,
        region: Option<String>,
        endpoint_url: Option<String>,
        profile: Option<String>,
        suite: &str,
        encryption_context: Option<BTreeMap<String, String>>,
        local_key: Option<PathBuf>,
        fields: Vec<String>,
        strict: bool,
        api: Option<String>,
        max_messages_per_key: usize,
        key_max_age_seconds: u64,
        fresh_key_per_message: bool,
        passthrough: Vec<String>,
        keep_going: bool,
    ) -> PyResult<Self> {
        let key_id = match kms_key_id {
            Some(k) if k.trim().is_empty() => {
                return Err(usage(
                    "kms_key_id is empty: give a KMS key id, ARN or alias/NAME (or None for the local key)",
                ))
            }
            k => k.map(|k| k.trim().to_string()),
        };
        let suite_new: Suite = parse("suite", suite)?;
        let decrypt_suite: DecryptSuite = parse("suite", suite)?;
        let api: Api = match api {
            Some(a) => parse("api", &a)?,
            None => Api::default(),
        };
        let mut extra = Vec::new();
        for f in &fields {
            for p in FieldPath::parse_many(f).map_err(|e| usage(format!("fields: {e}")))? {
                p.check_user_path()
                    .map_err(|e| usage(format!("fields: {e}")))?;
                extra.push(p);
            }
        }
        let mut policy = Policy::default()
            .with_extra_fields(&extra)
            .map_err(|e| usage(format!("fields: {e}")))?;
        if strict {
            let mut pass = Vec::new();
            for p in &passthrough {
                pass.extend(
                    FieldPath::parse_many(p).map_err(|e| usage(format!("passthrough: {e}")))?,
                );
            }
            policy = policy.strict(pass);
        }
        let mut cache = CacheConfig {
            max_messages: max_messages_per_key,
            max_age: Duration::from_secs(key_max_age_seconds),
            // An engine lives as long as its process (as the gateway does): the next data key
            // is made before the current one is spent, so a call seldom waits for KMS. A
            // local key is made in microseconds by the thread that needs it: made ahead on
            // the runtime's workers instead, it only wakes them to compete for the cores
            // with the threads computing (two threads on two cores went 1.5x one, not 1.9x).
            refresh_ahead: key_id.is_some(),
            ..CacheConfig::default()
        };
        cache.validate().map_err(|e| {
            let key = match e.limit {
                oneseal_core::CacheLimit::MaxMessages => "max_messages_per_key",
                oneseal_core::CacheLimit::MaxAge => "key_max_age_seconds",
            };
            usage(format!("{key}: {e}"))
        })?;
        if fresh_key_per_message {
            cache.max_messages = 1;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oneseal")
            .enable_all()
            .build()
            .map_err(|e| usage(format!("cannot start the async runtime: {e}")))?;
        let kms = KmsConfig {
            key_id: key_id.clone(),
            region,
            profile,
            endpoint_url,
            encryption_context: encryption_context.unwrap_or_default(),
            ..KmsConfig::default()
        };
        let local_path = match local_key {
            Some(p) => Some(p),
            None => oneseal_core::local::default_key_path(),
        };
        let remote = AwsKmsProvider::new(kms).into_dyn();
        let (encrypt, local): (Arc<dyn KeyProvider>, Result<Arc<dyn KeyProvider>, String>) =
            match (&key_id, &local_path) {
                (Some(_), Some(p)) if p.exists() => {
                    let l: Arc<dyn KeyProvider> =
                        Arc::new(LocalProvider::load(p).map_err(key_err)?);
                    (remote.clone(), Ok(l))
                }
                (Some(_), p) => (
                    remote.clone(),
                    Err(p
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "no local key".into())),
                ),
                (None, Some(p)) => {
                    let l: Arc<dyn KeyProvider> =
                        Arc::new(LocalProvider::init(p).map_err(key_err)?.0);
                    (l.clone(), Ok(l))
                }
                (None, None) => {
                    return Err(usage(
                        "no data directory for the local key on this system: pass local_key=PATH or kms_key_id",
                    ))
                }
            };
        let provider: Arc<dyn KeyProvider> =
            Arc::new(BlobRouter::new(Some(encrypt), local, Some(remote)));
        let engine = Engine::new(
            Arc::new(KeyCache::new(provider.clone(), cache)),
            policy,
            EngineOptions {
                suite: suite_new,
                decrypt_suite,
                api,
                keep_going,
                ..EngineOptions::default()
            },
        );
        Ok(NativeEngine {
            rt,
            engine,
            provider,
            suite: suite_new,
            decrypt_suite,
            local: key_id.is_none(),
        })
    }

    /// Whether new data keys come from the local key.
    #[getter]
    fn uses_local_key(&self) -> bool {
        self.local
    }

    /// Encrypts one JSON document (bytes) and returns its compact serialization.
    fn encrypt<'py>(&self, py: Python<'py>, doc: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let out = py
            .allow_threads(|| self.block_on(self.engine.encrypt_slice(doc, false)))
            .map_err(core_err)?;
        into_bytes(py, out)
    }

    /// Decrypts one JSON document (bytes). With `keep_going` (an engine setting), items that
    /// fail are left as they are; their errors are returned as `(path, message)` pairs.
    fn decrypt<'py>(
        &self,
        py: Python<'py>,
        doc: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, Failures)> {
        let (out, report) = py
            .allow_threads(|| self.block_on(self.engine.decrypt_slice(doc, false)))
            .map_err(core_err)?;
        let failures = report
            .failures
            .iter()
            .map(|e| (e.path().map(String::from), e.to_string()))
            .collect();
        Ok((into_bytes(py, out)?, failures))
    }

    /// Encrypts (or decrypts) an NDJSON file line by line into `dst`, written atomically;
    /// memory is bounded by the longest line.
    fn ndjson(&self, py: Python<'_>, src: PathBuf, dst: PathBuf, decrypt: bool) -> PyResult<u64> {
        py.allow_threads(|| self.ndjson_lines(&src, &dst, decrypt))
    }

    /// Encrypts the media file `path` to `out` (atomically) under a new data key. Returns
    /// (sha256_file_hash, encryption_key, kms_arn, byte_size, encrypted_byte_size).
    fn encrypt_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        out: PathBuf,
    ) -> PyResult<(String, String, String, u64, u64)> {
        py.allow_threads(|| {
            let dk = self
                .rt
                .block_on(self.provider.generate_data_key())
                .map_err(key_err)?;
            let r = oneseal_media::encrypt_file(&dk.key, self.suite, &path, &out, &|_| {})
                .map_err(media_err)?;
            Ok((
                hex::encode(r.sha256),
                b64::encode(&dk.blob),
                dk.key_arn.clone().unwrap_or_default(),
                r.byte_size,
                r.encrypted_byte_size,
            ))
        })
    }

    /// Decrypts the media file `path` to `out`: the tag and (when given) the SHA-256 verify
    /// before anything appears at `out`. Returns the plaintext size.
    #[pyo3(signature = (path, out, encryption_key, sha256=None))]
    fn decrypt_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        out: PathBuf,
        encryption_key: &str,
        sha256: Option<&str>,
    ) -> PyResult<u64> {
        let blob = b64::decode(encryption_key.trim())
            .map_err(|_| input("encryption_key is not base64", None))?;
        let expected = match sha256 {
            None => None,
            Some(h) => {
                let bytes = hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| input("sha256 is not 64 hexadecimal digits", None))?;
                Some(bytes)
            }
        };
        py.allow_threads(|| {
            let key = self
                .rt
                .block_on(self.provider.decrypt_data_key(&blob))
                .map_err(key_err)?
                .ok_or_else(|| {
                    raise(
                        ErrorClass::Crypto,
                        "no key provider can open this encryption_key".into(),
                        None,
                    )
                })?;
            let r = oneseal_media::decrypt_file(
                &key,
                self.decrypt_suite,
                &path,
                &out,
                expected,
                &|_| {},
            )
            .map_err(media_err)?;
            Ok(r.byte_size)
        })
    }
}

impl NativeEngine {
    /// Runs a document's future on this thread, computing only while one of the machine's
    /// cores is free for it: more Python threads than cores queue instead of time-slicing the
    /// cores between documents (see `oneseal_core::cores`).
    fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        Cores::machine().block_on(&self.rt, fut)
    }

    fn ndjson_lines(&self, src: &Path, dst: &Path, decrypt: bool) -> PyResult<u64> {
        let io = |op: &str, p: &Path, e: std::io::Error| {
            usage(format!("cannot {op} {}: {e}", p.display()))
        };
        let file = std::fs::File::open(src).map_err(|e| io("read", src, e))?;
        let dir = dst
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io("write in", dir, e))?;
        let mut w = BufWriter::new(tmp.as_file());
        let mut n = 0u64;
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(|e| io("read", src, e))?;
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let out = if decrypt {
                self.block_on(self.engine.decrypt_slice(line, false))
                    .map(|(o, _)| o)
            } else {
                self.block_on(self.engine.encrypt_slice(line, false))
            }
            .map_err(|e| {
                let path = e.path().map(String::from);
                raise(e.class(), format!("line {}: {e}", i + 1), path)
            })?;
            // One document per line: the serializer's own line end, if any, is the line's.
            let out = out.strip_suffix(b"\n").unwrap_or(&out);
            w.write_all(out)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| io("write", dst, e))?;
            n += 1;
        }
        w.flush().map_err(|e| io("write", dst, e))?;
        drop(w);
        tmp.as_file().sync_all().map_err(|e| io("write", dst, e))?;
        tmp.persist(dst).map_err(|e| io("write", dst, e.error))?;
        Ok(n)
    }
}

/// A Flows response key, usable once.
#[pyclass(frozen, module = "oneseal._oneseal")]
struct Sealer(Mutex<Option<oneseal_flows::ResponseSealer>>);

#[pymethods]
impl Sealer {
    /// Encrypts the response (JSON bytes) under the request's key with the flipped IV;
    /// returns the base64 body to answer with. A second call raises `UsageError`.
    fn seal(&self, py: Python<'_>, response: &[u8]) -> PyResult<String> {
        let sealer = self
            .0
            .lock()
            .map_err(|_| usage("the sealer is unusable"))?
            .take()
            .ok_or_else(|| {
                usage("this response key was used already: each request's key seals one response")
            })?;
        py.allow_threads(|| sealer.seal(response))
            .map_err(flows_err)
    }
}

/// Documents at least this large are copied into their `bytes` with the GIL released.
const COPY_WITHOUT_GIL: usize = 64 * 1024;

/// `out` as a Python `bytes`. A large one is copied with the GIL released: the copy is the
/// first write to the new object's pages (page faults, the kernel zeroing each page), and
/// under the GIL that serialized the threads sharing an engine (two threads on two cores
/// went 1.4x one thread with the 5 000-message document, where the copy was 93% of the page
/// faults).
fn into_bytes(py: Python<'_>, out: Vec<u8>) -> PyResult<Bound<'_, PyBytes>> {
    if out.len() < COPY_WITHOUT_GIL {
        return Ok(PyBytes::new(py, &out));
    }
    let len = ffi::Py_ssize_t::try_from(out.len())
        .map_err(|_| usage("the output is larger than a Python bytes object can hold"))?;
    // SAFETY: `PyBytes_FromStringAndSize(NULL, len)` returns a new bytes object (or NULL with
    // an exception set, which `from_owned_ptr_or_err` turns into the error) whose `len`-byte
    // buffer is uninitialized and is to be filled by its creator before anyone else sees the
    // object, as CPython's own code does. `PyBytes_AsString` of a bytes object is that buffer
    // (never NULL for a bytes object). Only this function holds a reference to the object
    // until it returns, so writing the buffer without the GIL races with nothing; `obj` keeps
    // it alive meanwhile, and the copy writes exactly `len` bytes from `out`, which is `len`
    // bytes long.
    unsafe {
        let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?.downcast_into_unchecked::<PyBytes>();
        // An address, which may cross to the GIL-free closure (a raw pointer may not).
        let dst = ffi::PyBytes_AsString(ptr) as usize;
        py.allow_threads(move || {
            std::ptr::copy_nonoverlapping(out.as_ptr(), dst as *mut u8, out.len());
            drop(out);
        });
        Ok(obj)
    }
}

fn flows_err(e: oneseal_flows::FlowsError) -> PyErr {
    use oneseal_flows::FlowsError as F;
    let class = match &e {
        F::Malformed(_) | F::NotJson(_) | F::MalformedSignature => ErrorClass::Input,
        F::Undecryptable(_) | F::BadSignature => ErrorClass::Crypto,
        _ => ErrorClass::Config,
    };
    raise(class, e.to_string(), None)
}

/// Decrypts a Flows data-exchange request: returns its JSON (bytes) and the sealer of the
/// answer.
#[pyfunction]
#[pyo3(signature = (body, private_key_pem, passphrase=None))]
fn flows_decrypt_request<'py>(
    py: Python<'py>,
    body: &[u8],
    private_key_pem: &str,
    passphrase: Option<&[u8]>,
) -> PyResult<(Bound<'py, PyBytes>, Sealer)> {
    let (plain, sealer) = py
        .allow_threads(|| {
            let key = oneseal_flows::BusinessKey::from_pem(private_key_pem, passphrase)?;
            key.decrypt_request(body)
        })
        .map_err(flows_err)?;
    let plain = zeroize::Zeroizing::new(plain);
    Ok((PyBytes::new(py, &plain), Sealer(Mutex::new(Some(sealer)))))
}

/// Checks `X-Hub-Signature-256` against the raw body; raises `CryptoError` on a mismatch.
#[pyfunction]
fn flows_verify_signature(body: &[u8], header: &str, app_secret: &[u8]) -> PyResult<()> {
    oneseal_flows::verify_signature(app_secret, body, header).map_err(flows_err)
}

/// The upload query of an encrypted media file (form-encoded, in the platform's order).
#[pyfunction]
#[pyo3(signature = (file_name, encryption_key, kms_arn, sha256_file_hash, to=None))]
fn upload_query(
    file_name: &str,
    encryption_key: &str,
    kms_arn: &str,
    sha256_file_hash: &str,
    to: Option<&str>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("fileName", file_name);
    match to {
        Some(to) => q.append_pair("to", to),
        None => q.append_pair("broadcastAllowed", "true"),
    };
    q.append_pair("encryptionKey", encryption_key);
    q.append_pair("kmsArn", kms_arn);
    q.append_pair("sha256FileHash", sha256_file_hash);
    q.finish()
}

#[pymodule]
fn _oneseal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("BadInputError", py.get_type::<BadInputError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add("KeyServiceError", py.get_type::<KeyServiceError>())?;
    m.add_class::<NativeEngine>()?;
    m.add_class::<Sealer>()?;
    m.add_function(wrap_pyfunction!(flows_decrypt_request, m)?)?;
    m.add_function(wrap_pyfunction!(flows_verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(upload_query, m)?)?;
    Ok(())
}
