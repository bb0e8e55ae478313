//! Bundling a job's stems into one ZIP, written atomically.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{EngineError, Result};
use crate::pipeline::StemFile;

/// How a stem is kept in a ZIP: stored as it is (audio barely compresses, and storing is
/// quick), dated when the stem was written.
pub fn stem_entry(file: &std::fs::File) -> zip::write::SimpleFileOptions {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let written = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .map(time::OffsetDateTime::from)
        .and_then(|t| {
            zip::DateTime::try_from(time::PrimitiveDateTime::new(t.date(), t.time())).ok()
        });
    match written {
        Some(when) => options.last_modified_time(when),
        None => options,
    }
}

/// Writes `stems` into the ZIP archive `dest`, each under its file name in a folder named
/// `folder`. Each stem streams from its file, so memory stays flat however long the song.
/// Nothing is left at `dest` if any stem cannot be read.
pub fn export_zip(stems: &[StemFile], folder: &str, dest: &Path) -> Result<()> {
    if stems.is_empty() {
        return Err(EngineError::NothingToExport {
            path: dest.to_owned(),
        });
    }
    let zip_error = |e: zip::result::ZipError| EngineError::write(dest)(e.into());
    stemdeck_audio::write_atomically(dest, |file| {
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let mut block = vec![0u8; 1 << 16];
        for stem in stems {
            let mut data =
                std::fs::File::open(&stem.path).map_err(EngineError::read(&stem.path))?;
            let name = stem
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}.wav", stem.name));
            zip.start_file(format!("{folder}/{name}"), stem_entry(&data))
                .map_err(zip_error)?;
            loop {
                let n = data
                    .read(&mut block)
                    .map_err(EngineError::read(&stem.path))?;
                if n == 0 {
                    break;
                }
                zip.write_all(&block[..n])
                    .map_err(EngineError::write(dest))?;
            }
        }
        let mut inner = zip.finish().map_err(zip_error)?;
        inner.flush().map_err(EngineError::write(dest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_zip_holds_every_stem_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let stems: Vec<StemFile> = ["drums", "vocals"]
            .iter()
            .map(|name| {
                let path = dir.path().join(format!("{name}.wav"));
                std::fs::write(&path, format!("RIFF {name} data").repeat(100)).unwrap();
                StemFile {
                    name: name.to_string(),
                    path,
                }
            })
            .collect();
        let dest = dir.path().join("out/song stems.zip");
        export_zip(&stems, "song", &dest).unwrap();
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&dest).unwrap()).unwrap();
        assert_eq!(archive.len(), 2);
        for stem in &stems {
            let mut entry = archive.by_name(&format!("song/{}.wav", stem.name)).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(data, std::fs::read(&stem.path).unwrap());
            // Dated when the stem was written (today), not the format's 1980 default.
            let dated = entry.last_modified().unwrap();
            let today = time::OffsetDateTime::now_utc();
            assert_eq!(dated.year(), today.year() as u16);
        }
    }

    #[test]
    fn a_missing_stem_leaves_no_zip() {
        let dir = tempfile::tempdir().unwrap();
        let stems = vec![StemFile {
            name: "bass".into(),
            path: dir.path().join("gone.wav"),
        }];
        let dest = dir.path().join("stems.zip");
        let err = export_zip(&stems, "song", &dest).unwrap_err().to_string();
        assert!(err.contains("gone.wav"), "{err}");
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
