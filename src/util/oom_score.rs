//! `oom-score-adj`: the kernel's OOM-killer score of the process by its role, kept as Redis's
//! `setOOMScoreAdj` keeps it. `oom-score-adj-values` holds a score for a master, a replica and
//! a background child; `relative` (or `yes`) adds it to the score the process had before, which
//! turning the setting off puts back, and `absolute` uses it as it is.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

const PATH: &str = "/proc/self/oom_score_adj";
/// The score before Oxidis changed it, while it has changed it.
static ORIGINAL: Mutex<Option<i32>> = Mutex::new(None);
/// What a forked child writes for itself; NONE leaves the child's score as inherited.
static CHILD: AtomicI32 = AtomicI32::new(NONE);
const NONE: i32 = i32::MIN;

/// Applies `oom-score-adj` (`mode`) and `oom-score-adj-values` to this process, as a
/// replica's or a master's.
pub fn apply(mode: &str, values: &str, replica: bool) -> io::Result<()> {
    let values: Vec<i32> = values
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [master, replica_score, child] = values[..] else {
        return Ok(());
    };
    let mut original = ORIGINAL.lock().unwrap_or_else(|e| e.into_inner());
    if mode == "no" {
        CHILD.store(NONE, Ordering::Relaxed);
        return match original.take() {
            Some(score) => write(score),
            None => Ok(()),
        };
    }
    let base = match *original {
        Some(base) => base,
        None => *original.insert(read()?),
    };
    let offset = if mode == "absolute" { 0 } else { base };
    let score = |value: i32| (value + offset).clamp(-1000, 1000);
    CHILD.store(score(child), Ordering::Relaxed);
    write(score(if replica { replica_score } else { master }))
}

/// In a background child just forked: takes the child's score.
pub fn enter_child() {
    let score = CHILD.load(Ordering::Relaxed);
    if score != NONE {
        let _ = write(score);
    }
}

fn read() -> io::Result<i32> {
    let text = std::fs::read_to_string(PATH)?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("unexpected {PATH}: {text}")))
}

fn write(score: i32) -> io::Result<()> {
    std::fs::write(PATH, format!("{score}\n"))
}
