//! The models: which exist (the manifest), where their files live (the store), fetching
//! them (verified downloads) and managing them (presence, import, removal).

pub mod download;
pub mod manager;
pub mod manifest;
pub mod store;
