//! Jobs and what they are kept in: the library of every job, the queue that runs them one
//! at a time (shared by the app and the server) or hands them to other machines, their
//! progress estimates, and the settings a new job takes.

pub mod library;
pub mod progress;
pub mod queue;
pub mod remote;
pub mod settings;
