//! The repair engine: strategies that fix an index without losing a row or
//! blocking traffic, run by a background worker, journaled step by step.
//!
//! `plan` is the pure core (strategies, states, names, definitions,
//! validation); `settings` what a repair runs under; `catalog` and
//! `journal` the SPI reads and writes; `exec` how the worker runs SQL at
//! top level; `worker` the steps; `counters` the shared-memory figures.

pub mod catalog;
pub mod counters;
pub mod exec;
pub mod journal;
pub mod plan;
pub mod settings;
pub mod worker;
