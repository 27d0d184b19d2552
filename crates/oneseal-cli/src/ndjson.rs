//! NDJSON (`--ndjson`, or an input named `*.ndjson` / `*.jsonl`): one payload per line,
//! output one line per input line, in input order. A reader thread cuts the input into chunks
//! of lines; chunks are encrypted or decrypted as tasks on both cores (one engine, so one key
//! cache for all lines) and written in order. Memory is a few chunks, whatever the file size.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oneseal_core::{Engine, Error};
use tokio::sync::mpsc;

use crate::error::{code_for, CliError};
use crate::io::{self, Output, Sink};

/// Lines per chunk, and bytes per chunk: enough to keep both cores busy, little memory.
const CHUNK_LINES: usize = 256;
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks being processed at once (ordered on output).
const IN_FLIGHT: usize = 4;
/// The longest line accepted (the platform's request limit is 30 MB).
const MAX_LINE: usize = 64 << 20;

/// Whether `input` asks for NDJSON by its name.
pub fn by_name(input: Option<&Path>) -> bool {
    input
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// A chunk of input lines: the number of its first line (1-based) and the lines.
type Chunk = (usize, Vec<Vec<u8>>);

/// What a chunk turned into.
struct Done {
    out: Vec<u8>,
    /// With `--keep-going`: lines (numbers) left unchanged, and why.
    failures: Vec<(usize, Error)>,
    /// Items decrypted (for the "nothing was encrypted" note).
    items: usize,
}

/// Distinct `encryptionKey` values the reader passes on for prefetching (then it stops
/// looking: the key cache holds 10 000).
const PREFETCH_MAX: usize = 10_000;

/// The `encryptionKey` string values in a raw line, found without parsing it.
fn key_values(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NEEDLE: &[u8] = b"\"encryptionKey\":\"";
    let finder = memchr::memmem::Finder::new(NEEDLE);
    let mut rest = line;
    std::iter::from_fn(move || {
        let at = finder.find(rest)?;
        let v = &rest[at + NEEDLE.len()..];
        let end = memchr::memchr(b'"', v)?;
        rest = &v[end..];
        Some(&v[..end])
    })
}

/// Passes each distinct `encryptionKey` of the lines it is shown on for unwrapping, up to
/// [`PREFETCH_MAX`].
struct Prefetch {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    seen: std::collections::HashSet<Vec<u8>>,
}

impl Prefetch {
    fn new(tx: mpsc::UnboundedSender<Vec<u8>>) -> Prefetch {
        Prefetch {
            tx,
            seen: Default::default(),
        }
    }

    /// False once nothing more will be taken (the cap, or the unwrapping side is gone).
    fn offer(&mut self, line: &[u8]) -> bool {
        for v in key_values(line) {
            if !self.seen.contains(v) {
                if self.seen.len() >= PREFETCH_MAX || self.tx.send(v.to_vec()).is_err() {
                    return false;
                }
                self.seen.insert(v.to_vec());
            }
        }
        true
    }
}

/// Decrypting a file: one pass over it on a thread of its own, passing on every distinct
/// `encryptionKey` at once, so the key service's answers arrive while the first lines are
/// processed rather than when the lines that need them come up (the reader runs only a few
/// chunks ahead of the workers).
fn scan_keys(path: PathBuf, prefetch: mpsc::UnboundedSender<Vec<u8>>) {
    let Ok(f) = std::fs::File::open(&path) else {
        return; // the reader reports it
    };
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut prefetch = Prefetch::new(prefetch);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !prefetch.offer(&line) {
            return;
        }
    }
}

/// Reads `input` (a file, or stdin) in chunks of lines on a thread of its own. With
/// `prefetch`, it also passes on each new `encryptionKey` it sees, so key unwraps run ahead
/// of (and concurrently with) the lines that need them.
fn reader(
    input: Option<PathBuf>,
    tx: mpsc::Sender<Result<Chunk, CliError>>,
    prefetch: Option<mpsc::UnboundedSender<Vec<u8>>>,
) {
    let mut prefetch = prefetch.map(Prefetch::new);
    let name = input.clone().unwrap_or_else(|| PathBuf::from("<stdin>"));
    let src: Box<dyn Read> = match &input {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                let _ = tx.blocking_send(Err(CliError::io("read", p, e)));
                return;
            }
        },
        None => Box::new(std::io::stdin()),
    };
    let mut r = BufReader::with_capacity(1 << 20, src);
    let mut line_no = 1;
    loop {
        let first = line_no;
        let (mut lines, mut bytes) = (Vec::new(), 0);
        while lines.len() < CHUNK_LINES && bytes < CHUNK_BYTES {
            let mut line = Vec::new();
            match (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) => break,
                Ok(_) if line.len() > MAX_LINE => {
                    let _ = tx.blocking_send(Err(CliError::input(format!(
                        "{}: line {line_no} is longer than {} MiB",
                        name.display(),
                        MAX_LINE >> 20
                    ))));
                    return;
                }
                Ok(n) => {
                    if prefetch.as_mut().is_some_and(|p| !p.offer(&line)) {
                        prefetch = None;
                    }
                    bytes += n;
                    line_no += 1;
                    lines.push(line);
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(CliError::io("read", &name, e)));
                    return;
                }
            }
        }
        if lines.is_empty() {
            return;
        }
        if tx.blocking_send(Ok((first, lines))).is_err() {
            return; // the consumer stopped (an error)
        }
    }
}

/// Encrypts or decrypts one chunk. A failing line is fatal (its number and error) unless
/// `keep_going` (decrypt), where it is left as it was and reported.
async fn process(
    engine: Engine,
    decrypt: bool,
    (first, lines): Chunk,
) -> Result<Done, (usize, Error)> {
    let mut done = Done {
        out: Vec::with_capacity(lines.iter().map(Vec::len).sum::<usize>() * 2),
        failures: Vec::new(),
        items: 0,
    };
    for (i, line) in lines.iter().enumerate() {
        let no = first + i;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().all(u8::is_ascii_whitespace) {
            done.out.push(b'\n');
            continue;
        }
        let res = if decrypt {
            engine
                .decrypt_slice(body, false)
                .await
                .map(|(out, report)| {
                    done.items += report.items;
                    done.failures
                        .extend(report.failures.into_iter().map(|e| (no, e)));
                    out
                })
        } else {
            engine.encrypt_slice(body, false).await
        };
        match res {
            Ok(out) => done.out.extend_from_slice(&out),
            Err(e) if decrypt && engine.options().keep_going => {
                done.out.extend_from_slice(body);
                done.out.push(b'\n');
                done.failures.push((no, e));
            }
            Err(e) => return Err((no, e)),
        }
    }
    Ok(done)
}

/// Runs NDJSON encrypt (`decrypt == false`) or decrypt over `input` into `output`.
pub async fn run(
    engine: Engine,
    decrypt: bool,
    input: Option<&Path>,
    output: &Output,
) -> Result<(), CliError> {
    let input = input.filter(|p| !io::is_dash(p)).map(Path::to_path_buf);
    let name = input
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<stdin>".into());
    if input.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(CliError::usage(
            "no input: give a file, or pipe NDJSON on stdin (see --help)",
        ));
    }
    let mut sink = Sink::open(output)?;
    let (tx, rx) = mpsc::channel::<Result<Chunk, CliError>>(IN_FLIGHT);
    let input2 = input.clone();
    // Decrypt: unwrap the archive's keys ahead of the lines, 16 at a time. Failures are
    // left to the line that needs the key (the cache remembers or forgets them as usual).
    let prefetch = decrypt.then(|| {
        let (ptx, prx) = mpsc::unbounded_channel::<Vec<u8>>();
        let cache = engine.cache().clone();
        tokio::spawn(async move {
            futures_util::stream::unfold(
                prx,
                |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
            )
            .for_each_concurrent(16, |v| {
                let cache = cache.clone();
                async move {
                    let blob = std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| oneseal_core::b64::decode(s).ok());
                    if let Some(blob) = blob.filter(|b| !b.is_empty()) {
                        let _ = cache.opening_key(&blob).await;
                    }
                }
            })
            .await;
        });
        ptx
    });
    // A file is scanned for its keys up front; stdin can be read once only, so there the
    // reader passes keys on as it goes.
    let prefetch = match (prefetch, &input) {
        (Some(p), Some(path)) => {
            let path = path.clone();
            let _ = std::thread::Builder::new()
                .name("ndjson-keys".into())
                .spawn(move || scan_keys(path, p));
            None
        }
        (p, _) => p,
    };
    let reading = std::thread::Builder::new()
        .name("ndjson-reader".into())
        .spawn(move || reader(input2, tx, prefetch))
        .map_err(|e| CliError::usage(format!("cannot start the reader thread: {e}")))?;
    let chunks =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut results = chunks
        .map(|c| {
            let engine = engine.clone();
            async move {
                match c {
                    Ok(chunk) => tokio::spawn(process(engine, decrypt, chunk))
                        .await
                        .map_err(|_| CliError::usage("a worker task failed"))
                        .map(|r| r.map_err(|(no, e)| line_error(no, e))),
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(IN_FLIGHT)
        .boxed();
    let mut failures: Vec<(usize, Error)> = Vec::new();
    let mut items = 0usize;
    let mut outcome = Ok(());
    while let Some(r) = results.next().await {
        match r {
            Ok(Ok(done)) => {
                items += done.items;
                failures.extend(done.failures);
                if let Err(e) = sink.write_all(&done.out) {
                    outcome = Err(CliError::io("write", Path::new(&output.display()), e));
                    break;
                }
            }
            Ok(Err(e)) | Err(e) => {
                outcome = Err(e.in_file(input.as_deref()));
                break;
            }
        }
    }
    // Stops the reader (its channel closes) before any error is returned.
    drop(results);
    let _ = reading.join();
    outcome?;
    sink.finish(output)?;
    if let Some(worst) = failures.iter().map(|(_, e)| code_for(e.class())).max() {
        for (no, e) in &failures {
            eprintln!(
                "{}",
                CliError::new(code_for(e.class()), format!("line {no}: {e}"))
                    .in_file(input.as_deref())
            );
        }
        return Err(CliError::new(
            worst,
            format!(
                "{} failure(s) on {} line(s) left as they were (--keep-going); the rest were written",
                failures.len(),
                {
                    let mut ls: Vec<usize> = failures.iter().map(|(n, _)| *n).collect();
                    ls.dedup();
                    ls.len()
                }
            ),
        ));
    }
    if decrypt && items == 0 {
        eprintln!("oneseal: note: nothing in {name} was encrypted (no item carries an encryptionKey); it was passed through unchanged");
    }
    Ok(())
}

fn line_error(no: usize, e: Error) -> CliError {
    CliError::new(code_for(e.class()), format!("line {no}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_found_without_parsing() {
        let line = br#"{"event":{"moText":[{"encryptionKey":"AAA=","x":1},{"encryptionKey":null},{"encryptionKey":"BB+/"}]}}"#;
        let v: Vec<&[u8]> = key_values(line).collect();
        assert_eq!(v, vec![&b"AAA="[..], &b"BB+/"[..]]);
        assert_eq!(key_values(b"{}").count(), 0);
    }
}
