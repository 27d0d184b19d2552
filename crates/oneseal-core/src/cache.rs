//! The key cache: wraps any [`KeyProvider`] so that a data key is reused across messages
//! (encrypt side) and an unwrapped blob is remembered (decrypt side), with single-flight on
//! concurrent misses: N callers that miss together cause one provider call.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use crate::b64;
use crate::provider::{KeyError, KeyProvider};
use crate::secret::SecretKey;
use crate::suite::FieldCipher;

/// Upper bound on [`CacheConfig::max_messages`]: config beyond it is refused.
pub const MAX_MESSAGES_PER_KEY_LIMIT: usize = 100_000;
/// Upper bound on [`CacheConfig::max_age`] (24 hours).
pub const MAX_KEY_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Values one data key may seal before the cache rotates to a new key, whatever the message
/// count: 2^24. A message in progress may go past it (one message uses one key), but one
/// message is bounded by the input size (far below 2^27 values), so no key comes near the
/// 2^32 random-nonce limit of NIST SP 800-38D.
pub const MAX_SEALS_PER_KEY: u64 = 1 << 24;
/// With `refresh_ahead`, how many keys may be made ahead of need: a large document starts the
/// keys its later messages need while it is checked and its first ones are sealed, within
/// this bound (a document refused halfway leaves at most these queued for the next ones).
pub const MAX_KEYS_AHEAD: usize = 4;
/// How long a blob that deterministically failed to unwrap (invalid ciphertext, wrong key)
/// is remembered, so a flood of the same bad blob costs one key-service call.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Cache limits. `Default`: a key for up to 1000 messages and 300 s, 10 000 unwrapped keys.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// How many messages one data key may encrypt (1 = a fresh key per message).
    pub max_messages: usize,
    /// How long a data key (either side) stays usable.
    pub max_age: Duration,
    /// Decrypt side: how many unwrapped blobs to remember (LRU).
    pub decrypt_capacity: usize,
    /// With fresh keys per message: how many provider calls may be in flight at once.
    pub max_in_flight: usize,
    /// Start generating the next data key in the background once the current one is 90%
    /// used (messages or age), and a large document's later keys while it is checked and
    /// its first messages sealed ([`KeyCache::expect_messages`],
    /// [`KeyCache::sealing_key_for`]), so a switch seldom waits for the key service. For
    /// long-running processes (the gateway, the Python package); a short CLI run would waste
    /// the last key.
    pub refresh_ahead: bool,
}

impl CacheConfig {
    /// Checks the limits against their upper bounds; the message names the config key.
    pub fn validate(&self) -> Result<(), CacheConfigError> {
        if self.max_messages == 0 || self.max_messages > MAX_MESSAGES_PER_KEY_LIMIT {
            return Err(CacheConfigError {
                limit: CacheLimit::MaxMessages,
                message: format!(
                    "must be between 1 and {MAX_MESSAGES_PER_KEY_LIMIT} (got {})",
                    self.max_messages
                ),
            });
        }
        if self.max_age.is_zero() || self.max_age > MAX_KEY_AGE_LIMIT {
            return Err(CacheConfigError {
                limit: CacheLimit::MaxAge,
                message: format!(
                    "must be between 1 and {} seconds (got {})",
                    MAX_KEY_AGE_LIMIT.as_secs(),
                    self.max_age.as_secs()
                ),
            });
        }
        Ok(())
    }
}

/// Which cache limit is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLimit {
    /// Messages per data key.
    MaxMessages,
    /// Age of a data key.
    MaxAge,
}

/// A cache limit out of range: which one, and its range; the caller names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CacheConfigError {
    /// The limit.
    pub limit: CacheLimit,
    /// Its range and the value given.
    pub message: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_messages: 1000,
            max_age: Duration::from_secs(300),
            decrypt_capacity: 10_000,
            max_in_flight: 32,
            refresh_ahead: false,
        }
    }
}

/// A data key ready to encrypt: the expanded cipher plus the blob, pre-encoded for
/// `encryptionKey`.
pub struct SealingKey {
    key: SecretKey,
    cipher: FieldCipher,
    blob: Arc<[u8]>,
    blob_b64: Arc<str>,
    key_arn: Option<String>,
    created: Instant,
    uses: AtomicUsize,
    seals: AtomicU64,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("key", &self.key)
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Builds a sealing key from a provider's data key.
    pub fn new(dk: crate::secret::DataKey) -> Self {
        SealingKey {
            cipher: FieldCipher::new(&dk.key),
            blob_b64: Arc::from(b64::encode(&dk.blob)),
            key: dk.key,
            blob: dk.blob,
            key_arn: dk.key_arn,
            created: Instant::now(),
            uses: AtomicUsize::new(0),
            seals: AtomicU64::new(0),
        }
    }
    /// Records `n` values sealed with this key; the cache rotates it after
    /// [`MAX_SEALS_PER_KEY`].
    pub fn record_seals(&self, n: u64) {
        self.seals.fetch_add(n, Ordering::AcqRel);
    }
    /// Values sealed with this key so far (as recorded).
    pub fn seals(&self) -> u64 {
        self.seals.load(Ordering::Acquire)
    }
    /// The field cipher.
    pub fn cipher(&self) -> &FieldCipher {
        &self.cipher
    }
    /// The plaintext key (for stream ciphers that need it).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }
    /// The wrapped key as base64, the value of `encryptionKey`.
    pub fn blob_b64(&self) -> &Arc<str> {
        &self.blob_b64
    }
    /// The wrapped key bytes.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }
    /// The wrapping key's ARN (`kmsArn`), or `local:<id>` for the local provider.
    pub fn key_arn(&self) -> Option<&str> {
        self.key_arn.as_deref()
    }
    /// Whether the key may seal more values (below [`MAX_SEALS_PER_KEY`]); a caller holding
    /// a grant of several messages checks it before each one.
    pub fn usable(&self) -> bool {
        self.seals.load(Ordering::Acquire) < MAX_SEALS_PER_KEY
    }
    /// Takes up to `n` of the `max` uses; how many were taken (0: used up).
    fn try_take(&self, max: usize, n: usize) -> usize {
        if !self.usable() {
            return 0;
        }
        match self
            .uses
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < max).then_some(u + n.min(max - u))
            }) {
            Ok(before) => n.min(max - before),
            Err(_) => 0,
        }
    }
}

/// A data key ready to decrypt.
pub struct OpeningKey {
    key: SecretKey,
    cipher: FieldCipher,
}

impl OpeningKey {
    /// Wraps an unwrapped data key.
    pub fn new(key: SecretKey) -> Self {
        OpeningKey {
            cipher: FieldCipher::new(&key),
            key,
        }
    }
    /// The field cipher.
    pub fn cipher(&self) -> &FieldCipher {
        &self.cipher
    }
    /// The plaintext key (for stream ciphers that need it).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }
}

impl fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpeningKey(<redacted>)")
    }
}

type Flight<T> = Arc<OnceCell<Result<Arc<T>, KeyError>>>;

struct EncState {
    current: Option<Arc<SealingKey>>,
    /// The next keys, in the order they will be used: made ahead (`refresh_ahead`) or being
    /// made for callers waiting now (single flight: they all wait on the front one).
    ahead: VecDeque<Flight<SealingKey>>,
}

struct DecEntry {
    created: Instant,
    /// How long the entry is good for: `max_age`, or [`NEGATIVE_TTL`] for a remembered
    /// deterministic failure.
    ttl: Duration,
    cell: Flight<OpeningKey>,
}

impl DecEntry {
    fn fresh(&self) -> bool {
        self.created.elapsed() < self.ttl
    }
}

/// Whether a failure to unwrap will recur for the same blob (worth remembering briefly), as
/// opposed to a service fault that a retry may cure.
fn deterministic(e: &KeyError) -> bool {
    e.class() == crate::provider::ErrorClass::Crypto && !matches!(e, KeyError::Rng)
}

/// The caching, single-flight wrapper around a provider. Share it with `Arc`.
pub struct KeyCache {
    provider: Arc<dyn KeyProvider>,
    cfg: CacheConfig,
    enc: Mutex<EncState>,
    dec: Mutex<DecState>,
    fresh_slots: Semaphore,
    stats: [AtomicU64; 4],
}

/// Key-cache lookups so far, for metrics: a hit needed no key-service call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Sealing keys served from the cache.
    pub seal_hits: u64,
    /// Sealing-key lookups that needed (or waited on) a `GenerateDataKey`.
    pub seal_misses: u64,
    /// Unwrapped keys served from the cache.
    pub open_hits: u64,
    /// Unwrap lookups that needed (or waited on) a `Decrypt`.
    pub open_misses: u64,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("provider", &self.provider)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means another thread panicked mid-update of plain cache data; the
// data is still a valid cache (worst case a stale entry), so keep going rather than panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new data key from the provider, as the cache shares it.
async fn generate(p: &dyn KeyProvider) -> Result<Arc<SealingKey>, KeyError> {
    p.generate_data_key()
        .await
        .map(|dk| Arc::new(SealingKey::new(dk)))
}

impl KeyCache {
    /// Wraps `provider` with the given limits.
    pub fn new(provider: Arc<dyn KeyProvider>, cfg: CacheConfig) -> Self {
        let cap = NonZeroUsize::new(cfg.decrypt_capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        KeyCache {
            provider,
            fresh_slots: Semaphore::new(cfg.max_in_flight.max(1)),
            enc: Mutex::new(EncState {
                current: None,
                ahead: VecDeque::new(),
            }),
            stats: Default::default(),
            dec: Mutex::new(DecState {
                lru: lru::LruCache::new(cap),
                swept: Instant::now(),
            }),
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The wrapped provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Lookups so far.
    pub fn stats(&self) -> CacheStats {
        let v = |i: usize| self.stats[i].load(Ordering::Relaxed);
        CacheStats {
            seal_hits: v(0),
            seal_misses: v(1),
            open_hits: v(2),
            open_misses: v(3),
        }
    }

    fn count(&self, i: usize) {
        self.stats[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A data key for one message: reused up to `max_messages` times within `max_age`.
    pub async fn sealing_key(&self) -> Result<Arc<SealingKey>, KeyError> {
        self.sealing_key_for(1).await.map(|(k, _)| k)
    }

    /// A data key for up to `n` messages, and how many of them it covers (at least 1, at
    /// most `n`). A caller with many messages takes one grant per key instead of one lookup
    /// per message: threads sharing the cache then touch its lock and counters once per
    /// grant. With `refresh_ahead`, the keys the rest of the `n` will need are started in
    /// the background now (at most [`MAX_KEYS_AHEAD`]), so a large document waits for the
    /// key service once, not at every rotation.
    pub async fn sealing_key_for(&self, n: usize) -> Result<(Arc<SealingKey>, usize), KeyError> {
        let n = n.max(1);
        let max = self.cfg.max_messages.max(1);
        if max == 1 {
            // A fresh key per message: no sharing to do, only bound the calls in flight.
            let _permit = self
                .fresh_slots
                .acquire()
                .await
                .map_err(|_| KeyError::Config("key cache closed".into()))?;
            let k = generate(self.provider.as_ref()).await?;
            k.uses.store(1, Ordering::Release);
            return Ok((k, 1));
        }
        loop {
            let cell = {
                let mut st = lock(&self.enc);
                if let Some(k) = &st.current {
                    if k.created.elapsed() < self.cfg.max_age {
                        let granted = k.try_take(max, n);
                        if granted > 0 {
                            self.count(0);
                            let k = k.clone();
                            self.plan_ahead(&mut st, &k, max, n - granted);
                            return Ok((k, granted));
                        }
                    }
                    // Used up or expired: drop the cache's reference now (the key is wiped
                    // once the last message using it is done), not when a new one arrives.
                    st.current = None;
                }
                self.count(1);
                // Keys made ahead that failed: retry now rather than hand out their error.
                while st
                    .ahead
                    .front()
                    .is_some_and(|c| matches!(c.get(), Some(Err(_))))
                {
                    st.ahead.pop_front();
                }
                if st.ahead.is_empty() {
                    st.ahead.push_back(Arc::new(OnceCell::new()));
                }
                // Not empty: one was pushed just above if there was none.
                match st.ahead.front() {
                    Some(c) => c.clone(),
                    None => continue,
                }
            };
            let res = cell
                .get_or_init(|| generate(self.provider.as_ref()))
                .await
                .clone();
            let mut st = lock(&self.enc);
            if st.ahead.front().is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                st.ahead.pop_front();
                if let Ok(k) = &res {
                    st.current = Some(k.clone());
                }
            }
            let k = res?;
            let granted = k.try_take(max, n);
            if granted > 0 {
                self.plan_ahead(&mut st, &k, max, n - granted);
                return Ok((k, granted));
            }
            // Everyone who waited on that flight used it up; go round for a new key.
        }
    }

    /// With `refresh_ahead`: after a grant from `k`, keys for the `rest` of the caller's
    /// messages, or the next key once `k` is 90% used (messages or age), are started in the
    /// background, so a switch never waits for the key service.
    fn plan_ahead(&self, st: &mut EncState, k: &SealingKey, max: usize, rest: usize) {
        if !self.cfg.refresh_ahead {
            return;
        }
        let left_in_k = max.saturating_sub(k.uses.load(Ordering::Acquire));
        let mut want = rest.saturating_sub(left_in_k).div_ceil(max);
        if want == 0 && self.nearly_spent(k, max) {
            want = 1;
        }
        self.fill_ahead(st, want);
    }

    /// Starts keys in the background until `want` (at most [`MAX_KEYS_AHEAD`]) are queued.
    fn fill_ahead(&self, st: &mut EncState, want: usize) {
        while st.ahead.len() < want.min(MAX_KEYS_AHEAD) {
            match self.generate_in_background() {
                Some(cell) => st.ahead.push_back(cell),
                None => break,
            }
        }
    }

    /// With `refresh_ahead`: a document of at least `n` messages is being read (a hint from a
    /// driver's checking pass, before any key is taken). The keys it will need beyond the
    /// current key's uses are started now, at most [`MAX_KEYS_AHEAD`], so they are on their
    /// way while the document is still being checked. Nothing is started for a document one
    /// key covers: a small document refused by its checks costs no key-service call. A
    /// large one refused after the hint leaves its keys queued here, where the next
    /// documents take them: none is wasted.
    pub fn expect_messages(&self, n: usize) {
        let max = self.cfg.max_messages.max(1);
        if !self.cfg.refresh_ahead || max == 1 {
            return;
        }
        let mut st = lock(&self.enc);
        let left = match &st.current {
            Some(k) if k.usable() && k.created.elapsed() < self.cfg.max_age => {
                max.saturating_sub(k.uses.load(Ordering::Acquire))
            }
            _ => 0,
        };
        // Keys the document will take from the queue, the next one first.
        let need = n.saturating_sub(left).div_ceil(max);
        if left == 0 && need < 2 {
            // One key: the document asks for it when it is written, as a small one does.
            return;
        }
        self.fill_ahead(&mut st, need);
    }

    /// Whether `k` is 90% used, by messages or by age.
    fn nearly_spent(&self, k: &SealingKey, max: usize) -> bool {
        max >= 10
            && (k.uses.load(Ordering::Acquire) >= max - max / 10
                || k.created.elapsed() >= self.cfg.max_age.mul_f32(0.9))
    }

    /// Starts `GenerateDataKey` on the current runtime and returns the flight a later
    /// `sealing_key` will take the result from (None outside a runtime: no refresh ahead).
    fn generate_in_background(&self) -> Option<Flight<SealingKey>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let cell: Flight<SealingKey> = Arc::new(OnceCell::new());
        let (c, p) = (cell.clone(), self.provider.clone());
        rt.spawn(async move {
            let _ = c.get_or_init(|| generate(p.as_ref())).await;
        });
        Some(cell)
    }

    /// The data key inside `blob`: unwrapped once, then served from the LRU within `max_age`.
    /// Deterministic failures (invalid ciphertext, wrong key) are remembered for
    /// [`NEGATIVE_TTL`]; service faults are forgotten so the next call retries.
    pub async fn opening_key(&self, blob: &[u8]) -> Result<Arc<OpeningKey>, KeyError> {
        if blob.is_empty() {
            return Err(KeyError::BadBlob("empty"));
        }
        let cell = {
            let mut dec = lock(&self.dec);
            purge_expired(&mut dec);
            match dec.lru.get(blob) {
                Some(e) if e.fresh() => {
                    self.count(2);
                    e.cell.clone()
                }
                _ => {
                    self.count(3);
                    let cell: Flight<OpeningKey> = Arc::new(OnceCell::new());
                    dec.lru.put(
                        blob.to_vec(),
                        DecEntry {
                            created: Instant::now(),
                            ttl: self.cfg.max_age,
                            cell: cell.clone(),
                        },
                    );
                    cell
                }
            }
        };
        let res = cell
            .get_or_init(|| async {
                match self.provider.decrypt_data_key(blob).await {
                    Ok(Some(k)) => Ok(Arc::new(OpeningKey::new(k))),
                    Ok(None) => Err(KeyError::Unrecognised),
                    Err(e) => Err(e),
                }
            })
            .await
            .clone();
        if let Err(e) = &res {
            let mut dec = lock(&self.dec);
            let ours = dec
                .lru
                .peek(blob)
                .is_some_and(|e| Arc::ptr_eq(&e.cell, &cell));
            if ours {
                if deterministic(e) {
                    if let Some(entry) = dec.lru.peek_mut(blob) {
                        entry.ttl = entry.ttl.min(NEGATIVE_TTL);
                    }
                } else {
                    dec.lru.pop(blob);
                }
            }
        }
        res
    }

    /// Unwrapped keys currently held on the decrypt side (expired ones are purged as the
    /// cache is used).
    pub fn opening_keys_held(&self) -> usize {
        let mut dec = lock(&self.dec);
        purge_expired(&mut dec);
        dec.lru.len()
    }
}

/// The decrypt side: blob → unwrapped key, LRU, with the time of the last full sweep.
struct DecState {
    lru: lru::LruCache<Vec<u8>, DecEntry>,
    swept: Instant,
}

/// Drops expired entries, so unwrapped keys do not outlive `max_age` in memory just because
/// nothing pushed them out. Every call pops expired entries at the least-recently-used end;
/// once a second a full sweep catches the rest (a key used recently but created long ago).
fn purge_expired(dec: &mut DecState) {
    while dec.lru.peek_lru().is_some_and(|(_, e)| !e.fresh()) {
        dec.lru.pop_lru();
    }
    if dec.swept.elapsed() >= Duration::from_secs(1) {
        dec.swept = Instant::now();
        let stale: Vec<Vec<u8>> = dec
            .lru
            .iter()
            .filter(|(_, e)| !e.fresh())
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            dec.lru.pop(&k);
        }
    }
}

/// A provider wrapper that counts calls — a test and diagnostics aid.
#[derive(Debug)]
pub struct CountingProvider<P> {
    inner: P,
    /// `generate_data_key` calls so far.
    pub generated: AtomicUsize,
    /// `decrypt_data_key` calls so far.
    pub decrypted: AtomicUsize,
}

impl<P> CountingProvider<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        CountingProvider {
            inner,
            generated: AtomicUsize::new(0),
            decrypted: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl<P: KeyProvider> KeyProvider for CountingProvider<P> {
    async fn generate_data_key(&self) -> Result<crate::secret::DataKey, KeyError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key().await
    }
    async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        self.inner.decrypt_data_key(blob).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalProvider;

    /// A provider that sleeps, so concurrent callers overlap for real.
    #[derive(Debug)]
    struct Slow(LocalProvider, AtomicUsize, AtomicUsize);

    #[async_trait::async_trait]
    impl KeyProvider for Slow {
        async fn generate_data_key(&self) -> Result<crate::secret::DataKey, KeyError> {
            let now = self.1.fetch_add(1, Ordering::SeqCst) + 1;
            self.2.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.1.fetch_sub(1, Ordering::SeqCst);
            self.0.generate_data_key().await
        }
        async fn decrypt_data_key(&self, blob: &[u8]) -> Result<Option<SecretKey>, KeyError> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.decrypt_data_key(blob).await
        }
    }

    fn slow() -> Arc<CountingProvider<Slow>> {
        Arc::new(CountingProvider::new(Slow(
            LocalProvider::from_key(&SecretKey::from_bytes([3; 32]), "t"),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        )))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_flight_cold_cache_1500_calls_one_generate() {
        let p = slow();
        let cache = Arc::new(KeyCache::new(p.clone(), CacheConfig::default()));
        let mut tasks = Vec::new();
        for _ in 0..1500 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move {
                c.sealing_key().await.map(|k| k.blob_b64().clone())
            }));
        }
        let mut blobs = std::collections::HashSet::new();
        for t in tasks {
            blobs.insert(t.await.unwrap().unwrap());
        }
        // 1500 messages at max_messages=1000 need two keys; the cold miss itself is one call.
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
        assert_eq!(blobs.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_flight_under_limit_is_one_call() {
        let p = slow();
        let cache = Arc::new(KeyCache::new(
            p.clone(),
            CacheConfig {
                max_messages: 5000,
                ..Default::default()
            },
        ));
        let tasks: Vec<_> = (0..1500)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.sealing_key().await.is_ok() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(p.generated.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_keys_respect_in_flight_bound() {
        let p = slow();
        let cfg = CacheConfig {
            max_messages: 1,
            max_in_flight: 4,
            ..Default::default()
        };
        let cache = Arc::new(KeyCache::new(p.clone(), cfg));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.sealing_key().await.map(|k| k.blob_b64().clone()) })
            })
            .collect();
        let mut blobs = std::collections::HashSet::new();
        for t in tasks {
            blobs.insert(t.await.unwrap().unwrap());
        }
        assert_eq!(blobs.len(), 40);
        assert_eq!(p.generated.load(Ordering::SeqCst), 40);
        let peak = p.inner.2.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "peak in flight {peak}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decrypt_side_single_flight_and_lru() {
        let p = slow();
        let blob = p.generate_data_key().await.unwrap().blob;
        let cache = Arc::new(KeyCache::new(p.clone(), CacheConfig::default()));
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let c = cache.clone();
                let b = blob.clone();
                tokio::spawn(async move { c.opening_key(&b).await.is_ok() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(p.decrypted.load(Ordering::SeqCst), 1);
        cache.opening_key(&blob).await.unwrap();
        assert_eq!(p.decrypted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn max_age_expires_keys() {
        let p = slow();
        let cfg = CacheConfig {
            max_age: Duration::from_millis(0),
            ..Default::default()
        };
        let cache = KeyCache::new(p.clone(), cfg);
        cache.sealing_key().await.unwrap();
        cache.sealing_key().await.unwrap();
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
    }

    /// Regression: `bad_blob_shared_by_200_items_made_200_kms_calls` — a deterministic
    /// unwrap failure is remembered briefly, so repeated lookups cost one provider call.
    #[tokio::test]
    async fn deterministic_failures_are_remembered_briefly() {
        let p = slow();
        let cache = KeyCache::new(p.clone(), CacheConfig::default());
        let bad = b"OSL1 not a real blob";
        for _ in 0..5 {
            assert!(cache.opening_key(bad).await.is_err());
        }
        assert_eq!(p.decrypted.load(Ordering::SeqCst), 1);
        assert!(matches!(
            cache.opening_key(b"").await,
            Err(KeyError::BadBlob(_))
        ));
        assert_eq!(p.decrypted.load(Ordering::SeqCst), 1);
    }

    /// A service fault is not remembered: the next call retries.
    #[tokio::test]
    async fn service_failures_are_retried() {
        #[derive(Debug)]
        struct Down(AtomicUsize);
        #[async_trait::async_trait]
        impl KeyProvider for Down {
            async fn generate_data_key(&self) -> Result<crate::secret::DataKey, KeyError> {
                Err(KeyError::Rng)
            }
            async fn decrypt_data_key(&self, _: &[u8]) -> Result<Option<SecretKey>, KeyError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(KeyError::Service {
                    failure: crate::provider::ServiceFailure::Network,
                    message: "down".into(),
                })
            }
        }
        let p = Arc::new(Down(AtomicUsize::new(0)));
        let cache = KeyCache::new(p.clone(), CacheConfig::default());
        assert!(cache.opening_key(b"blob").await.is_err());
        assert!(cache.opening_key(b"blob").await.is_err());
        assert_eq!(p.0.load(Ordering::SeqCst), 2);
    }

    /// Regression: `expired_keys_stayed_in_the_cache` — expired unwrapped keys are purged,
    /// not just ignored on lookup.
    #[tokio::test]
    async fn expired_opening_keys_are_purged() {
        let p = slow();
        let blob = p.generate_data_key().await.unwrap().blob;
        let blob2 = p.generate_data_key().await.unwrap().blob;
        let cache = KeyCache::new(
            p.clone(),
            CacheConfig {
                max_age: Duration::from_millis(30),
                ..Default::default()
            },
        );
        cache.opening_key(&blob).await.unwrap();
        assert_eq!(cache.opening_keys_held(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.opening_keys_held(), 0);
        cache.opening_key(&blob2).await.unwrap();
        assert_eq!(cache.opening_keys_held(), 1);
    }

    #[tokio::test]
    async fn a_grant_covers_up_to_the_keys_remaining_uses() {
        let p = slow();
        let cache = KeyCache::new(
            p.clone(),
            CacheConfig {
                max_messages: 100,
                ..Default::default()
            },
        );
        let (k, n) = cache.sealing_key_for(60).await.unwrap();
        assert_eq!(n, 60);
        let (k2, n2) = cache.sealing_key_for(60).await.unwrap();
        assert_eq!((n2, k2.blob_b64()), (40, k.blob_b64()));
        let (k3, n3) = cache.sealing_key_for(60).await.unwrap();
        assert_eq!(n3, 60);
        assert_ne!(k3.blob_b64(), k.blob_b64());
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_grant_starts_the_keys_it_will_need_ahead() {
        let p = slow();
        let cache = KeyCache::new(
            p.clone(),
            CacheConfig {
                max_messages: 100,
                refresh_ahead: true,
                ..Default::default()
            },
        );
        // 350 messages: this key and three more, the three started now, side by side.
        let (_, n) = cache.sealing_key_for(350).await.unwrap();
        assert_eq!(n, 100);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.generated.load(Ordering::SeqCst), 4);
        let t = std::time::Instant::now();
        for rest in [250, 150, 50] {
            let (_, n) = cache.sealing_key_for(rest).await.unwrap();
            assert_eq!(n, rest.min(100));
        }
        assert!(t.elapsed() < Duration::from_millis(15), "{:?}", t.elapsed());
        // The last key has 50 uses left; never more than MAX_KEYS_AHEAD made ahead, however
        // large the document.
        let (_, n) = cache.sealing_key_for(100_000).await.unwrap();
        assert_eq!(n, 50);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.generated.load(Ordering::SeqCst), 4 + MAX_KEYS_AHEAD);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_ahead_makes_the_next_key_before_it_is_needed() {
        let p = slow();
        let cache = KeyCache::new(
            p.clone(),
            CacheConfig {
                max_messages: 100,
                refresh_ahead: true,
                ..Default::default()
            },
        );
        let first = cache.sealing_key().await.unwrap();
        for _ in 1..95 {
            cache.sealing_key().await.unwrap();
        }
        // Past 90 uses the next key is on its way; give the (20 ms) provider time.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
        for _ in 95..100 {
            assert_eq!(
                cache.sealing_key().await.unwrap().blob_b64(),
                first.blob_b64()
            );
        }
        // The switch takes the key made ahead: no wait for the provider, no extra call.
        let t = std::time::Instant::now();
        let next = cache.sealing_key().await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(15), "{:?}", t.elapsed());
        assert_ne!(next.blob_b64(), first.blob_b64());
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
        // Off by default: the CLI never makes a key it may not use.
        assert!(!CacheConfig::default().refresh_ahead);
    }

    /// A cache of 100 messages per key over a slow counting provider.
    fn ahead_cache(refresh_ahead: bool) -> (Arc<CountingProvider<Slow>>, KeyCache) {
        let p = slow();
        let cfg = CacheConfig {
            max_messages: 100,
            refresh_ahead,
            ..Default::default()
        };
        (p.clone(), KeyCache::new(p, cfg))
    }

    /// The provider's calls once those in flight have had time to finish (it takes 20 ms).
    async fn settled(p: &CountingProvider<Slow>) -> usize {
        tokio::time::sleep(Duration::from_millis(60)).await;
        p.generated.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expect_messages_starts_the_keys_a_large_document_needs_while_it_is_checked(
    ) -> Result<(), KeyError> {
        let (p, cache) = ahead_cache(true);
        // A 350-message document heard about on a cold cache: its four keys are started.
        cache.expect_messages(350);
        assert_eq!(settled(&p).await, 4);
        // Heard again as the check goes on: nothing more.
        cache.expect_messages(350);
        // Written, it takes those four: none made twice.
        let mut left = 350;
        while left > 0 {
            let (_, n) = cache.sealing_key_for(left).await?;
            left -= n;
        }
        assert_eq!(settled(&p).await, 4);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expect_messages_starts_nothing_for_a_document_one_key_covers() -> Result<(), KeyError>
    {
        let (p, cache) = ahead_cache(true);
        cache.expect_messages(100);
        let (_, n) = cache.sealing_key_for(40).await?;
        assert_eq!(n, 40);
        // The current key has 60 uses left: a 60-message document needs no other.
        cache.expect_messages(60);
        assert_eq!(settled(&p).await, 1);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_expected_for_a_refused_document_serve_the_next_one() -> Result<(), KeyError> {
        let (p, cache) = ahead_cache(true);
        // Heard about, then refused by its checks: its three keys are queued, not dropped.
        cache.expect_messages(300);
        assert_eq!(settled(&p).await, 3);
        // The next document, of 200 messages, takes them: no call of its own.
        for _ in 0..2 {
            assert_eq!(cache.sealing_key_for(100).await?.1, 100);
        }
        // Its last grant used its key up: the third, still queued, is the next key.
        assert_eq!(settled(&p).await, 3);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expect_messages_does_nothing_without_refresh_ahead() -> Result<(), KeyError> {
        let (p, cache) = ahead_cache(false);
        cache.expect_messages(10_000);
        assert_eq!(settled(&p).await, 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_key_rotates_after_max_seals() {
        let p = slow();
        let cache = KeyCache::new(p.clone(), CacheConfig::default());
        let k = cache.sealing_key().await.unwrap();
        k.record_seals(MAX_SEALS_PER_KEY);
        let k2 = cache.sealing_key().await.unwrap();
        assert_ne!(k.blob_b64(), k2.blob_b64());
        assert_eq!(p.generated.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn limits_are_bounded() {
        let ok = CacheConfig::default();
        assert!(ok.validate().is_ok());
        let too_many = CacheConfig {
            max_messages: MAX_MESSAGES_PER_KEY_LIMIT + 1,
            ..Default::default()
        };
        assert!(too_many
            .validate()
            .is_err_and(|e| e.limit == CacheLimit::MaxMessages));
        let too_old = CacheConfig {
            max_age: MAX_KEY_AGE_LIMIT + Duration::from_secs(1),
            ..Default::default()
        };
        assert!(too_old
            .validate()
            .is_err_and(|e| e.limit == CacheLimit::MaxAge));
    }
}
