//! What is made from finished stems on request: a ZIP of a job's files and custom mixes.

pub mod export;
pub mod mix;
