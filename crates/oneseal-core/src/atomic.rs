//! Atomic output files that an interrupt can clean up.
//!
//! A [`PendingFile`] is a temp file beside its destination: written, synced, then renamed over
//! the destination ([`commit`](PendingFile::commit)), after which the parent directory is
//! synced so the rename itself survives a crash. A replaced file keeps its mode; a new one is
//! 0600. Until the commit, the temp path is listed in a process-wide registry, so a signal
//! handler can remove every unfinished output with [`remove_pending_files`] before the process
//! exits (a dropped `PendingFile` removes itself, but a signal's default action runs no
//! destructors: an interrupted media decrypt used to leave gigabytes of unverified plaintext).
//!
//! ```
//! use std::io::Write;
//! let dir = tempfile::tempdir().unwrap();
//! let dest = dir.path().join("out.json");
//! let mut f = oneseal_core::atomic::PendingFile::beside(&dest).unwrap();
//! f.file_mut().write_all(b"{}\n").unwrap();
//! f.commit().unwrap();
//! assert_eq!(std::fs::read(&dest).unwrap(), b"{}\n");
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Temp files not yet committed, by id. The lock is also held across each rename, so a
/// signal handler that takes it sees every output either still pending or already in place.
static PENDING: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn pending() -> MutexGuard<'static, BTreeMap<u64, PathBuf>> {
    // A poisoned registry is still a valid list of paths: keep using it.
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// An output being written: a temp file beside `dest`, registered for interrupt cleanup.
#[derive(Debug)]
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
    listed: Listed,
}

/// The temp file's entry in the registry, removed when dropped (after a commit, or with the
/// temp file when the output is abandoned: `NamedTempFile`'s own drop deletes the file).
#[derive(Debug)]
struct Listed(u64);

impl Drop for Listed {
    fn drop(&mut self) {
        pending().remove(&self.0);
    }
}

impl PendingFile {
    /// Creates `.oneseal-XXXX.part` beside `dest` (mode 0600).
    pub fn beside(dest: &Path) -> io::Result<PendingFile> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // Registered under the lock before the file exists, so no window leaves it unlisted.
        let mut reg = pending();
        let tmp = tempfile::Builder::new()
            .prefix(".oneseal-")
            .suffix(".part")
            .tempfile_in(dir)?;
        reg.insert(id, tmp.path().to_path_buf());
        drop(reg);
        Ok(PendingFile {
            tmp,
            dest: dest.to_path_buf(),
            listed: Listed(id),
        })
    }

    /// The open temp file.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// The open temp file, mutably (for `Write`).
    pub fn file_mut(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Where the output goes once committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs the file, gives it the mode of the file it replaces (if any), renames it over
    /// the destination and syncs the directory.
    pub fn commit(self) -> io::Result<()> {
        self.finish(true)
    }

    /// Like [`commit`](Self::commit), but fails with `AlreadyExists` rather than replace an
    /// existing destination (for keys, which are never overwritten).
    pub fn commit_new(self) -> io::Result<()> {
        self.finish(false)
    }

    fn finish(self, replace: bool) -> io::Result<()> {
        let PendingFile { tmp, dest, listed } = self;
        tmp.as_file().sync_all()?;
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(&dest) {
            if m.is_file() && replace {
                tmp.as_file().set_permissions(m.permissions())?;
            }
        }
        {
            // Held across the rename: a signal handler sees the output pending or in place.
            let mut reg = pending();
            let res = if replace {
                tmp.persist(&dest)
            } else {
                tmp.persist_noclobber(&dest)
            };
            reg.remove(&listed.0);
            drop(reg);
            drop(listed);
            res.map_err(|e| e.error)?;
        }
        sync_dir(&dest)
    }
}

impl io::Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.as_file_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

/// Syncs the directory holding `path`, so a rename into it is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Removes every uncommitted output file and returns how many there were. For a signal
/// handler about to exit the process: it keeps the registry locked on return, so no commit
/// can rename a half-written output into place afterwards.
pub fn remove_pending_files() -> usize {
    let reg = pending();
    let n = reg.len();
    for p in reg.values() {
        let _ = std::fs::remove_file(p);
    }
    // Deliberately never unlocked: the process is exiting.
    std::mem::forget(reg);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_replaces_keeping_mode_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let mut f = PendingFile::beside(&dest).unwrap();
        f.file_mut().write_all(b"one").unwrap();
        f.commit().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "new outputs are 0600");
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o640)).unwrap();
            let mut f = PendingFile::beside(&dest).unwrap();
            f.file_mut().write_all(b"two").unwrap();
            f.commit().unwrap();
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "a replaced file keeps its mode");
        }
        let f = PendingFile::beside(&dest).unwrap();
        let tmp = f.tmp.path().to_path_buf();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
