//! Input and output: `-` or nothing is stdin, no `-o` is stdout, and `-o` is written
//! atomically (temp file beside the destination, then rename) so a failure leaves nothing.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Largest JSON input accepted (the platform's own request limit is 30 MB).
pub const MAX_INPUT: u64 = 256 * 1024 * 1024;

/// Reads the whole input: a file, or stdin for `-`/nothing.
pub fn read_input(input: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match input {
        Some(p) if p != Path::new("-") => {
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
    input
        .filter(|p| *p != Path::new("-"))
        .map(Path::to_path_buf)
}

/// Refuses an output path that is the input itself: input files are never modified.
pub fn check_not_same(input: Option<&Path>, output: Option<&Path>) -> Result<(), CliError> {
    let (Some(i), Some(o)) = (input, output) else {
        return Ok(());
    };
    if i == Path::new("-") {
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

/// A temp file beside `dest`, to be renamed over it once complete.
pub fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, CliError> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".oneseal-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| CliError::io("create a temporary file beside", dest, e))
}

/// Writes `bytes` to `dest` atomically, or to stdout when `dest` is None.
pub fn write_output(dest: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match dest {
        None => {
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
        Some(p) => {
            let mut tmp = temp_beside(p)?;
            tmp.write_all(bytes)
                .and_then(|_| tmp.as_file().sync_all())
                .map_err(|e| CliError::io("write", p, e))?;
            persist(tmp, p)
        }
    }
}

/// Renames a completed temp file over `dest`.
pub fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), CliError> {
    tmp.persist(dest)
        .map(|_| ())
        .map_err(|e| CliError::io("write", dest, e.error))
}
