//! At most one computing document per core, and one more, for callers that run the engine
//! on threads of their own (the Python package: every thread of a Python program that calls
//! it).
//!
//! Walking a document is CPU-bound and its working set is large (a 5 000-message document is
//! megabytes in and out). Many more threads than cores computing at once only time-slice the
//! cores between them, each slice evicting the others' data from the caches; so past the
//! permits, a thread waits here. One permit per core was too few: a thread holding one is now
//! and then off its core (a page fault, a wake-up), and its core then idles. Measured on two
//! cores with the Python package, threads sharing one engine on the 5 000-message document,
//! against one thread, in alternating runs: four threads 1.48-1.63x with two permits (the
//! cores 76-82% busy), 1.70-2.0x with three (93-96% busy), 1.64-1.83x with no gate; eight
//! threads 1.75-1.90x with three, 1.71-1.80x with no gate.
//!
//! A permit is held only while the future computes, never while it waits: a thread whose
//! document waits for the key service (a `Pending` poll) gives its core to another.

use std::future::Future;
use std::pin::pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::Poll;

/// A counting semaphore for threads (not tasks: the waiting is blocking, on purpose).
#[derive(Debug)]
pub struct Cores {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One core's permit; gives it back when dropped.
#[derive(Debug)]
pub struct Permit<'a>(&'a Cores);

impl Cores {
    /// A gate letting `n` threads (at least one) compute at once.
    pub fn new(n: usize) -> Cores {
        Cores {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// The process's gate: one permit more than the cores this process may use (its CPU
    /// affinity and cgroup quota counted, as `std::thread::available_parallelism` does); see
    /// the module doc for why one more.
    pub fn machine() -> &'static Cores {
        static CORES: OnceLock<Cores> = OnceLock::new();
        CORES.get_or_init(|| {
            Cores::new(std::thread::available_parallelism().map_or(1, |n| n.get()) + 1)
        })
    }

    /// Waits (blocking this thread) for a free core.
    pub fn acquire(&self) -> Permit<'_> {
        // The lock guards a plain counter that no code can leave inconsistent: a poisoned
        // lock (a panic elsewhere while holding it) still holds a valid count.
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }

    /// Runs `fut` to completion on the calling thread with `rt` serving its I/O and timers,
    /// holding a permit during each poll only: while `fut` waits, its core is free.
    ///
    /// Like [`tokio::runtime::Runtime::block_on`], not to be called from within a runtime.
    pub fn block_on<F: Future>(&self, rt: &tokio::runtime::Runtime, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        rt.block_on(std::future::poll_fn(|cx| -> Poll<F::Output> {
            let _core = self.acquire();
            fut.as_mut().poll(cx)
        }))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    fn rt() -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
    }

    #[test]
    fn no_more_threads_compute_at_once_than_there_are_permits() -> Outcome {
        let cores = Arc::new(Cores::new(2));
        let rt = Arc::new(rt()?);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (cores, rt, now, most) = (cores.clone(), rt.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        cores.block_on(&rt, async {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            now.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| "a gated thread panicked")?;
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[test]
    fn a_future_waiting_for_io_holds_no_core() -> Outcome {
        // One permit. The first thread's future waits on a channel that only the second
        // thread's gated future fills: if waiting held the core, neither would finish.
        let cores = Arc::new(Cores::new(1));
        let rt = Arc::new(rt()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let (done_tx, done) = std::sync::mpsc::channel();
        {
            let (cores, rt) = (cores.clone(), rt.clone());
            std::thread::spawn(move || {
                let v = cores.block_on(&rt, async { rx.await.ok() });
                // Nobody listening means the test has already failed on its deadline.
                let _ = done_tx.send(v);
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        // A failed send shows below as a value that never came.
        std::thread::spawn(move || cores.block_on(&rt, async { tx.send(7).ok() }));
        assert_eq!(done.recv_timeout(Duration::from_secs(10)), Ok(Some(7)));
        Ok(())
    }
}
