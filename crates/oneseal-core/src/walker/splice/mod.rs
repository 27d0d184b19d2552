//! The splice driver: a document held in memory, copied token by token into its output with
//! each policy leaf replaced where it stands; no tree is built. For a 5 000-message request,
//! building `serde_json::Value`s, walking them, writing them back and freeing them is about
//! three quarters of an encryption; three passes over the bytes are a few percent.
//!
//! It takes the documents nearly every caller sends (requests, compact output) and gives the
//! bytes the tree driver gives: serde_json's compact formatting (strings and numbers written
//! as serde_json writes them), members in document order, the same data keys asked for in the
//! same order, the same errors at the same paths. What it does not take it hands back before
//! any key is made or anything written ([`Stop::Tree`]), and the tree driver runs: callbacks,
//! pretty output, strict mode, overlapping user paths, `keep_going`, inline media, an
//! `encryptionKey` already on an item or document being encrypted, a repeated or escaped
//! member name, very deep or wide objects, and every document with a mistake in it (the tree
//! driver words the error).
//!
//! The passes: the shape (what detection needs, and each message's own key); when
//! encrypting, the checks at the policy's paths (the tree driver's dry pass); then the
//! output, each leaf sealed or opened on the way. Encrypting, the output pass can then fail
//! only where the tree driver would fail the same way (a key-service call).

mod copier;

use serde_json::Value;

use super::detect::{detect_shape, Api, Markers, PayloadKind, Shape, ENCRYPTION_KEY};
use super::document::{Sealing, Unsealing};
use super::item::{sub_key_path, Blobs, Engine, Report};
use super::layout::{message_path, KeyPlacement, KeyScope, Layout};
use crate::error::Error;
use crate::suite::NonceSource;
use copier::{child, Copier, Edit, Leaf};

/// Why the splice driver stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Not a document it takes: the tree driver runs (no key was made, nothing written).
    Tree,
    /// A failure the tree driver reports the same way at the same path (boxed: every
    /// step returns a `Result` with this error type, which is best kept small).
    Err(Box<Error>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Err(Box::new(e))
    }
}

type R<T> = Result<T, Stop>;

/// Output room for one `"encryptionKey":"…"` member: a KMS data key's blob is 248 base64
/// characters, the local key's fewer.
const KEY_MEMBER_ROOM: usize = 300;

/// A message's or the document's `encryptionKey`, as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyMember<'a> {
    Absent,
    Null,
    Text(&'a str),
    /// Another type, or an escaped string.
    Other,
}

impl<'a> KeyMember<'a> {
    fn read(c: &mut Copier<'a>) -> R<KeyMember<'a>> {
        match c.peek()? {
            b'"' => {
                let (body, escaped) = c.string()?;
                match (escaped, std::str::from_utf8(body)) {
                    (false, Ok(s)) => Ok(KeyMember::Text(s)),
                    _ => Ok(KeyMember::Other),
                }
            }
            b'n' => c.null().map(|()| KeyMember::Null),
            _ => c.skip().map(|()| KeyMember::Other),
        }
    }

    /// The key an item's values were sealed with (`None`: none of its own).
    fn own(self) -> R<Option<&'a str>> {
        match self {
            KeyMember::Absent | KeyMember::Null => Ok(None),
            KeyMember::Text(s) => Ok(Some(s)),
            KeyMember::Other => Err(Stop::Tree),
        }
    }
}

/// One message, as the shape pass found it.
struct Message<'a> {
    key: KeyMember<'a>,
    /// Which of the watched member names it has (bit i: the i-th name of `watched`).
    has: u8,
}

/// What the shape pass found.
struct Found<'a> {
    kind: PayloadKind,
    top_key: KeyMember<'a>,
    messages: Vec<Message<'a>>,
}

impl Engine {
    /// Whether the splice driver may take documents under this engine's options.
    fn splices(&self) -> bool {
        !self.policy.strict && !self.overlap_guard && !self.opts.keep_going
    }

    /// The member names whose presence on a message may mean inline media (the first step
    /// of each request policy's `content` and `contentType` paths); `None` when a path has
    /// no plain first step.
    fn watched(&self) -> Option<Vec<&str>> {
        let mut names: Vec<&str> = Vec::new();
        for kind in [PayloadKind::OneRequest, PayloadKind::LegacyRequest] {
            if let Some(im) = &self.kind_policy(kind).inline_media {
                for p in [&im.content, &im.content_type] {
                    let first = *p.plain_keys()?.first()?;
                    if !names.contains(&first) {
                        names.push(first);
                    }
                }
            }
        }
        (names.len() <= 8).then_some(names)
    }

    /// The shape pass: the whole document read and checked as JSON the splice driver takes,
    /// its payload kind detected, each message's own key and watched members noted. With
    /// `check` (encrypting), each message is also checked under that kind's policy, an
    /// encryption's checking pass done at once when the kind is the one guessed, and the key
    /// cache hears how many messages have been checked so far ([`Engine::checked`]).
    fn shape<'a>(
        &self,
        input: &'a [u8],
        watch: &[&str],
        check: Option<PayloadKind>,
    ) -> R<Found<'a>> {
        let walk = check.map(|kind| &self.compiled_kind(kind).all);
        let mut c = Copier::new(input);
        let mut top = c.begin_object()?;
        let mut found = Found {
            kind: PayloadKind::OneRequest,
            top_key: KeyMember::Absent,
            messages: Vec::new(),
        };
        let mut markers = Markers::default();
        let mut seen_messages = false;
        while let Some(name) = c.member(&mut top)? {
            match name {
                b"messages" => {
                    seen_messages = true;
                    c.begin_array()?;
                    let mut i = 0;
                    while c.element(i)? {
                        let mut item = c.begin_object()?;
                        let mut m = Message {
                            key: KeyMember::Absent,
                            has: 0,
                        };
                        while let Some(k) = c.member(&mut item)? {
                            if let Some(w) = watch.iter().position(|w| w.as_bytes() == k) {
                                m.has |= 1 << w;
                            }
                            if k == ENCRYPTION_KEY.as_bytes() {
                                m.key = KeyMember::read(&mut c)?;
                            } else {
                                let sub = child(walk, k)?;
                                c.value(sub, &mut Leaf::Check)?;
                            }
                        }
                        let names = &c.names[item.names..];
                        markers.note_names(i, |k| names.contains(&k.as_bytes()));
                        c.end_object(item);
                        found.messages.push(m);
                        i += 1;
                        if let Some(kind) = check {
                            self.checked(kind, i);
                        }
                    }
                }
                b"encryptionKey" => found.top_key = KeyMember::read(&mut c)?,
                // A request with callback items beside its messages: the tree driver also
                // unwraps their keys ahead.
                b"event" => return Err(Stop::Tree),
                _ => c.skip()?,
            }
        }
        c.end_object(top);
        if !seen_messages || !c.at_end() {
            return Err(Stop::Tree);
        }
        let shape = Shape {
            messages: Some(Ok(markers)),
            top_key: found.top_key != KeyMember::Absent,
            event: None,
            integration_id: false,
        };
        found.kind = detect_shape(&shape, self.opts.api).map_err(|_| Stop::Tree)?;
        Ok(found)
    }

    /// Whether a message may carry inline media under `kind`'s policy (both of its watched
    /// first steps present): the tree driver takes it.
    fn maybe_media(&self, kind: PayloadKind, watch: &[&str], has: u8) -> bool {
        let Some(im) = &self.kind_policy(kind).inline_media else {
            return false;
        };
        let bit = |p: &crate::policy::FieldPath| {
            p.plain_keys()
                .and_then(|k| k.first().copied())
                .and_then(|f| watch.iter().position(|w| *w == f))
                .is_none_or(|i| has & (1 << i) != 0)
        };
        bit(&im.content) && bit(&im.content_type)
    }

    /// The checking pass of an encryption: every message walked without writing, so that
    /// the output pass meets no wrong type at a policy path once keys are being made.
    fn check(&self, input: &[u8], found: &Found<'_>) -> R<()> {
        let node = &self.compiled_kind(found.kind).all;
        let mut c = Copier::new(input);
        let mut top = c.begin_object()?;
        while let Some(name) = c.member(&mut top)? {
            if name != b"messages" {
                c.skip()?;
                continue;
            }
            c.begin_array()?;
            let mut i = 0;
            while c.element(i)? {
                c.object(Some(node), &mut Leaf::Check, &Edit::default())?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Encrypts a request without a tree; [`Stop::Tree`] for what the splice driver does
    /// not take (see the module doc).
    pub(crate) async fn splice_encrypt(&self, input: &[u8]) -> R<Vec<u8>> {
        if !self.splices() {
            return Err(Stop::Tree);
        }
        let watch = self.watched().ok_or(Stop::Tree)?;
        // Most requests are One API's: checked under its policy as the shape is read, and
        // checked again only if the document turns out to be of the other kind.
        let guess = match self.opts.api {
            Api::Legacy => PayloadKind::LegacyRequest,
            Api::One | Api::Auto => PayloadKind::OneRequest,
        };
        let found = self.shape(input, &watch, Some(guess))?;
        let kind = found.kind;
        // A key already there is refused or replaced in place by the tree driver.
        if found.top_key != KeyMember::Absent
            || found
                .messages
                .iter()
                .any(|m| m.key != KeyMember::Absent || self.maybe_media(kind, &watch, m.has))
        {
            return Err(Stop::Tree);
        }
        if kind != guess {
            self.check(input, &found)?;
        }

        let node = &self.compiled_kind(kind).all;
        let mut sealing = Sealing::new(self, kind, false);
        sealing.plan(found.messages.len());
        let per_item = sealing.layout().key == KeyScope::PerItem;
        let mut nonces = NonceSource::new();
        let mut scratch = Vec::new();
        // Ciphertext is base64 of nonce + text + tag (about twice the text), and a One API
        // message gains its own `encryptionKey`: room for both up front, so the output is
        // never copied to grow (capacity never written costs no memory).
        let keys = match per_item {
            true => found.messages.len() * KEY_MEMBER_ROOM,
            false => KEY_MEMBER_ROOM,
        };
        let mut c = Copier::writing(input, Vec::with_capacity(input.len() * 2 + keys + 4096));
        let mut top = c.begin_object()?;
        while c.copy_to_messages(&mut top, false)? {
            let mut i = 0;
            while c.element(i)? {
                message_path(&mut c.path, i);
                sealing.next_item(&c.path).await?;
                let key = sealing.item_key().ok_or(Stop::Tree)?;
                let mut leaf = Leaf::Seal {
                    cipher: key.cipher(),
                    suite: self.opts.suite,
                    nonces: &mut nonces,
                    scratch: &mut scratch,
                    count: 0,
                };
                let edit = Edit {
                    drop_key: false,
                    append_key: per_item.then(|| &**key.blob_b64()),
                };
                c.object(Some(node), &mut leaf, &edit)?;
                let Leaf::Seal { count, .. } = leaf else {
                    return Err(Stop::Tree);
                };
                sealing.sealed(count);
                i += 1;
            }
            c.path.clear();
        }
        if let Some(key) = sealing.finish() {
            c.write_name(&mut top, ENCRYPTION_KEY.as_bytes());
            c.put(b"\"");
            c.put(key.blob_b64().as_bytes());
            c.put(b"\"");
        }
        c.end_object(top);
        let mut out = c.out.take().ok_or(Stop::Tree)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Decrypts a request without a tree; [`Stop::Tree`] for what the splice driver does
    /// not take (see the module doc).
    pub(crate) async fn splice_decrypt(&self, input: &[u8]) -> R<(Vec<u8>, Report)> {
        if !self.splices() {
            return Err(Stop::Tree);
        }
        let watch = self.watched().ok_or(Stop::Tree)?;
        let found = self.shape(input, &watch, None)?;
        let kind = found.kind;
        if Layout::of(kind).decrypted_key != KeyPlacement::Remove {
            return Err(Stop::Tree);
        }
        let top_key = found.top_key.own()?;
        let mut own = Vec::with_capacity(found.messages.len());
        for m in &found.messages {
            if self.maybe_media(kind, &watch, m.has) {
                return Err(Stop::Tree);
            }
            own.push(m.key.own()?);
        }
        // No checking pass: the tree driver has none either when decrypting, and finds a
        // mistake where it opens the item that has it. A mistake met here while writing hands
        // the document on; the keys unwrapped so far are in the cache, so the tree driver
        // asks the key service nothing twice.
        // A message without its own key is opened with the document's, which then goes
        // (the run fails as a whole otherwise: no `keep_going` here).
        let drop_top = top_key.is_some() && own.iter().any(Option::is_none);

        let top_value = top_key.map(|k| Value::String(k.to_string()));
        let mut unsealing = Unsealing::new(self, kind, top_value.as_ref())?;
        let mut blobs = Blobs::default();
        top_key
            .iter()
            .chain(own.iter().flatten())
            .for_each(|b| blobs.note_str(b));
        unsealing.prefetch(blobs).await;
        let node = &self.compiled_kind(kind).all;
        let suite = self.opts.decrypt_suite;
        let mut c = Copier::writing(input, Vec::with_capacity(input.len() + 4096));
        let mut top = c.begin_object()?;
        while c.copy_to_messages(&mut top, drop_top)? {
            let mut i = 0;
            while c.element(i)? {
                let mine = own.get(i).copied().ok_or(Stop::Tree)?;
                let Some((blob, from_top)) = unsealing.which_key(mine.map(str::to_string)) else {
                    c.value(None, &mut Leaf::Check)?;
                    i += 1;
                    continue;
                };
                message_path(&mut c.path, i);
                let key_path = if from_top {
                    ENCRYPTION_KEY.to_string()
                } else {
                    sub_key_path(&c.path)
                };
                let key = unsealing.opening_key(&blob, &key_path).await?;
                let mut leaf = Leaf::Open {
                    cipher: key.cipher(),
                    suite,
                };
                // A request's own key goes once used (`KeyPlacement::Remove`, checked above).
                let edit = Edit {
                    drop_key: !from_top,
                    append_key: None,
                };
                c.object(Some(node), &mut leaf, &edit)?;
                unsealing.opened(from_top);
                i += 1;
            }
            c.path.clear();
        }
        c.end_object(top);
        let mut out = c.out.take().ok_or(Stop::Tree)?;
        out.push(b'\n');
        Ok((out, unsealing.finish()))
    }
}

#[cfg(test)]
mod tests;
