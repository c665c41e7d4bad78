//! Recall measurement: exact answers for a batch of queries in one pass
//! (`exact`), the confidence interval and the tuning search (`stats`), and
//! the Postgres side that samples queries, runs real index scans and feeds
//! the heap to the exact search (`scan`), and the measurement that puts
//! them together (`measure`).

pub mod exact;
pub mod measure;
pub mod scan;
pub mod stats;
