//! The repair engine: strategies that fix an index without losing a row or
//! blocking traffic, run by a background worker, journaled step by step.
//!
//! `plan` is the pure core (strategies, states, names, definitions,
//! validation verdicts); `settings` what a repair runs under; `request`
//! the request path (checks, plan, journal row, worker start); `catalog`
//! and `journal` the SPI reads and writes; `registry` who owns a running
//! repair (shared memory); `exec` how a worker runs SQL at top level;
//! `ddl` every create, rename and drop of an index, each by OID; `step`
//! what every worker step uses; `worker` the worker's life and the
//! dispatch to `rebuild`, `vacuum` and `tune`; `guards` what may refuse a
//! repair; `recovery` what the next run does after a crash; `counters` the
//! shared-memory figures.

pub mod catalog;
pub mod counters;
pub mod ddl;
pub mod exec;
pub mod guards;
pub mod journal;
pub mod plan;
pub mod rebuild;
pub mod recovery;
pub mod registry;
pub mod request;
pub mod settings;
pub mod step;
pub mod tune;
pub mod vacuum;
pub mod worker;
