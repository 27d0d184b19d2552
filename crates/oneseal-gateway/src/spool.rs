//! The durable callback spool: one file per callback, written and fsynced (file and
//! directory) before the platform gets its 200, deleted only after the app answered 2xx.
//! Callbacks that can never be decrypted move to `dead/` with a `.reason` file beside them;
//! `oneseal gateway replay` moves them back.
//!
//! Layout under `spool_dir`: `incoming/<time>-<seq>-<pid>.json`, `dead/<same name>` and
//! `dead/<same name>.reason`, `tmp/` for files being written and for media in transit.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (creating) the spool under `root`, and checks it is writable.
    pub fn open(root: &Path) -> io::Result<Spool> {
        let s = Spool {
            root: root.to_path_buf(),
        };
        for d in [s.incoming(), s.dead(), s.tmp()] {
            std::fs::create_dir_all(&d)?;
        }
        // Leftovers of an interrupted write or media transfer: never complete, never needed.
        for e in std::fs::read_dir(s.tmp())? {
            let _ = std::fs::remove_file(e?.path());
        }
        s.check_writable()?;
        Ok(s)
    }

    /// Where callbacks wait to be delivered.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }
    /// Where undecryptable callbacks are kept.
    pub fn dead(&self) -> PathBuf {
        self.root.join("dead")
    }
    /// Scratch space on the same filesystem (atomic renames; media in transit).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Writes and removes a probe file (for readiness).
    pub fn check_writable(&self) -> io::Result<()> {
        let p = self.tmp().join(format!(".probe-{}", std::process::id()));
        std::fs::write(&p, b"ok")?;
        std::fs::remove_file(&p)
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
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.incoming().join(&name))?;
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
        std::fs::write(&r, format!("{reason}\n"))?;
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
}
