//! The streamed path's reader: the document cut into top-level members, containers and items
//! without parsing it whole.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use serde_json::{Map, Value};

use super::super::detect::ENCRYPTION_KEY;
use crate::error::Error;

/// One step of a streamed document, in document order.
pub(crate) enum Ev<'a> {
    /// A top-level member other than the streamed ones.
    Member(&'a str, Value),
    /// `messages` (or the current event array) is an array: its elements follow.
    ArrayStart,
    /// A message, or an item of the current event array.
    Item(Value),
    /// The end of `messages` or of an event array.
    ArrayEnd,
    /// `event` is an object: its arrays follow.
    EventStart,
    /// The member `event.<type>` starts.
    EventType(&'a str),
    /// The end of `event`.
    EventEnd,
    /// `messages`, `event` or the current `event.<type>` ([`EVENT_TYPE`]) holds this
    /// instead of the container.
    Wrong(&'static str, Value),
}

/// The key [`Ev::Wrong`] names the current event array with.
pub(crate) const EVENT_TYPE: &str = "event.<type>";

pub(crate) type Sink<'f> = dyn FnMut(Ev<'_>) -> Result<(), Error> + 'f;

/// Reads a JSON document from a file in chunks and cuts it into values without parsing
/// them: strings (with escapes) and nesting are tracked byte by byte, and each value found
/// is handed to serde_json as one slice (its fast path). Memory: the chunk, or the largest
/// single value.
pub(crate) struct Scanner<'a> {
    file: &'a File,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..len]`.
    pos: usize,
    len: usize,
    /// File offset of `buf[0]`, for error messages.
    base: u64,
    eof: bool,
}

pub(crate) const CHUNK: usize = 1 << 20;

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a File, chunk: usize) -> Scanner<'a> {
        Scanner {
            file,
            buf: vec![0; chunk.max(1)],
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
        }
    }

    pub(crate) fn syntax(&self, at: usize, what: &str) -> Error {
        Error::Json(format!("{what} at byte {}", self.base + at as u64))
    }

    /// Makes at least one more byte available after `buf[..len]`, keeping `buf[keep..]`
    /// (moved to the front). False at the end of the file.
    pub(crate) fn more(&mut self, keep: usize) -> Result<bool, Error> {
        use std::io::Read;
        if self.eof {
            return Ok(false);
        }
        if keep > 0 {
            self.buf.copy_within(keep..self.len, 0);
            self.len -= keep;
            self.pos -= keep;
            self.base += keep as u64;
        }
        if self.len == self.buf.len() {
            // One value larger than the buffer: grow (the value has to be whole anyway).
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match (&*self.file).read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Json(format!("cannot read the input: {e}"))),
            }
        }
    }

    /// The next byte that is not whitespace (not consumed), or None at the end.
    pub(crate) fn peek(&mut self) -> Result<Option<u8>, Error> {
        loop {
            while self.pos < self.len {
                match self.buf[self.pos] {
                    b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                    b => return Ok(Some(b)),
                }
            }
            if !self.more(self.pos)? {
                return Ok(None);
            }
        }
    }

    /// Consumes `b` (after whitespace), or fails naming it.
    pub(crate) fn eat(&mut self, b: u8) -> Result<(), Error> {
        match self.peek()? {
            Some(x) if x == b => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax(self.pos, &format!("expected `{}`", b as char))),
            None => Err(self.syntax(self.pos, "unexpected end of the input")),
        }
    }

    /// Cuts the next value and returns its bytes (valid until the next call).
    pub(crate) fn value(&mut self) -> Result<&[u8], Error> {
        if self.peek()?.is_none() {
            return Err(self.syntax(self.pos, "unexpected end of the input"));
        }
        let start = self.pos;
        self.scan_value(start, start, 0, false)
    }

    /// Scans from `i` for the end of the value starting at `start` (refilling as needed).
    pub(crate) fn scan_value(
        &mut self,
        mut start: usize,
        mut i: usize,
        mut depth: usize,
        mut in_str: bool,
    ) -> Result<&[u8], Error> {
        loop {
            while i < self.len {
                let b = self.buf[i];
                if in_str {
                    match b {
                        b'\\' => i += 1,
                        b'"' => {
                            in_str = false;
                            if depth == 0 {
                                i += 1;
                                return Ok(self.take(start, i));
                            }
                        }
                        // Most of a document is string bytes: jump to the next quote or
                        // backslash (or to the end of what is buffered).
                        _ => {
                            i += memchr::memchr2(b'"', b'\\', &self.buf[i..self.len])
                                .unwrap_or(self.len - i);
                            continue;
                        }
                    }
                } else {
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            if depth == 0 {
                                return Ok(self.take(start, i));
                            }
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                return Ok(self.take(start, i));
                            }
                        }
                        b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                            return Ok(self.take(start, i));
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
            let offset = i - start;
            if !self.more(start)? {
                if depth == 0 && !in_str && self.len > self.pos {
                    let end = self.len;
                    return Ok(self.take(self.pos, end));
                }
                return Err(self.syntax(self.len, "unexpected end of the input"));
            }
            // `more` moved the value to the front of the buffer.
            start = self.pos;
            i = start + offset;
        }
    }

    pub(crate) fn take(&mut self, start: usize, end: usize) -> &[u8] {
        self.pos = end;
        &self.buf[start..end]
    }

    /// The next array element: parsed whole, or with `light` only its member names and
    /// its `encryptionKey` (all the decrypt scan needs; the rest is skipped unallocated).
    pub(crate) fn item(&mut self, light: bool) -> Result<Value, Error> {
        if light && self.peek()? == Some(b'{') {
            return self.parse::<Summary>().map(|s| Value::Object(s.0));
        }
        self.parse()
    }

    /// The next value, parsed.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        let at = self.base + self.pos as u64;
        let bytes = self.value()?;
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Json(format!("{e} (in the value at byte {at})")))
    }
}

/// An object's member names, each with `null`, except `encryptionKey` with its value.
pub(crate) struct Summary(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Summary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Summary;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Summary, A::Error> {
                let mut out = Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v = if k == ENCRYPTION_KEY {
                        m.next_value::<Value>()?
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        Value::Null
                    };
                    out.insert(k, v);
                }
                Ok(Summary(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the document in `file` from the start, handing each step to `f`.
pub(crate) fn drive(file: &mut File, f: &mut Sink<'_>) -> Result<(), Error> {
    drive_chunked(file, CHUNK, false, f)
}

/// [`drive`] with items summarized (see [`Scanner::item`]).
pub(crate) fn drive_light(file: &mut File, f: &mut Sink<'_>) -> Result<(), Error> {
    drive_chunked(file, CHUNK, true, f)
}

pub(crate) fn drive_chunked(
    file: &mut File,
    chunk: usize,
    light: bool,
    f: &mut Sink<'_>,
) -> Result<(), Error> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::Json(format!("cannot read the input again: {e}")))?;
    let mut sc = Scanner::new(file, chunk);
    match sc.peek()? {
        Some(b'{') => sc.pos += 1,
        Some(b) => {
            let found = match b {
                b'[' => "an array",
                b'"' => "a string",
                b't' | b'f' => "a boolean",
                b'n' => "null",
                _ => "a number",
            };
            return Err(Error::UnknownPayload(format!(
                "not a WhatsApp payload: the top level is {found}, expected an object with \"messages\" (request) or \"event\"/\"integrationId\" (callback)"
            )));
        }
        None => return Err(Error::Json("the input is empty".into())),
    }
    let mut first = true;
    loop {
        match sc.peek()? {
            Some(b'}') => {
                sc.pos += 1;
                break;
            }
            Some(b',') if !first => sc.pos += 1,
            Some(_) if first => {}
            Some(_) => return Err(sc.syntax(sc.pos, "expected `,` or `}`")),
            None => return Err(sc.syntax(sc.pos, "unexpected end of the input")),
        }
        first = false;
        let key: String = sc.parse()?;
        sc.eat(b':')?;
        match (key.as_str(), sc.peek()?) {
            ("messages", Some(b'[')) => array(&mut sc, light, f)?,
            ("event", Some(b'{')) => {
                sc.pos += 1;
                f(Ev::EventStart)?;
                let mut first = true;
                loop {
                    match sc.peek()? {
                        Some(b'}') => {
                            sc.pos += 1;
                            break;
                        }
                        Some(b',') if !first => sc.pos += 1,
                        Some(_) if first => {}
                        _ => return Err(sc.syntax(sc.pos, "expected `,` or `}`")),
                    }
                    first = false;
                    let ty: String = sc.parse()?;
                    sc.eat(b':')?;
                    f(Ev::EventType(&ty))?;
                    if sc.peek()? == Some(b'[') {
                        array(&mut sc, light, f)?;
                    } else {
                        let v: Value = sc.parse()?;
                        f(Ev::Wrong(EVENT_TYPE, v))?;
                    }
                }
                f(Ev::EventEnd)?;
            }
            ("messages", _) => {
                let v: Value = sc.parse()?;
                f(Ev::Wrong("messages", v))?;
            }
            ("event", _) => {
                let v: Value = sc.parse()?;
                f(Ev::Wrong("event", v))?;
            }
            _ => {
                let v: Value = sc.parse()?;
                f(Ev::Member(&key, v))?;
            }
        }
    }
    match sc.peek()? {
        None => Ok(()),
        Some(_) => Err(sc.syntax(sc.pos, "trailing characters after the document")),
    }
}

/// An array's elements, one value at a time (the scanner is at its `[`).
pub(crate) fn array(sc: &mut Scanner<'_>, light: bool, f: &mut Sink<'_>) -> Result<(), Error> {
    sc.pos += 1;
    f(Ev::ArrayStart)?;
    let mut first = true;
    loop {
        match sc.peek()? {
            Some(b']') => {
                sc.pos += 1;
                break;
            }
            Some(b',') if !first => sc.pos += 1,
            Some(_) if first => {}
            _ => return Err(sc.syntax(sc.pos, "expected `,` or `]`")),
        }
        first = false;
        let v = sc.item(light)?;
        f(Ev::Item(v))?;
    }
    f(Ev::ArrayEnd)
}
