//! Detection: pure rules that turn measurements into issues
//! (`index_health`), and their Postgres side (`record`): inspecting a
//! table's indexes and recording what the rules find; the health score of
//! the statistics view (`score`).

pub mod index_health;
pub mod record;
pub mod score;
