//! An uploaded song: streamed from the multipart body to disk, a chunk at a time, under a
//! temporary name in a random folder of its own, and renamed once it is whole. It is never
//! held in memory, and its name is cleaned to a plain file name before it touches the disk.

use std::path::{Path, PathBuf};

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// The file field and the other (text) fields of an upload.
pub struct Upload {
    pub file: PathBuf,
    pub fields: Vec<(String, String)>,
}

/// Reads the form: the `file` field to `<uploads>/<random>/<name>`, the rest as text.
pub async fn receive(
    mut form: Multipart,
    uploads: &Path,
    max_bytes: u64,
) -> Result<Upload, ApiError> {
    let mut file = None;
    let mut fields = Vec::new();
    let result = async {
        while let Some(mut field) = form.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name != "file" {
                let value = field.text().await.map_err(malformed)?;
                if value.len() > 4096 {
                    return Err(ApiError::bad_request(format!(
                        "the form field “{name}” is too long"
                    )));
                }
                fields.push((name, value));
                continue;
            }
            if file.is_some() {
                return Err(ApiError::bad_request(
                    "send one file per job (the form has two “file” fields)",
                ));
            }
            let folder = uploads.join(random_name());
            tokio::fs::create_dir_all(&folder)
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
            let target = folder.join(safe_name(field.file_name()));
            // Recorded before writing, so that a failure below removes the folder.
            file = Some(target.clone());
            let partial = stemdeck_engine::audio::temp_name(&target);
            let mut out = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
            let mut written = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(too_large(max_bytes));
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
            }
            out.flush()
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
            drop(out);
            if written == 0 {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_audio",
                    "the uploaded file is empty",
                ));
            }
            tokio::fs::rename(&partial, &target)
                .await
                .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(folder) = file.as_ref().and_then(|f| f.parent()) {
            let _ = tokio::fs::remove_dir_all(folder).await;
        }
        return Err(e);
    }
    match file {
        Some(file) => Ok(Upload { file, fields }),
        None => Err(ApiError::bad_request(
            "the form has no “file” field: send the song as multipart/form-data with the field name “file”",
        )),
    }
}

/// Removes an upload's folder (it is one of ours only when it is in `uploads`).
pub fn discard(uploads: &Path, file: &Path) {
    if let Some(folder) = file.parent()
        && folder.parent() == Some(uploads)
    {
        let _ = std::fs::remove_dir_all(folder);
    }
}

pub fn too_large(max_bytes: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the upload is larger than this server accepts ({:.1} GB)",
            max_bytes as f64 / 1e9
        ),
    )
}

fn malformed(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the upload is larger than this server accepts",
        );
    }
    ApiError::bad_request(format!(
        "the upload is not a well-formed form: {}",
        e.body_text()
    ))
}

/// 128 random bits: upload folders cannot be guessed.
fn random_name() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The upload's own name as a plain file name (no folders, nothing hidden), or "upload".
fn safe_name(name: Option<&str>) -> String {
    let base = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let clean = sanitize_filename::sanitize(base);
    let clean = clean.trim_start_matches('.').trim();
    if clean.is_empty() {
        "upload".into()
    } else {
        clean.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_cannot_leave_their_folder() {
        assert_eq!(safe_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(safe_name(Some("..\\..\\boot.ini")), "boot.ini");
        assert_eq!(safe_name(Some("/abs/Song.mp3")), "Song.mp3");
        assert_eq!(safe_name(Some("..")), "upload");
        assert_eq!(safe_name(Some(".bashrc")), "bashrc");
        assert_eq!(safe_name(None), "upload");
        assert_eq!(
            safe_name(Some("My Song (live).flac")),
            "My Song (live).flac"
        );
    }
}
