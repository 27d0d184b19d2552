//! The copier: a cursor over the input and the output being written, reading JSON token
//! by token, copying what no policy path selects as serde_json would write it, and handing
//! each policy leaf to a [`Leaf`] action. Anything it does not take is [`Stop::Tree`].

use std::borrow::Cow;

use serde_json::Value;

use super::{Stop, R};
use crate::b64;
use crate::suite::{DecryptSuite, FieldCipher, NonceSource, Suite};
use crate::walker::detect::ENCRYPTION_KEY;
use crate::walker::item::{open_str, seal_bytes};
use crate::walker::layout::{push_index, push_key, Node};

/// serde_json refuses documents nested 128 deep; well below that both drivers agree.
pub(super) const MAX_DEPTH: usize = 100;
/// Repeated member names are found by comparing each with the ones before it: objects wider
/// than this go to the tree driver.
pub(super) const MAX_MEMBERS: usize = 64;

/// Every string below a `**` path is a leaf.
pub(super) static DEEP: Node = Node {
    leaf: false,
    keys: Vec::new(),
    any_key: None,
    any_index: None,
    deep: true,
};

/// What happens at a policy leaf (a string the policy selects).
pub(super) enum Leaf<'k> {
    /// The checking passes: a leaf is a string or null, nothing more to do.
    Check,
    Seal {
        cipher: &'k FieldCipher,
        suite: Suite,
        nonces: &'k mut NonceSource,
        scratch: &'k mut Vec<u8>,
        /// Values sealed, to record against the key.
        count: u64,
    },
    Open {
        cipher: &'k FieldCipher,
        suite: DecryptSuite,
    },
}

/// The member edits of one item: its own `encryptionKey` dropped (decrypted requests), a
/// key blob appended (encrypted One API messages).
#[derive(Default)]
pub(super) struct Edit<'b> {
    pub(super) drop_key: bool,
    pub(super) append_key: Option<&'b str>,
}

/// An object being read: whether a member was written yet (for commas), how many were read,
/// and where its member names start on the name stack.
pub(super) struct Obj {
    pub(super) written: bool,
    members: usize,
    pub(super) names: usize,
}

/// The cursor over the input, and the output (none on the checking passes).
pub(super) struct Copier<'a> {
    pub(super) s: &'a [u8],
    pub(super) i: usize,
    pub(super) out: Option<Vec<u8>>,
    /// The JSON path of the value at the cursor, kept along policy paths only (errors).
    pub(super) path: String,
    /// Member names of the objects open at the cursor (repeats are refused).
    pub(super) names: Vec<&'a [u8]>,
    pub(super) depth: usize,
    /// The shape pass has read these bytes whole: what it checked (member names, UTF-8)
    /// is not checked again.
    checked: bool,
}

impl<'a> Copier<'a> {
    /// A reading pass over `s`, checking everything.
    pub(super) fn new(s: &'a [u8]) -> Copier<'a> {
        Copier {
            s,
            i: 0,
            out: None,
            path: String::new(),
            names: Vec::new(),
            depth: 0,
            checked: false,
        }
    }

    /// An output pass into `out`, over bytes the shape pass has read whole (the same input,
    /// so the same checks would pass again).
    pub(super) fn writing(s: &'a [u8], out: Vec<u8>) -> Copier<'a> {
        Copier {
            out: Some(out),
            checked: true,
            ..Copier::new(s)
        }
    }

    pub(super) fn put(&mut self, b: &[u8]) {
        if let Some(o) = &mut self.out {
            o.extend_from_slice(b);
        }
    }

    /// The next byte past whitespace.
    pub(super) fn peek(&mut self) -> R<u8> {
        while let Some(&b) = self.s.get(self.i) {
            if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                return Ok(b);
            }
        }
        Err(Stop::Tree)
    }

    /// Only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        matches!(self.peek(), Err(Stop::Tree))
    }

    pub(super) fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Stop::Tree);
        }
        Ok(())
    }

    /// The string at the cursor (at its quote): its raw content, valid UTF-8, and whether
    /// it has escapes.
    pub(super) fn string(&mut self) -> R<(&'a [u8], bool)> {
        let s = self.s;
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            // Eight bytes at a time: the first one that ends the string, starts an escape or
            // is a control character is found in the word, then handled below.
            let c = match s.get(j..j + 8) {
                Some(w) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(w);
                    let w = u64::from_le_bytes(b);
                    let m = special(w);
                    if m == 0 {
                        high |= w;
                        j += 8;
                        continue;
                    }
                    // The lowest flagged byte is exact (see `special`); below 8, so the
                    // shift is below 64.
                    let k = (m.trailing_zeros() / 8) as usize;
                    high |= w & ((1u64 << (8 * k)) - 1);
                    j += k;
                    b[k]
                }
                // The last few bytes of the input, one at a time.
                None => match s.get(j) {
                    Some(&c) if c >= 0x20 && c != b'"' && c != b'\\' => {
                        high |= u64::from(c);
                        j += 1;
                        continue;
                    }
                    Some(&c) => c,
                    None => return Err(Stop::Tree),
                },
            };
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                // Raw control characters are not JSON.
                _ => return Err(Stop::Tree),
            }
        }
        self.i = j + 1;
        let body = &s[start..j];
        // Outside strings any byte past ASCII is refused by the grammar; inside, it must be
        // UTF-8 (escaped strings are checked as serde_json decodes them).
        if !self.checked && high & 0x8080_8080_8080_8080 != 0 && std::str::from_utf8(body).is_err()
        {
            return Err(Stop::Tree);
        }
        Ok((body, escaped))
    }

    /// The text of the string at the cursor, unescaped (UTF-8, as [`Self::string`] found).
    pub(super) fn text(&mut self) -> R<Cow<'a, [u8]>> {
        let start = self.i;
        let (body, escaped) = self.string()?;
        if escaped {
            serde_json::from_slice::<String>(&self.s[start..self.i])
                .map(|t| Cow::Owned(t.into_bytes()))
                .map_err(|_| Stop::Tree)
        } else {
            Ok(Cow::Borrowed(body))
        }
    }

    /// Copies the string at the cursor as serde_json writes it: unchanged without escapes,
    /// re-escaped by serde_json with them (`\u00e9` is written `é`, `\/` is `/`).
    pub(super) fn copy_string(&mut self) -> R<()> {
        let start = self.i;
        let (_, escaped) = self.string()?;
        if !escaped {
            let raw = &self.s[start..self.i];
            self.put(raw);
            return Ok(());
        }
        let text: String =
            serde_json::from_slice(&self.s[start..self.i]).map_err(|_| Stop::Tree)?;
        if let Some(o) = &mut self.out {
            serde_json::to_writer(o, &text).map_err(|_| Stop::Tree)?;
        }
        Ok(())
    }

    /// Copies the number at the cursor: as written (serde_json keeps a number's text), but
    /// an exponent as serde_json writes it (`1E5` is `1e+5`).
    pub(super) fn copy_number(&mut self) -> R<()> {
        let s = self.s;
        let start = self.i;
        let mut j = start;
        let digits = |j: &mut usize| {
            let d = *j;
            while s.get(*j).is_some_and(u8::is_ascii_digit) {
                *j += 1;
            }
            *j > d
        };
        if s.get(j) == Some(&b'-') {
            j += 1;
        }
        match s.get(j) {
            Some(b'0') => j += 1,
            Some(b'1'..=b'9') => {
                digits(&mut j);
            }
            _ => return Err(Stop::Tree),
        }
        if s.get(j) == Some(&b'.') {
            j += 1;
            if !digits(&mut j) {
                return Err(Stop::Tree);
            }
        }
        let mut exponent = false;
        if matches!(s.get(j), Some(b'e' | b'E')) {
            exponent = true;
            j += 1;
            if matches!(s.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !digits(&mut j) {
                return Err(Stop::Tree);
            }
        }
        self.i = j;
        let token = &s[start..j];
        if !exponent {
            self.put(token);
        } else if let Some(o) = &mut self.out {
            let v: Value = serde_json::from_slice(token).map_err(|_| Stop::Tree)?;
            serde_json::to_writer(o, &v).map_err(|_| Stop::Tree)?;
        }
        Ok(())
    }

    pub(super) fn copy_literal(&mut self) -> R<()> {
        let rest = &self.s[self.i..];
        for lit in [&b"null"[..], b"true", b"false"] {
            if rest.starts_with(lit) {
                self.i += lit.len();
                self.put(lit);
                return Ok(());
            }
        }
        Err(Stop::Tree)
    }

    pub(super) fn null(&mut self) -> R<()> {
        if self.s[self.i..].starts_with(b"null") {
            self.i += 4;
            self.put(b"null");
            return Ok(());
        }
        Err(Stop::Tree)
    }

    /// The value at the cursor, under the policy node `node` (none: no leaf below).
    pub(super) fn value(&mut self, node: Option<&Node>, leaf: &mut Leaf<'_>) -> R<()> {
        let b = self.peek()?;
        let Some(n) = node else {
            return match b {
                b'"' => self.copy_string(),
                b'{' => self.object(None, leaf, &Edit::default()),
                b'[' => self.array(None, leaf),
                b'-' | b'0'..=b'9' => self.copy_number(),
                _ => self.copy_literal(),
            };
        };
        // As the tree driver's walk: `**` takes every string below; otherwise null is left
        // alone, a string is a leaf where a path ends, and objects and arrays are entered
        // where a path goes on. Anything else is a wrong type, which the tree driver names.
        if n.deep {
            return match b {
                b'n' => self.null(),
                b'"' => self.leaf(leaf),
                b'{' => self.object(Some(&DEEP), leaf, &Edit::default()),
                b'[' => self.array(Some(&DEEP), leaf),
                _ => Err(Stop::Tree),
            };
        }
        match b {
            b'n' => self.null(),
            b'"' if n.leaf => self.leaf(leaf),
            b'{' if n.wants_object() => self.object(Some(n), leaf, &Edit::default()),
            b'[' if n.any_index.is_some() => self.array(n.any_index.as_deref(), leaf),
            _ => Err(Stop::Tree),
        }
    }

    /// The value at the cursor, read and checked but not written.
    pub(super) fn skip(&mut self) -> R<()> {
        let out = self.out.take();
        let r = self.value(None, &mut Leaf::Check);
        self.out = out;
        r
    }

    /// A policy leaf: the string at the cursor sealed, opened, or only read.
    pub(super) fn leaf(&mut self, leaf: &mut Leaf<'_>) -> R<()> {
        match leaf {
            // Escapes are checked too: the output pass must meet no mistake.
            Leaf::Check => {
                let start = self.i;
                let (_, escaped) = self.string()?;
                if escaped {
                    serde_json::from_slice::<String>(&self.s[start..self.i])
                        .map_err(|_| Stop::Tree)?;
                }
                Ok(())
            }
            Leaf::Seal {
                cipher,
                suite,
                nonces,
                scratch,
                count,
            } => {
                let text = self.text()?;
                seal_bytes(cipher, *suite, &text, &self.path, scratch, nonces)?;
                *count += 1;
                if let Some(o) = &mut self.out {
                    o.push(b'"');
                    b64::encode_append(scratch, o);
                    o.push(b'"');
                }
                Ok(())
            }
            Leaf::Open { cipher, suite } => {
                let text = self.text()?;
                let plain = open_str(cipher, *suite, &text, &self.path)?;
                if let Some(o) = &mut self.out {
                    serde_json::to_writer(o, &plain).map_err(|_| Stop::Tree)?;
                }
                Ok(())
            }
        }
    }

    /// Starts the object at the cursor (at its brace).
    pub(super) fn begin_object(&mut self) -> R<Obj> {
        if self.peek()? != b'{' {
            return Err(Stop::Tree);
        }
        self.enter()?;
        self.i += 1;
        self.put(b"{");
        Ok(Obj {
            written: false,
            members: 0,
            names: self.names.len(),
        })
    }

    /// The next member's name (the cursor then at its value), or `None` past the closing
    /// brace. Writes nothing.
    pub(super) fn member(&mut self, o: &mut Obj) -> R<Option<&'a [u8]>> {
        let count = o.members;
        match (self.peek()?, count) {
            (b'}', _) => {
                self.i += 1;
                return Ok(None);
            }
            (b',', 1..) => {
                self.i += 1;
                if self.peek()? != b'"' {
                    return Err(Stop::Tree);
                }
            }
            (b'"', 0) => {}
            _ => return Err(Stop::Tree),
        }
        let (name, escaped) = self.string()?;
        o.members += 1;
        // The tree keeps the last of repeated members at the first one's place; escaped
        // names would need unescaping to compare: both are rare, the tree driver takes them.
        if !self.checked {
            if escaped || count >= MAX_MEMBERS || self.names[o.names..].contains(&name) {
                return Err(Stop::Tree);
            }
            self.names.push(name);
        }
        if self.peek()? != b':' {
            return Err(Stop::Tree);
        }
        self.i += 1;
        Ok(Some(name))
    }

    /// Writes a member's name (and the comma before it).
    pub(super) fn write_name(&mut self, o: &mut Obj, name: &[u8]) {
        if let Some(out) = &mut self.out {
            if o.written {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name);
            out.extend_from_slice(b"\":");
        }
        o.written = true;
    }

    /// Copies the top-level members of `top` up to its `messages` array and enters it
    /// (`true`), or the rest of them up to the closing brace (`false`); with `drop_key`, the
    /// document's `encryptionKey` is left out. Both output passes lay out the top level so.
    pub(super) fn copy_to_messages(&mut self, top: &mut Obj, drop_key: bool) -> R<bool> {
        while let Some(name) = self.member(top)? {
            if drop_key && name == ENCRYPTION_KEY.as_bytes() {
                self.skip()?;
                continue;
            }
            self.write_name(top, name);
            if name == b"messages" {
                self.begin_array()?;
                return Ok(true);
            }
            self.value(None, &mut Leaf::Check)?;
        }
        Ok(false)
    }

    /// Ends an object whose closing brace was read.
    pub(super) fn end_object(&mut self, o: Obj) {
        self.names.truncate(o.names);
        self.depth -= 1;
        self.put(b"}");
    }

    /// The object at the cursor under `node`, with `edit` applied to its members.
    pub(super) fn object(
        &mut self,
        node: Option<&Node>,
        leaf: &mut Leaf<'_>,
        edit: &Edit<'_>,
    ) -> R<()> {
        let mut o = self.begin_object()?;
        let base = self.path.len();
        while let Some(name) = self.member(&mut o)? {
            if edit.drop_key && name == ENCRYPTION_KEY.as_bytes() {
                self.skip()?;
                continue;
            }
            self.write_name(&mut o, name);
            let child = match route_named(node, name)? {
                Some((sub, named)) => {
                    // A name the policy has is pushed as the policy's own text.
                    let key = match named {
                        Some(k) => k,
                        None => std::str::from_utf8(name).map_err(|_| Stop::Tree)?,
                    };
                    push_key(&mut self.path, key);
                    Some(sub)
                }
                None => None,
            };
            self.value(child, leaf)?;
            self.path.truncate(base);
        }
        if let Some(blob) = edit.append_key {
            self.write_name(&mut o, ENCRYPTION_KEY.as_bytes());
            self.put(b"\"");
            self.put(blob.as_bytes());
            self.put(b"\"");
        }
        self.end_object(o);
        Ok(())
    }

    /// The array at the cursor, each element under `node`.
    pub(super) fn array(&mut self, node: Option<&Node>, leaf: &mut Leaf<'_>) -> R<()> {
        self.enter()?;
        self.i += 1;
        self.put(b"[");
        let base = self.path.len();
        let mut index = 0usize;
        if self.peek()? == b']' {
            self.i += 1;
        } else {
            loop {
                if index > 0 {
                    self.put(b",");
                }
                if node.is_some() {
                    push_index(&mut self.path, index);
                }
                self.value(node, leaf)?;
                self.path.truncate(base);
                index += 1;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Stop::Tree),
                }
            }
        }
        self.depth -= 1;
        self.put(b"]");
        Ok(())
    }

    /// Starts the array at the cursor, to be read element by element with [`Self::element`].
    pub(super) fn begin_array(&mut self) -> R<()> {
        if self.peek()? != b'[' {
            return Err(Stop::Tree);
        }
        self.enter()?;
        self.i += 1;
        self.put(b"[");
        Ok(())
    }

    /// Whether another element follows (`index` elements were read); past the closing
    /// bracket when none does. Writes the comma.
    pub(super) fn element(&mut self, index: usize) -> R<bool> {
        match (self.peek()?, index) {
            (b']', _) => {
                self.i += 1;
                self.depth -= 1;
                self.put(b"]");
                Ok(false)
            }
            (b',', 1..) => {
                self.i += 1;
                self.put(b",");
                Ok(true)
            }
            (_, 0) => Ok(true),
            _ => Err(Stop::Tree),
        }
    }
}

/// The bytes of `w` (little-endian) that are a quote, a backslash or a control character,
/// each flagged by its high bit (SWAR: a byte below `n` sets its high bit in `x - n*0x01..`
/// where it was clear in `x`). Bytes above a flagged one may be flagged wrongly (a borrow
/// carries up); the lowest flagged byte, and whether any is, are exact.
pub(super) fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    below(w, 0x20) | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))
}

/// The policy node for member `name` of an object under `node`.
pub(super) fn child<'n>(node: Option<&'n Node>, name: &[u8]) -> R<Option<&'n Node>> {
    route_named(node, name).map(|r| r.map(|(sub, _)| sub))
}

/// The policy node for member `name` of an object under `node`, as the tree driver's walk
/// picks it, and the policy's own text of the name when a path names it (not `*` or `**`).
/// A member both named by a path and under `*` would be visited twice there: the tree
/// driver takes that.
fn route_named<'n>(node: Option<&'n Node>, name: &[u8]) -> R<Option<(&'n Node, Option<&'n str>)>> {
    let n = match node {
        None => return Ok(None),
        Some(n) if n.deep => return Ok(Some((&DEEP, None))),
        Some(n) => n,
    };
    let named = n.keys.iter().find(|(k, _)| k.as_bytes() == name);
    match (named, n.any_key.as_deref()) {
        (Some(_), Some(_)) => Err(Stop::Tree),
        (Some((k, sub)), None) => Ok(Some((sub, Some(k.as_str())))),
        (None, Some(sub)) => Ok(Some((sub, None))),
        (None, None) => Ok(None),
    }
}
