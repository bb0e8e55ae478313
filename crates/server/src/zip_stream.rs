//! A job's stems as one ZIP, streamed while it is written: nothing is built on disk or in
//! memory first, so the first bytes leave at once whatever the song's length. The stems
//! are stored as the app's own ZIP export stores them.

use std::io::Write;
use std::path::PathBuf;

use axum::body::Body;
use bytes::Bytes;
use stemdeck_engine::outputs::export::stem_entry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Hands each written block to the response; fails once the client has gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    block: Vec<u8>,
}

const BLOCK: usize = 256 * 1024;

impl ChannelWriter {
    fn send_block(&mut self) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        self.tx
            .blocking_send(Ok(Bytes::from(block)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.block.extend_from_slice(buf);
        if self.block.len() >= BLOCK {
            self.send_block()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_block()
    }
}

/// `files` as `<folder>/<name>` entries in a streamed ZIP.
pub fn zip_body(folder: String, files: Vec<(String, PathBuf)>) -> Body {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let error_tx = tx.clone();
        let writer = ChannelWriter {
            tx,
            block: Vec::with_capacity(BLOCK),
        };
        if let Err(e) = write_zip(writer, &folder, &files) {
            // A client that stops a download is no fault of the server's.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                tracing::debug!("the ZIP of “{folder}” stopped: {e}");
            } else {
                tracing::warn!("the ZIP of “{folder}” stopped: {e}");
            }
            // The client sees the response end in error rather than a short, valid-looking file.
            let _ = error_tx.blocking_send(Err(e));
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

fn write_zip(
    writer: ChannelWriter,
    folder: &str,
    files: &[(String, PathBuf)],
) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(writer);
    for (name, path) in files {
        let mut file = std::fs::File::open(path)?;
        zip.start_file(format!("{folder}/{name}"), stem_entry(&file))
            .map_err(std::io::Error::other)?;
        std::io::copy(&mut file, &mut zip)?;
    }
    let mut inner = zip.finish().map_err(std::io::Error::other)?;
    inner.flush()
}
