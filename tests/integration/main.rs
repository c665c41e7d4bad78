//! Integration tests of ruvector_healing against a running PostgreSQL with
//! pgvector. Every figure an inspection reports is compared with something
//! computed without the extension: `count(*)`, `pg_relation_size`, the raw
//! pages read through pageinspect and decoded here, searches through the
//! index itself, or plain SQL over the table.
//!
//! The server comes from the environment (RUVECTOR_TEST_HOST, _PORT, _PGBIN,
//! _DATA, _OS_USER; scripts/test.sh sets them). Each test works in a
//! database of its own and drops it at the end; run with
//! `--test-threads=1` (the machine is small and the concurrency test
//! measures lock waits).

mod adaptive;
mod common;
mod concurrency;
mod diagnosis;
mod errors;
mod hnsw;
mod ivfflat;
mod observability;
mod partitioned;
mod recall;
mod repair;
mod replica;
mod trust;
mod types;
mod upgrade;
mod verify;
mod worker;
