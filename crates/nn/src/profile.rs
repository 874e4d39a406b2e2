//! Time per layer, for `--profile`: off unless [`enable`]d, then every graph node (and every step of
//! the folded inference plan) adds its wall time under its name. Parallel micro-batches add their
//! times, so a row is the time spent in that layer summed over threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Accumulated time of one layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    pub name: String,
    pub forward: Duration,
    pub backward: Duration,
    pub calls: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
}

pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A start time when profiling is on.
#[inline]
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Adds the time since `start` to `name`'s row (nothing when `start` is `None`).
pub fn record(start: Option<Instant>, name: &str, phase: Phase) {
    let Some(t) = start else { return };
    let d = t.elapsed();
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let i = match table.iter().position(|e| e.name == name) {
        Some(i) => i,
        None => {
            table.push(Entry {
                name: name.to_string(),
                ..Entry::default()
            });
            table.len() - 1
        }
    };
    let e = &mut table[i];
    match phase {
        Phase::Forward => {
            e.forward += d;
            e.calls += 1;
        }
        Phase::Backward => e.backward += d,
    }
}

/// The rows so far, in first-seen order, and clears them.
pub fn take() -> Vec<Entry> {
    std::mem::take(&mut *TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A Markdown table: per layer, milliseconds per batch forward and backward, and the share of the
/// total; `batches` is how many batches the rows cover.
pub fn markdown(entries: &[Entry], batches: usize) -> String {
    let per = |d: Duration| d.as_secs_f64() * 1e3 / batches.max(1) as f64;
    let total: f64 = entries
        .iter()
        .map(|e| per(e.forward) + per(e.backward))
        .sum();
    let mut s = format!(
        "{batches} batches; ms per batch, summed over threads; total {total:.1} ms\n\n\
         | layer | forward ms | backward ms | share |\n|---|---:|---:|---:|\n"
    );
    for e in entries {
        let (f, b) = (per(e.forward), per(e.backward));
        let share = if total > 0.0 {
            (f + b) / total * 100.0
        } else {
            0.0
        };
        s += &format!("| {} | {f:.2} | {b:.2} | {share:.1}% |\n", e.name);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_when_enabled_and_sums_by_name() {
        // Other tests in this process may run graphs while profiling is on: look at our rows only.
        let ours = |rows: Vec<Entry>| -> Vec<Entry> {
            rows.into_iter()
                .filter(|e| e.name.starts_with("profile_test_"))
                .collect()
        };
        enable(false);
        record(start(), "profile_test_off", Phase::Forward);
        assert!(ours(take()).is_empty());
        enable(true);
        for _ in 0..3 {
            let t = start();
            std::thread::sleep(Duration::from_millis(2));
            record(t, "profile_test_a", Phase::Forward);
        }
        record(start(), "profile_test_b", Phase::Backward);
        enable(false);
        let rows = ours(take());
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_str(), rows[0].calls),
            ("profile_test_a", 3)
        );
        assert!(rows[0].forward >= Duration::from_millis(6));
        assert_eq!(
            (rows[1].name.as_str(), rows[1].calls),
            ("profile_test_b", 0)
        );
        let md = markdown(&rows, 3);
        assert!(md.contains("| profile_test_a | "), "{md}");
        assert!(md.starts_with("3 batches"), "{md}");
    }
}
