//! The durable callback spool: one file per callback, written and fsynced (file and
//! directory) before the platform gets its 200, deleted only after the app answered 2xx.
//! Callbacks that can never be delivered move to `dead/` with a `.reason` file beside them;
//! `oneseal gateway replay` moves them back.
//!
//! Layout under `spool_dir`: `.oneseal-spool` (the marker), `incoming/<time>-<seq>-<pid>.json`,
//! `dead/<same name>` and `dead/<same name>.reason`, `tmp/` for files being written and for
//! media in transit.
//!
//! Invariants:
//! - private: directories 0700, files 0600 (callbacks hold ciphertext and metadata);
//! - the spool touches only its own files: at start it deletes from `tmp/` only names it
//!   makes, and it refuses a `spool_dir` that is neither empty nor a spool (no marker), so a
//!   mistaken `spool_dir = "/"` or a home directory is an error, never a cleanup;
//! - a callback file in `incoming/` is complete: it is written under `tmp/`, fsynced, renamed,
//!   and the directory fsynced; a write that fails (ENOSPC) removes its temp file at once.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The file that marks a directory as a oneseal spool.
const MARKER: &str = ".oneseal-spool";
/// Prefix of the media files in transit under `tmp/`.
const TEMP_PREFIX: &str = "oneseal-";

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A new private file (0600), failing if it exists.
fn create_private(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Whether `name` is a file the spool itself leaves under `tmp/`: a callback being written
/// (`<digits>-<digits>-<pid>[.tag].json`), media in transit (`oneseal-…`), a readiness probe.
fn is_own_temp(name: &str) -> bool {
    let callback = name.strip_suffix(".json").is_some_and(|stem| {
        let mut parts = stem.splitn(3, '-');
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next())
            && digits(parts.next())
            && parts.next().is_some_and(|rest| {
                let pid = rest.split('.').next().unwrap_or("");
                !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            })
    });
    callback || name.starts_with(TEMP_PREFIX) || name.starts_with(".probe-")
}

impl Spool {
    /// Opens the spool under `root`: creates it (0700) when missing or empty, accepts it when
    /// it carries the marker (or is a spool of an earlier version: only `incoming`, `dead`
    /// and `tmp` in it), and refuses anything else. Then checks it is writable.
    pub fn open(root: &Path) -> io::Result<Spool> {
        let s = Spool {
            root: root.to_path_buf(),
        };
        let marker = root.join(MARKER);
        if !marker.exists() {
            let names: Vec<String> = match std::fs::read_dir(root) {
                Ok(it) => it
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let earlier_spool = names.iter().all(|n| {
                ["incoming", "dead", "tmp"].contains(&n.as_str()) && root.join(n).is_dir()
            });
            if !earlier_spool {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("it is not empty and not a oneseal spool (no {MARKER} in it); give the spool a directory of its own"),
                ));
            }
            private_dir(root)?;
            let f = create_private(&marker).or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => File::open(&marker),
                _ => Err(e),
            })?;
            f.sync_all()?;
            sync_dir(root)?;
        }
        private_dir(root)?;
        for d in [s.incoming(), s.dead(), s.tmp()] {
            private_dir(&d)?;
        }
        // Leftovers of an interrupted write or media transfer: never complete, never needed.
        // Only the spool's own names: anything else someone put there stays.
        for e in std::fs::read_dir(s.tmp())? {
            let e = e?;
            if is_own_temp(&e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        s.check_writable()?;
        Ok(s)
    }

    /// Where callbacks wait to be delivered.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }
    /// Where undeliverable callbacks are kept.
    pub fn dead(&self) -> PathBuf {
        self.root.join("dead")
    }
    /// Scratch space on the same filesystem (atomic renames; media in transit).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A private temp file under `tmp/` for media in transit, removed when dropped (and at
    /// the next start if the process died).
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(self.tmp())
    }

    /// Writes and removes a probe file (for readiness).
    pub fn check_writable(&self) -> io::Result<()> {
        let p = self.tmp().join(format!(".probe-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let r = create_private(&p).and_then(|mut f| f.write_all(b"ok"));
        let _ = std::fs::remove_file(&p);
        r
    }

    /// Stores `body` durably and returns its name. Returns only once the file and the
    /// directory entry are on disk.
    pub fn put(&self, body: &[u8]) -> io::Result<String> {
        self.put_as(body, "")
    }

    /// [`put`](Self::put) with a tag before `.json` (`.clevertap`): says where the relay
    /// delivers it, and keeps the names in arrival order.
    pub fn put_as(&self, body: &[u8], tag: &str) -> io::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let name = format!(
            "{now:020}-{:08}-{}{tag}.json",
            SEQ.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        let tmp = self.tmp().join(&name);
        let written = create_private(&tmp).and_then(|mut f| {
            f.write_all(body)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A full disk must not leave a partial file taking the space a retry needs.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, self.incoming().join(&name)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.incoming())?;
        Ok(name)
    }

    /// Names waiting in `incoming/`, oldest first.
    pub fn pending(&self) -> io::Result<Vec<String>> {
        list(&self.incoming())
    }

    /// Names in `dead/`, oldest first.
    pub fn dead_letters(&self) -> io::Result<Vec<String>> {
        list(&self.dead())
    }

    /// The stored body.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.incoming().join(name))
    }

    /// Deletes a delivered callback.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.incoming().join(name))?;
        sync_dir(&self.incoming())
    }

    /// Moves a callback to `dead/` with the reason beside it.
    pub fn bury(&self, name: &str, reason: &str) -> io::Result<()> {
        let r = self.dead().join(format!("{name}.reason"));
        let _ = std::fs::remove_file(&r);
        create_private(&r)?.write_all(format!("{reason}\n").as_bytes())?;
        std::fs::rename(self.incoming().join(name), self.dead().join(name))?;
        sync_dir(&self.dead())?;
        sync_dir(&self.incoming())
    }

    /// Moves every dead letter back to `incoming/`; returns how many.
    pub fn replay(&self) -> io::Result<usize> {
        let names = self.dead_letters()?;
        for n in &names {
            std::fs::rename(self.dead().join(n), self.incoming().join(n))?;
            let _ = std::fs::remove_file(self.dead().join(format!("{n}.reason")));
        }
        sync_dir(&self.incoming())?;
        sync_dir(&self.dead())?;
        Ok(names.len())
    }
}

fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bury_replay_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open(d.path()).unwrap();
        let a = s.put(b"{\"a\":1}").unwrap();
        let b = s.put(b"{\"b\":2}").unwrap();
        assert_eq!(s.pending().unwrap(), vec![a.clone(), b.clone()]);
        s.bury(&a, "crypto").unwrap();
        assert_eq!(s.pending().unwrap(), vec![b.clone()]);
        assert_eq!(s.dead_letters().unwrap(), vec![a.clone()]);
        assert_eq!(s.replay().unwrap(), 1);
        assert_eq!(s.read(&a).unwrap(), b"{\"a\":1}");
        s.remove(&a).unwrap();
        s.remove(&b).unwrap();
        assert!(s.pending().unwrap().is_empty());
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_0600_and_directories_0700() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("spool");
        let s = Spool::open(&root).unwrap();
        let a = s.put(b"{}").unwrap();
        s.bury(&a, "why").unwrap();
        for dir in [root.clone(), s.incoming(), s.dead(), s.tmp()] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        assert_eq!(mode(&s.dead().join(&a)), 0o600);
        assert_eq!(mode(&s.dead().join(format!("{a}.reason"))), 0o600);
        assert_eq!(mode(s.temp_file().unwrap().path()), 0o600);
    }

    #[test]
    fn a_directory_that_is_not_a_spool_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("notes.txt"), b"mine").unwrap();
        assert!(Spool::open(d.path()).is_err());
        assert_eq!(std::fs::read(d.path().join("notes.txt")).unwrap(), b"mine");
    }

    #[test]
    fn a_foreign_file_in_tmp_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open(d.path()).unwrap();
        std::fs::write(s.tmp().join("notes.txt"), b"mine").unwrap();
        std::fs::write(s.tmp().join("00000000000000000001-00000001-42.json"), b"{").unwrap();
        let s = Spool::open(d.path()).unwrap();
        assert!(s.tmp().join("notes.txt").exists());
        assert!(!s
            .tmp()
            .join("00000000000000000001-00000001-42.json")
            .exists());
    }

    #[test]
    fn an_earlier_spool_without_a_marker_is_adopted() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["incoming", "dead", "tmp"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        std::fs::write(
            d.path()
                .join("incoming/00000000000000000001-00000001-42.json"),
            b"{}",
        )
        .unwrap();
        let s = Spool::open(d.path()).unwrap();
        assert_eq!(s.pending().unwrap().len(), 1);
        assert!(d.path().join(MARKER).exists());
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>),
        /// Delivered: the relay removes the n-th pending callback.
        Deliver(usize),
        /// A failed attempt: nothing changes on disk (the relay retries later).
        Fail(usize),
        Bury(usize),
        Replay,
        /// The process dies (a half-written temp file left behind) and starts again.
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Put),
            2 => (0usize..8).prop_map(Op::Deliver),
            1 => (0usize..8).prop_map(Op::Fail),
            2 => (0usize..8).prop_map(Op::Bury),
            1 => Just(Op::Replay),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Random put / deliver / fail / bury / replay / crash sequences against a model: the
        /// spool's pending and dead callbacks are exactly the model's, in arrival order, with
        /// their bodies intact; a crash loses nothing that was put and leaves no temp file.
        #[test]
        fn the_spool_behaves_as_its_model(ops in proptest::collection::vec(op(), 1..40)) {
            use std::collections::BTreeMap;
            let d = tempfile::tempdir().unwrap();
            let mut s = Spool::open(d.path()).unwrap();
            let mut incoming: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut dead: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let nth = |m: &BTreeMap<String, Vec<u8>>, i: usize| m.keys().nth(i % m.len().max(1)).cloned();
            for op in ops {
                match op {
                    Op::Put(body) => {
                        let name = s.put(&body).unwrap();
                        proptest::prop_assert!(incoming.keys().all(|k| *k < name), "names keep arrival order");
                        incoming.insert(name, body);
                    }
                    Op::Deliver(i) => if let Some(n) = nth(&incoming, i) {
                        s.remove(&n).unwrap();
                        incoming.remove(&n);
                    },
                    Op::Fail(i) => if let Some(n) = nth(&incoming, i) {
                        proptest::prop_assert_eq!(&s.read(&n).unwrap(), &incoming[&n]);
                    },
                    Op::Bury(i) => if let Some(n) = nth(&incoming, i) {
                        s.bury(&n, "reason").unwrap();
                        let body = incoming.remove(&n).unwrap();
                        dead.insert(n, body);
                    },
                    Op::Replay => {
                        proptest::prop_assert_eq!(s.replay().unwrap(), dead.len());
                        incoming.append(&mut dead);
                    }
                    Op::Crash => {
                        std::fs::write(s.tmp().join("00000000000000000009-00000009-9.json"), b"{half").unwrap();
                        drop(s);
                        s = Spool::open(d.path()).unwrap();
                        proptest::prop_assert_eq!(std::fs::read_dir(s.tmp()).unwrap().count(), 0);
                    }
                }
                proptest::prop_assert_eq!(s.pending().unwrap(), incoming.keys().cloned().collect::<Vec<_>>());
                proptest::prop_assert_eq!(s.dead_letters().unwrap(), dead.keys().cloned().collect::<Vec<_>>());
                for (n, body) in &incoming {
                    proptest::prop_assert_eq!(&s.read(n).unwrap(), body);
                }
            }
        }
    }
}
