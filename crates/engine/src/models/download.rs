//! Downloading a checkpoint: streamed to a temporary file beside its destination while
//! hashing, checked against its published SHA-256 prefix and its announced length, and
//! renamed into place only when both agree (through the same atomic writer as the stems).
//! Every failure removes the temporary file.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// Bytes received so far and the total when the server announced it.
pub type DownloadProgress<'a> = &'a dyn Fn(u64, Option<u64>);

pub fn download_verified(
    url: &str,
    dest: &Path,
    sha256_prefix: &str,
    progress: DownloadProgress,
    is_cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    stemdeck_audio::write_atomically(dest, |file| {
        fetch_into(url, file, sha256_prefix, progress, is_cancelled)
    })
}

/// Why a model download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadProblem {
    #[error("the server has no such file (HTTP 404)")]
    NoSuchFile,
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("cannot reach the server ({0}); check the internet connection")]
    Unreachable(#[source] ureq::Error),
    #[error("the download stopped early ({received}{} bytes{})", total.map(|t| format!(" of {t}")).unwrap_or_default(), cause.as_ref().map(|e| format!("; {e}")).unwrap_or_default())]
    StoppedEarly {
        received: u64,
        total: Option<u64>,
        #[source]
        cause: Option<std::io::Error>,
    },
    #[error("cannot write the model file ({0})")]
    Write(#[source] std::io::Error),
}

fn fetch_into(
    url: &str,
    mut file: std::fs::File,
    sha256_prefix: &str,
    progress: DownloadProgress,
    is_cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    let fail = |problem: DownloadProblem| EngineError::Download {
        url: url.to_string(),
        problem,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_resolve(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => fail(DownloadProblem::NoSuchFile),
        ureq::Error::StatusCode(code) => fail(DownloadProblem::Status(code)),
        other => fail(DownloadProblem::Unreachable(other)),
    })?;
    let total = response.body().content_length();
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(fail(DownloadProblem::StoppedEarly {
                    received,
                    total,
                    cause: Some(e),
                }));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| fail(DownloadProblem::Write(e)))?;
        received += n as u64;
        progress(received, total);
    }
    if let Some(total) = total
        && received != total
    {
        return Err(fail(DownloadProblem::StoppedEarly {
            received,
            total: Some(total),
            cause: None,
        }));
    }
    let digest = crate::hash::hex(&hasher.finalize());
    if !digest.starts_with(&sha256_prefix.to_ascii_lowercase()) {
        return Err(EngineError::ChecksumMismatch {
            url: url.to_string(),
            expected: sha256_prefix.to_string(),
            actual: digest,
        });
    }
    Ok(())
}
