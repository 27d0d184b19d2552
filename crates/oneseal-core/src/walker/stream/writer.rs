//! The streamed path's writer: the output laid out as serde_json writes it, one member or
//! element at a time, with the JSON path of each item.

use std::io::{BufWriter, Write};

use serde_json::Value;

use super::super::layout::{message_path, push_index};
use super::scanner::Ev;
use crate::error::Error;

/// Writes JSON exactly as serde_json's compact or pretty (2-space) writer would, one member
/// or element at a time.
pub(crate) struct Out<W: Write> {
    pub(crate) w: W,
    pub(crate) pretty: bool,
    /// For each open container: whether it has a member yet.
    pub(crate) open: Vec<bool>,
}

impl<W: Write> Out<W> {
    pub(crate) fn io(e: std::io::Error) -> Error {
        Error::Json(format!("cannot write the output: {e}"))
    }

    pub(crate) fn raw(&mut self, b: &[u8]) -> Result<(), Error> {
        self.w.write_all(b).map_err(Self::io)
    }

    pub(crate) fn indent(&mut self, depth: usize) -> Result<(), Error> {
        for _ in 0..depth {
            self.raw(b"  ")?;
        }
        Ok(())
    }

    pub(crate) fn begin(&mut self, c: u8) -> Result<(), Error> {
        self.open.push(false);
        self.raw(&[c])
    }

    pub(crate) fn end(&mut self, c: u8) -> Result<(), Error> {
        let had = self.open.pop().unwrap_or(false);
        if self.pretty && had {
            self.raw(b"\n")?;
            self.indent(self.open.len())?;
        }
        self.raw(&[c])
    }

    /// Separator and indentation before the next member or element.
    pub(crate) fn next(&mut self) -> Result<(), Error> {
        let depth = self.open.len();
        let first = match self.open.last_mut() {
            Some(had) => !std::mem::replace(had, true),
            None => true,
        };
        if !first {
            self.raw(b",")?;
        }
        if self.pretty {
            self.raw(b"\n")?;
            self.indent(depth)?;
        }
        Ok(())
    }

    pub(crate) fn key(&mut self, k: &str) -> Result<(), Error> {
        self.next()?;
        serde_json::to_writer(&mut self.w, k).map_err(|e| Error::Json(e.to_string()))?;
        self.raw(if self.pretty { b": " } else { b":" })
    }

    pub(crate) fn value(&mut self, v: &Value) -> Result<(), Error> {
        if !self.pretty {
            return serde_json::to_writer(&mut self.w, v).map_err(|e| Error::Json(e.to_string()));
        }
        // Strings never hold a raw newline (JSON escapes it), so indenting after each one
        // nests the value's own pretty form at this depth.
        let text = serde_json::to_vec_pretty(v).map_err(|e| Error::Json(e.to_string()))?;
        let depth = self.open.len();
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                self.raw(b"\n")?;
                self.indent(depth)?;
            }
            self.raw(line)?;
        }
        Ok(())
    }

    pub(crate) fn member(&mut self, k: &str, v: &Value) -> Result<(), Error> {
        self.key(k)?;
        self.value(v)
    }

    pub(crate) fn element(&mut self, v: &Value) -> Result<(), Error> {
        self.next()?;
        self.value(v)
    }

    pub(crate) fn finish(mut self) -> Result<(), Error> {
        self.raw(b"\n")?;
        self.w.flush().map_err(Self::io)
    }
}

/// `messages[i]`, or `event.<type>[i]` inside an event array.
pub(crate) fn item_path(path: &mut String, event_ty: Option<&str>, i: usize) {
    match event_ty {
        None => message_path(path, i),
        Some(ty) => {
            path.clear();
            path.push_str("event.");
            path.push_str(ty);
            push_index(path, i);
        }
    }
}

/// What a writing pass handles itself: [`Writer::step`] writes the layout (containers,
/// keys, separators) and sets the path of each item.
pub(crate) enum Step<'a> {
    Member(&'a str, Value),
    Item(Value),
    Wrong(&'static str, Value),
    Layout,
}

/// The output of a writing pass, and where in the document it is.
pub(crate) struct Writer<W: Write> {
    pub(crate) out: Out<BufWriter<W>>,
    pub(crate) event_ty: Option<String>,
    pub(crate) index: usize,
    /// The path of the current item (`messages[3]`).
    pub(crate) path: String,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(w: W, pretty: bool) -> Result<Writer<W>, Error> {
        let mut out = Out {
            w: BufWriter::with_capacity(1 << 20, w),
            pretty,
            open: Vec::new(),
        };
        out.begin(b'{')?;
        Ok(Writer {
            out,
            event_ty: None,
            index: 0,
            path: String::new(),
        })
    }

    pub(crate) fn step<'a>(&mut self, ev: Ev<'a>) -> Result<Step<'a>, Error> {
        match ev {
            Ev::Member(k, v) => return Ok(Step::Member(k, v)),
            Ev::Wrong(k, v) => return Ok(Step::Wrong(k, v)),
            Ev::Item(v) => {
                item_path(&mut self.path, self.event_ty.as_deref(), self.index);
                self.index += 1;
                return Ok(Step::Item(v));
            }
            Ev::ArrayStart => {
                if self.event_ty.is_none() {
                    self.out.key("messages")?;
                }
                self.index = 0;
                self.out.begin(b'[')?;
            }
            Ev::ArrayEnd => self.out.end(b']')?,
            Ev::EventStart => {
                self.out.key("event")?;
                self.out.begin(b'{')?;
            }
            Ev::EventType(t) => {
                self.event_ty = Some(t.to_string());
                self.out.key(t)?;
            }
            Ev::EventEnd => {
                self.event_ty = None;
                self.out.end(b'}')?;
            }
        }
        Ok(Step::Layout)
    }

    pub(crate) fn finish(mut self) -> Result<(), Error> {
        self.out.end(b'}')?;
        self.out.finish()
    }
}
