//! The SQL surface: thin `#[pg_extern]`s that validate arguments, call the
//! core and shape rows.

pub mod adaptive;
pub mod args;
pub mod check;
pub mod health;
pub mod recall;
pub mod repair;
pub mod stats;
pub mod status;
pub mod verify;
