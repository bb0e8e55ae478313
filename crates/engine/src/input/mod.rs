//! Where audio comes from: dropped files and folders (intake), pasted YouTube links
//! (link), and the backends that fetch a linked video's audio into the download cache.

pub mod intake;
pub mod link;
pub mod source;
