//! One input to finished files: separate it through a loaded model in bounded memory
//! (spilling to disk), reuse earlier results from the cache, and write the stems (mixes and
//! ZIPs through [`crate::outputs`]).

pub mod analyse;
pub mod cache;
pub mod leftovers;
pub mod options;
pub mod run;
pub mod separate;
pub(crate) mod spill;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One stem file of a finished job, and the stem it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StemFile {
    pub name: String,
    pub path: PathBuf,
}

impl StemFile {
    /// A stem named after its file (`drums.wav` is `drums`).
    pub fn from_path(path: PathBuf) -> Self {
        Self {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path,
        }
    }
}
