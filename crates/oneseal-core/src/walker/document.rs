//! The per-document core both drivers run: the document's rules (its [`Layout`]) applied
//! item by item — [`Sealing`] to encrypt, [`Unsealing`] to decrypt — with the per-item work
//! of the `item` module.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::detect::{PayloadKind, ENCRYPTION_KEY};
use super::item::{
    item_key, put_key_blob, refuse_existing_key, sub_key_path, Blobs, DocKeys, Engine, Opening,
    Report, MAX_DISTINCT_KEYS,
};
use super::layout::{Items, KeyScope, Layout};
use crate::cache::{OpeningKey, SealingKey};
use crate::error::{type_name, Error};
use crate::suite::NonceSource;

/// One document's encryption, as the per-document core both drivers run: [`Sealing::begin`]
/// (the top-level checks), [`Sealing::item`] for each message or callback item (its data key:
/// the item's own, or the document's, made at the first item), then [`Sealing::finish`]
/// (the document's key, if its kind has one, for the top level).
pub(crate) struct Sealing<'e> {
    engine: &'e Engine,
    kind: PayloadKind,
    layout: Layout,
    /// A checking pass: no keys, no changes.
    dry: bool,
    nonces: NonceSource,
    document_key: Option<Arc<SealingKey>>,
    /// Per-item kinds: the key of the current grant and how many more items it covers. One
    /// grant serves many items, so threads sealing documents with one cache meet at its lock
    /// once per grant, not once per message.
    grant: Option<(Arc<SealingKey>, usize)>,
    /// Items the driver said are still to come: how large a grant to ask for.
    expected: usize,
    /// Values sealed with the current key and not yet recorded against it.
    unrecorded: u64,
    /// A checking pass: the items checked so far.
    checked: usize,
}

/// Recorded seals may lag the real count by at most this (plus one item's values): the
/// per-key bound is checked on the recorded count.
const RECORD_EVERY: u64 = 4096;

impl<'e> Sealing<'e> {
    /// A document of `kind` whose top level the caller has checked.
    pub(crate) fn new(engine: &'e Engine, kind: PayloadKind, dry: bool) -> Sealing<'e> {
        Sealing {
            engine,
            kind,
            layout: Layout::of(kind),
            dry,
            nonces: NonceSource::new(),
            document_key: None,
            grant: None,
            expected: 1,
            unrecorded: 0,
            checked: 0,
        }
    }

    /// A document of `kind` with its top level `top`: strict mode's top-level members (on the
    /// checking pass), and no `encryptionKey` already there when the kind puts one there.
    pub(crate) fn begin(
        engine: &'e Engine,
        kind: PayloadKind,
        dry: bool,
        top: &Map<String, Value>,
    ) -> Result<Sealing<'e>, Error> {
        if dry {
            engine.compiled_kind(kind).check_top(top)?;
        }
        let s = Sealing::new(engine, kind, dry);
        if s.layout.key == KeyScope::Document {
            refuse_existing_key(top, "")?;
        }
        Ok(s)
    }

    /// The driver expects `n` items: keys are asked for that many at once (and, with
    /// `refresh_ahead`, the later ones started early). A hint: more or fewer items are fine.
    pub(crate) fn plan(&mut self, n: usize) {
        self.expected = n.max(1);
    }

    /// The kind's layout.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// The document's key, made now if it is not yet (`path` names the item that needs it).
    pub(crate) async fn document_key(
        &mut self,
        path: &str,
    ) -> Result<Option<Arc<SealingKey>>, Error> {
        if self.document_key.is_none() {
            self.document_key = self.engine.sealing_key(path, self.dry).await?;
        }
        Ok(self.document_key.clone())
    }

    /// Makes sure the grant covers one more item (the one at `path`), asking the cache for a
    /// new grant when it is used up.
    async fn take_grant(&mut self, path: &str) -> Result<(), Error> {
        if let Some((k, left)) = &mut self.grant {
            if *left > 0 && k.usable() {
                *left -= 1;
                self.expected = self.expected.saturating_sub(1).max(1);
                return Ok(());
            }
        }
        self.record();
        let (k, granted) = self.engine.keys_at(path, self.expected).await?;
        self.grant = Some((k, granted - 1));
        self.expected = self.expected.saturating_sub(1).max(1);
        Ok(())
    }

    /// Records the values sealed so far against the key that sealed them.
    fn record(&mut self) {
        if self.unrecorded == 0 {
            return;
        }
        let key = match self.layout.key {
            KeyScope::PerItem => self.grant.as_ref().map(|(k, _)| k),
            KeyScope::Document => self.document_key.as_ref(),
        };
        if let Some(k) = key {
            // Bounds the values per key (nonce budget), not just the messages.
            k.record_seals(self.unrecorded);
        }
        self.unrecorded = 0;
    }

    /// Seals one item (`m`, at `path`) in place.
    pub(crate) async fn item(
        &mut self,
        m: &mut Map<String, Value>,
        path: &mut String,
    ) -> Result<(), Error> {
        refuse_existing_key(m, path)?;
        self.next_item(path).await?;
        let key = key_in(self.layout.key, self.dry, &self.grant, &self.document_key);
        let sealed = self
            .engine
            .seal_item(m, self.kind, key, path, &mut self.nonces)?;
        if self.layout.key == KeyScope::PerItem {
            put_key_blob(m, key);
        }
        self.sealed(sealed);
        Ok(())
    }

    /// Makes sure the next item (the one at `path`) has its data key: its share of a grant,
    /// or the document's key, made at the first item.
    pub(crate) async fn next_item(&mut self, path: &str) -> Result<(), Error> {
        match self.layout.key {
            KeyScope::PerItem if !self.dry => self.take_grant(path).await,
            KeyScope::PerItem => {
                self.checked += 1;
                self.engine.checked(self.kind, self.checked);
                Ok(())
            }
            KeyScope::Document => {
                if self.document_key.is_none() {
                    self.document_key(path).await?;
                }
                Ok(())
            }
        }
    }

    /// The current item's data key (none on a dry pass). Borrowed, not cloned: no
    /// reference count shared between threads per item.
    pub(crate) fn item_key(&self) -> Option<&SealingKey> {
        key_in(self.layout.key, self.dry, &self.grant, &self.document_key)
    }

    /// Counts `n` values sealed with the current item's key.
    pub(crate) fn sealed(&mut self, n: u64) {
        self.unrecorded += n;
        if self.unrecorded >= RECORD_EVERY {
            self.record();
        }
    }

    /// The document's key for the top level (none for per-item kinds, or a dry pass).
    pub(crate) fn finish(mut self) -> Option<Arc<SealingKey>> {
        self.record();
        self.document_key.take()
    }
}

/// The current item's data key, from a [`Sealing`]'s parts (borrowed apart from its nonces).
fn key_in<'k>(
    scope: KeyScope,
    dry: bool,
    grant: &'k Option<(Arc<SealingKey>, usize)>,
    document_key: &'k Option<Arc<SealingKey>>,
) -> Option<&'k SealingKey> {
    match (scope, dry) {
        (_, true) => None,
        (KeyScope::PerItem, false) => grant.as_ref().map(|(k, _)| &**k),
        (KeyScope::Document, false) => document_key.as_deref(),
    }
}

impl Drop for Sealing<'_> {
    /// A document refused halfway still counts what it sealed.
    fn drop(&mut self) {
        self.record();
    }
}

/// One document's decryption, as the per-document core both drivers run: [`Unsealing::new`]
/// (the top-level key, for kinds whose items may use it), [`Unsealing::item`] for each
/// message or callback item (opened with its own key, or the document's), then
/// [`Unsealing::finish`] (what was done). Each distinct key is unwrapped at most once.
pub(crate) struct Unsealing<'e> {
    engine: &'e Engine,
    kind: PayloadKind,
    layout: Layout,
    keys: DocKeys,
    /// The document's `encryptionKey`, which messages without their own fall back to.
    top_key: Option<String>,
    used_top: bool,
    report: Report,
}

impl<'e> Unsealing<'e> {
    /// A document of `kind` whose top-level `encryptionKey` is `top_key` (as found).
    pub(crate) fn new(
        engine: &'e Engine,
        kind: PayloadKind,
        top_key: Option<&Value>,
    ) -> Result<Unsealing<'e>, Error> {
        let layout = Layout::of(kind);
        let top_key = match top_key {
            _ if layout.items != Items::Messages => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => {
                return Err(Error::WrongType {
                    path: ENCRYPTION_KEY.into(),
                    expected: "a base64 string",
                    found: type_name(other),
                })
            }
        };
        Ok(Unsealing {
            engine,
            kind,
            layout,
            keys: DocKeys {
                map: HashMap::new(),
                max: match engine.opts.max_distinct_keys {
                    0 => MAX_DISTINCT_KEYS,
                    n => n,
                },
            },
            top_key,
            used_top: false,
            report: Report {
                kind: Some(kind),
                ..Report::default()
            },
        })
    }

    /// The kind's layout.
    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Unwraps the document's distinct keys (found ahead) concurrently.
    pub(crate) async fn prefetch(&mut self, blobs: Blobs) {
        self.engine.prefetch_blobs(blobs, &mut self.keys).await;
    }

    /// Whether a message fell back to the document's key (it is then removed).
    pub(crate) fn used_top(&self) -> bool {
        self.used_top
    }

    /// Whether the document has a key its messages may fall back to.
    pub(crate) fn has_top_key(&self) -> bool {
        self.top_key.is_some()
    }

    /// Opens one item (`m`, at `path`) in place; with `keep_going`, a failure is reported
    /// and the item left as it was.
    pub(crate) async fn item(
        &mut self,
        m: &mut Map<String, Value>,
        path: &mut String,
    ) -> Result<(), Error> {
        let own = item_key(m, path)?;
        let Some((blob, from_top)) = self.which_key(own) else {
            return Ok(());
        };
        let key_path = if from_top {
            ENCRYPTION_KEY.to_string()
        } else {
            sub_key_path(path)
        };
        let at = Opening {
            payload: self.kind,
            blob_b64: &blob,
            key_path: &key_path,
            own_key: !from_top,
            placement: self.layout.decrypted_key,
        };
        match self.engine.open_guarded(m, at, &mut self.keys, path).await {
            Ok(()) => {
                self.opened(from_top);
                Ok(())
            }
            Err(e) if self.engine.opts.keep_going => {
                self.report.failures.push(e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The key that opens an item whose own `encryptionKey` is `own`, and whether it is the
    /// document's; `None` (counted as skipped) when there is neither.
    pub(crate) fn which_key(&mut self, own: Option<String>) -> Option<(String, bool)> {
        let found = own
            .map(|k| (k, false))
            .or_else(|| self.top_key.clone().map(|k| (k, true)));
        if found.is_none() {
            self.report.skipped += 1;
        }
        found
    }

    /// The unwrapped key for `blob` (at most one key-service call per distinct blob per
    /// document); `key_path` names it in errors.
    pub(crate) async fn opening_key(
        &mut self,
        blob: &str,
        key_path: &str,
    ) -> Result<Arc<OpeningKey>, Error> {
        self.engine.doc_key(&mut self.keys, blob, key_path).await
    }

    /// Counts an item opened (`from_top`: with the document's key).
    pub(crate) fn opened(&mut self, from_top: bool) {
        self.report.items += 1;
        self.used_top |= from_top;
    }

    /// What the run did.
    pub(crate) fn finish(self) -> Report {
        self.report
    }
}
