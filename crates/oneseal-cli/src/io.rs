//! Input and output. `-` or nothing is stdin; no `-o` or `-o -` is stdout; `-o` naming a
//! regular file (or nothing yet) is written atomically (temp file beside it, then rename, then
//! the directory synced), so a failure or an interrupt leaves nothing there; `-o` naming
//! anything else (a FIFO, a terminal, `/dev/stdout`) is written into, never replaced.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use oneseal_core::atomic::PendingFile;

use crate::error::CliError;

/// Largest JSON input accepted (the platform's own request limit is 30 MB).
pub const MAX_INPUT: u64 = 256 * 1024 * 1024;

/// Whether a path argument means stdin/stdout.
pub fn is_dash(p: &Path) -> bool {
    p == Path::new("-")
}

/// Reads the whole input: a file, or stdin for `-`/nothing.
pub fn read_input(input: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match input {
        Some(p) if !is_dash(p) => {
            let f = std::fs::File::open(p).map_err(|e| CliError::io("read", p, e))?;
            let mut buf = Vec::new();
            f.take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| CliError::io("read", p, e))?;
            if buf.len() as u64 > MAX_INPUT {
                return Err(CliError::input(format!(
                    "{} is larger than {} MiB; split the batch",
                    p.display(),
                    MAX_INPUT >> 20
                )));
            }
            Ok(buf)
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(CliError::usage(
                    "no input: give a file, or pipe JSON on stdin (see --help)",
                ));
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| CliError::io("read", Path::new("<stdin>"), e))?;
            if buf.len() as u64 > MAX_INPUT {
                return Err(CliError::input(
                    "stdin is larger than 256 MiB; split the batch",
                ));
            }
            Ok(buf)
        }
    }
}

/// Display name of an input for messages.
pub fn input_name(input: Option<&Path>) -> Option<PathBuf> {
    input.filter(|p| !is_dash(p)).map(Path::to_path_buf)
}

/// Refuses an output path that is the input itself: input files are never modified.
pub fn check_not_same(input: Option<&Path>, output: Option<&Path>) -> Result<(), CliError> {
    let (Some(i), Some(o)) = (input, output) else {
        return Ok(());
    };
    if is_dash(i) || is_dash(o) {
        return Ok(());
    }
    let same = match (std::fs::canonicalize(i), std::fs::canonicalize(o)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(CliError::usage(format!(
            "-o {} is the input file; oneseal never overwrites its input: choose another output",
            o.display()
        )));
    }
    Ok(())
}

/// Where an output goes, decided once from `-o` before any work is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output (no `-o`, or `-o -`).
    Stdout,
    /// A FIFO, terminal, character device or `/dev/stdout`-style path: written into directly
    /// (renaming over it would replace the device or pipe with a regular file).
    Direct(PathBuf),
    /// A regular file (existing or new): temp file beside it, then rename. For a symlink, the
    /// file it points to (the link stays a link).
    Atomic(PathBuf),
}

impl Output {
    /// Classifies `-o`. Checks that a new file's directory exists (oneseal creates no
    /// directories for outputs) and that the path is not a directory.
    pub fn from_arg(arg: Option<&Path>) -> Result<Output, CliError> {
        let p = match arg {
            None => return Ok(Output::Stdout),
            Some(p) if is_dash(p) => return Ok(Output::Stdout),
            Some(p) => p,
        };
        let via_special = |q: &Path| q.starts_with("/dev") || q.starts_with("/proc");
        let link_target = std::fs::read_link(p).ok();
        if via_special(p) || link_target.as_deref().is_some_and(via_special) {
            return Ok(Output::Direct(p.to_path_buf()));
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Err(CliError::usage(format!(
                "-o {} is a directory: name a file in it",
                p.display()
            ))),
            Ok(m) if !m.is_file() => Ok(Output::Direct(p.to_path_buf())),
            Ok(_) if link_target.is_some() => std::fs::canonicalize(p)
                .map(Output::Atomic)
                .map_err(|e| CliError::io("resolve", p, e)),
            Ok(_) => Ok(Output::Atomic(p.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                require_parent_dir(p)?;
                Ok(Output::Atomic(p.to_path_buf()))
            }
            Err(e) => Err(CliError::io("write", p, e)),
        }
    }

    /// The path for messages and the media JSON (`-` for stdout).
    pub fn display(&self) -> String {
        match self {
            Output::Stdout => "-".into(),
            Output::Direct(p) | Output::Atomic(p) => p.display().to_string(),
        }
    }

    /// Writes all of `bytes`.
    pub fn write(&self, bytes: &[u8]) -> Result<(), CliError> {
        match self {
            Output::Stdout => write_stdout(bytes),
            Output::Direct(p) => {
                let mut f = open_direct(p)?;
                f.write_all(bytes)
                    .and_then(|_| f.flush())
                    .map_err(|e| CliError::io("write", p, e))
            }
            Output::Atomic(p) => {
                let mut tmp = pending_beside(p)?;
                tmp.file_mut()
                    .write_all(bytes)
                    .map_err(|e| CliError::io("write", p, e))?;
                commit(tmp)
            }
        }
    }
}

/// Opens a non-regular output for writing, without creating or truncating anything.
pub fn open_direct(p: &Path) -> Result<std::fs::File, CliError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(|e| CliError::io("write", p, e))
}

/// A temp file beside `dest`, registered so an interrupt removes it.
pub fn pending_beside(dest: &Path) -> Result<PendingFile, CliError> {
    PendingFile::beside(dest).map_err(|e| CliError::io("create a temporary file beside", dest, e))
}

/// Puts a finished temp file in place (sync, keep mode, rename, sync the directory).
pub fn commit(tmp: PendingFile) -> Result<(), CliError> {
    let dest = tmp.dest().to_path_buf();
    tmp.commit().map_err(|e| CliError::io("write", &dest, e))
}

/// One rule for every file oneseal creates (outputs, keys): its directory must exist, except
/// oneseal's own data directory, which the local key provider creates.
pub fn require_parent_dir(p: &Path) -> Result<(), CliError> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "cannot write {}: the directory {} does not exist (create it first; oneseal does not create directories)",
        p.display(),
        dir.display()
    )))
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .or_else(|e| {
            // A closed pipe (e.g. `| head`) is the reader's choice, not our failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| CliError::io("write", Path::new("<stdout>"), e))
}

/// A streamed output: buffered, to stdout, into a special file, or into a pending temp file
/// committed by [`Sink::finish`] (dropped unfinished, it leaves nothing).
pub enum Sink {
    Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>),
    Direct(std::io::BufWriter<std::fs::File>),
    Atomic(std::io::BufWriter<oneseal_core::atomic::PendingFile>),
}

impl Sink {
    pub fn open(output: &Output) -> Result<Sink, CliError> {
        Ok(match output {
            Output::Stdout => Sink::Stdout(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout().lock(),
            )),
            Output::Direct(p) => {
                Sink::Direct(std::io::BufWriter::with_capacity(1 << 20, open_direct(p)?))
            }
            Output::Atomic(p) => Sink::Atomic(std::io::BufWriter::with_capacity(
                1 << 20,
                pending_beside(p)?,
            )),
        })
    }

    pub fn finish(self, output: &Output) -> Result<(), CliError> {
        let err = |e| CliError::io("write", Path::new(&output.display()), e);
        match self {
            Sink::Stdout(mut w) => match w.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(err),
            },
            Sink::Direct(mut w) => w.flush().map_err(err),
            Sink::Atomic(w) => {
                let tmp = w.into_inner().map_err(|e| err(e.into_error()))?;
                commit(tmp)
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(b),
            Sink::Direct(w) => w.write(b),
            Sink::Atomic(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Direct(w) => w.flush(),
            Sink::Atomic(w) => w.flush(),
        }
    }
}

/// Documents larger than this are streamed from a file (bounded memory) instead of parsed
/// whole: a parsed document takes about 18 times its size in memory.
pub const STREAM_ABOVE: u64 = 2 * 1024 * 1024;

/// A document to process: small ones in memory, large ones as a file to stream (stdin
/// spooled into an anonymous temp file, which no interrupt can leave behind).
pub enum Input {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

/// Opens the input, deciding between memory and streaming by its size.
pub fn open_input(input: Option<&Path>) -> Result<Input, CliError> {
    match input {
        Some(p) if !is_dash(p) => {
            let f = std::fs::File::open(p).map_err(|e| CliError::io("read", p, e))?;
            let meta = f.metadata().map_err(|e| CliError::io("read", p, e))?;
            if meta.is_file() && meta.len() > STREAM_ABOVE {
                return Ok(Input::File(f));
            }
            read_input(Some(p)).map(Input::Bytes)
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(CliError::usage(
                    "no input: give a file, or pipe JSON on stdin (see --help)",
                ));
            }
            let name = Path::new("<stdin>");
            let mut head = Vec::new();
            let mut lock = stdin.lock();
            (&mut lock)
                .take(STREAM_ABOVE + 1)
                .read_to_end(&mut head)
                .map_err(|e| CliError::io("read", name, e))?;
            if head.len() as u64 <= STREAM_ABOVE {
                return Ok(Input::Bytes(head));
            }
            let mut f = tempfile::tempfile()
                .map_err(|e| CliError::io("create a temporary file for", name, e))?;
            f.write_all(&head)
                .and_then(|_| std::io::copy(&mut lock, &mut f).map(|_| ()))
                .map_err(|e| CliError::io("spool", name, e))?;
            Ok(Input::File(f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_classified() {
        assert_eq!(Output::from_arg(None).unwrap(), Output::Stdout);
        assert_eq!(
            Output::from_arg(Some(Path::new("-"))).unwrap(),
            Output::Stdout
        );
        assert!(matches!(
            Output::from_arg(Some(Path::new("/dev/stdout"))).unwrap(),
            Output::Direct(_)
        ));
        assert!(matches!(
            Output::from_arg(Some(Path::new("/dev/null"))).unwrap(),
            Output::Direct(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(Output::from_arg(Some(dir.path())).is_err());
        let new = dir.path().join("new.json");
        assert_eq!(
            Output::from_arg(Some(&new)).unwrap(),
            Output::Atomic(new.clone())
        );
        let missing = dir.path().join("nope").join("x.json");
        let e = Output::from_arg(Some(&missing)).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("does not exist"), "{}", e.message);
    }
}
