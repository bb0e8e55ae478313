//! What only the desktop app keeps between runs: its settings, the library of jobs, the
//! queue that runs them, their progress estimates and the stem player.

pub mod library;
pub mod player;
pub(crate) mod progress;
pub mod queue;
pub mod settings;
