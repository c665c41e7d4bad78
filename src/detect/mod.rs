//! Detection: pure rules that turn measurements into issues.

pub mod index_health;
