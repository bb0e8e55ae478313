//! The models: which exist (the manifest), where their files live (the store), fetching
//! them (verified downloads), managing them (presence, import, removal) and what each one's
//! state is now (status).

pub mod download;
pub mod manager;
pub mod manifest;
pub mod status;
pub mod store;
