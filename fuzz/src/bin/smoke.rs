//! A stable-toolchain smoke run of the fuzz targets: every fixture and vector file as a seed,
//! plus deterministic mutations (bit flips, truncations, splices, byte insertions), for a
//! bounded number of iterations per target. Usage: smoke [ITERATIONS]. Prints a summary.

use std::path::Path;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to drive mutations.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds(root: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(), b"{}".to_vec(), b"[]".to_vec()];
    let mut stack = vec![root.join("fixtures")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => v.truncate(rng.below(v.len())),
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, b"{}[]\":,0aA=+/\\ \x00\xff"[rng.below(16)]);
            }
            3 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                v.splice(i..i, other[j..].iter().take(64).copied());
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    v
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seeds = seeds(&root);
    let mut total = 0;
    for (name, f) in oneseal_fuzz::TARGETS {
        let t = Instant::now();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for s in &seeds {
            f(s);
        }
        for _ in 0..iters {
            let a = &seeds[rng.below(seeds.len())];
            let b = &seeds[rng.below(seeds.len())];
            f(&mutate(&mut rng, a, b));
        }
        total += seeds.len() + iters;
        println!(
            "smoke {name}: {} inputs in {:.1?}",
            seeds.len() + iters,
            t.elapsed()
        );
    }
    // A panic in any target aborts the run; reaching here means every input passed.
    println!("smoke: {total} passed, 0 failed");
}
