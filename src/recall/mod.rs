//! Recall measurement: exact answers for a batch of queries in one pass
//! (`exact`), the confidence interval and the tuning search (`stats`), and
//! the Postgres side that samples queries, runs real index scans and feeds
//! the heap to the exact search (`scan`).

pub mod exact;
pub mod scan;
pub mod stats;
