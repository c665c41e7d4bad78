//! Repair counters in shared memory (the specification's `HealingMetrics`
//! for repairs). They exist only when the library is preloaded, and
//! restart from zero with the server; the history tables keep the
//! long-term record. Repairs running now are counted by the `registry`.

use std::sync::atomic::Ordering;

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub initiated: u64,
    pub successful: u64,
    pub failed: u64,
    pub rolled_back: u64,
    pub cancelled: u64,
    pub refused: u64,
    /// Sum of the durations of successful repairs.
    pub total_ms: u64,
}

unsafe impl PGRXSharedMemory for Counters {}

pub static COUNTERS: PgLwLock<Counters> = unsafe { PgLwLock::new(c"ruvector_healing_repairs") };

pub fn available() -> bool {
    crate::PRELOADED.load(Ordering::Relaxed)
}

/// Outcome of one repair for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Initiated,
    Succeeded { ms: u64 },
    Failed,
    RolledBack,
    Cancelled,
    Refused,
}

pub fn record(o: Outcome) {
    if !available() {
        return;
    }
    let mut c = COUNTERS.exclusive();
    match o {
        Outcome::Initiated => c.initiated += 1,
        Outcome::Succeeded { ms } => {
            c.successful += 1;
            c.total_ms += ms;
        }
        Outcome::Failed => c.failed += 1,
        Outcome::RolledBack => c.rolled_back += 1,
        Outcome::Cancelled => c.cancelled += 1,
        Outcome::Refused => c.refused += 1,
    }
}

/// Success rate over finished repairs (successful / (successful +
/// failed)); `None` before the first one.
pub fn success_rate(c: &Counters) -> Option<f64> {
    let n = c.successful + c.failed;
    (n > 0).then(|| c.successful as f64 / n as f64)
}

pub fn average_ms(c: &Counters) -> Option<f64> {
    (c.successful > 0).then(|| c.total_ms as f64 / c.successful as f64)
}

pub fn to_json(c: &Counters) -> Value {
    json!({
        "repairs_initiated": c.initiated,
        "repairs_successful": c.successful,
        "repairs_failed": c.failed,
        "repairs_rolled_back": c.rolled_back,
        "repairs_cancelled": c.cancelled,
        "repairs_refused": c.refused,
        "total_repair_time_ms": c.total_ms,
        "success_rate": success_rate(c),
        "avg_repair_time_ms": average_ms(c),
    })
}

/// Zeroes the repair counters (`ruvector_dag_stat_reset()`).
pub fn reset() {
    if available() {
        *COUNTERS.exclusive() = Counters::default();
    }
}

pub fn snapshot() -> Option<Counters> {
    available().then(|| *COUNTERS.share())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let mut c = Counters::default();
        assert_eq!(success_rate(&c), None);
        assert_eq!(average_ms(&c), None);
        c.successful = 3;
        c.failed = 1;
        c.total_ms = 300;
        assert_eq!(success_rate(&c), Some(0.75));
        assert_eq!(average_ms(&c), Some(100.0));
        assert_eq!(to_json(&c)["repairs_successful"], 3);
    }
}
