//! The repair engine: strategies that fix an index without losing a row or
//! blocking traffic, run by a background worker, journaled step by step.
//!
//! `plan` is the pure core (strategies, states, names, definitions,
//! validation verdicts); `settings` what a repair runs under; `catalog` and
//! `journal` the SPI reads and writes; `exec` how the worker runs SQL at
//! top level; `worker` the worker's life and the dispatch to `rebuild`,
//! `vacuum` and `tune`; `guards` what may refuse a repair; `recovery` what
//! the next run does after a crash; `counters` the shared-memory figures.

pub mod catalog;
pub mod counters;
pub mod exec;
pub mod guards;
pub mod journal;
pub mod plan;
pub mod rebuild;
pub mod recovery;
pub mod settings;
pub mod tune;
pub mod vacuum;
pub mod worker;
