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
    // The typed failure, kept aside while the atomic writer reports it as text.
    let mut failure = None;
    let written = stemdeck_audio::write_atomically(dest, |file| {
        fetch_into(url, file, sha256_prefix, progress, is_cancelled).map_err(|e| {
            let text = e.to_string();
            failure = Some(e);
            text
        })
    });
    match (written, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(EngineError::Download {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn fetch_into(
    url: &str,
    mut file: std::fs::File,
    sha256_prefix: &str,
    progress: DownloadProgress,
    is_cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    let fail = |reason: String| EngineError::Download {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_resolve(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => fail("the server has no such file (HTTP 404)".into()),
        ureq::Error::StatusCode(code) => fail(format!("the server answered HTTP {code}")),
        other => fail(format!(
            "cannot reach the server ({other}); check the internet connection"
        )),
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
                let of_total = total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Err(fail(format!(
                    "the download stopped early ({received}{of_total} bytes; {e})"
                )));
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| fail(format!("cannot write the model file ({e})")))?;
        received += n as u64;
        progress(received, total);
    }
    if let Some(total) = total
        && received != total
    {
        return Err(fail(format!(
            "the download stopped early ({received} of {total} bytes)"
        )));
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !digest.starts_with(&sha256_prefix.to_ascii_lowercase()) {
        return Err(EngineError::ChecksumMismatch {
            url: url.to_string(),
            expected: sha256_prefix.to_string(),
            actual: digest,
        });
    }
    Ok(())
}
