//! The background healing: a launcher registered at preload starts one
//! cycle worker per database on a schedule (`launcher`); a cycle observes,
//! detects, records, diagnoses (`diagnosis`) and requests repairs
//! (`cycle`). `anomaly` (baselines),
//! `window` (maintenance windows) and `policy` (per-index choices) are the
//! rules it follows; `state` is what it shows in shared memory.

pub mod anomaly;
pub mod cycle;
pub mod diagnosis;
pub mod launcher;
pub mod policy;
pub mod state;
pub mod window;
