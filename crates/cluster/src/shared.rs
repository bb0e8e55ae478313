//! Where uploads and results travel between the server and its workers: a folder every
//! machine mounts (NFS, SMB), or an S3-compatible bucket (`s3://bucket/prefix`, through
//! `object_store`; keys and endpoint from the usual `AWS_*` variables). Tickets and
//! reports name files by their path relative to it, so each machine may see it elsewhere.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub enum SharedStore {
    Folder(PathBuf),
    Bucket(Arc<Bucket>),
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedStore::Folder(dir) => write!(f, "{}", dir.display()),
            SharedStore::Bucket(bucket) => write!(f, "{}", bucket.url),
        }
    }
}

/// A bucket could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl SharedStore {
    /// `s3://BUCKET[/PREFIX]` is a bucket; anything else a folder, which must exist.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if text.starts_with("s3://") {
            return Ok(SharedStore::Bucket(Arc::new(Bucket::open(text)?)));
        }
        let dir = PathBuf::from(text);
        if !dir.is_dir() {
            return Err(StoreError(format!(
                "the shared folder {} does not exist (mount it, or create it)",
                dir.display()
            )));
        }
        Ok(SharedStore::Folder(dir))
    }

    /// The folder, when it is one.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            SharedStore::Folder(dir) => Some(dir),
            SharedStore::Bucket(_) => None,
        }
    }
}

pub struct Bucket {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The bucket's client is async; the protocol's two ends are threads. (An `Option`
    /// only so that dropping it never blocks, inside the server's runtime or not.)
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Bucket {
    fn open(url: &str) -> Result<Self, StoreError> {
        let rest = url.trim_start_matches("s3://");
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(StoreError(format!(
                "“{url}” names no bucket (s3://BUCKET/PREFIX)"
            )));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(name)
            .build()
            .map_err(|e| StoreError(format!("cannot use the bucket {url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the bucket's client: {e}")))?;
        let bucket = Self {
            url: url.to_owned(),
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            runtime: Some(runtime),
        };
        // Said at start: wrong keys or a wrong endpoint should not look like idle work.
        bucket
            .has_folder(Path::new(".stemdeck"))
            .map_err(|e| StoreError(format!("cannot reach the bucket {url}: {e}")))?;
        Ok(bucket)
    }

    /// Runs `work` on the bucket's client from any thread, the server's async ones
    /// included (there, on a thread of its own).
    fn run<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> T {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the bucket");
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(work))
                    .join()
                    .expect("a bucket call does not panic")
            })
        } else {
            runtime.block_on(work)
        }
    }

    fn key(&self, relative: &Path) -> Key {
        let relative = relative.to_string_lossy();
        if self.prefix.is_empty() {
            Key::from(relative.as_ref())
        } else {
            Key::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn fail(&self, what: &str, relative: &Path, e: impl fmt::Display) -> StoreError {
        StoreError(format!(
            "cannot {what} {} in {}: {e}",
            relative.display(),
            self.url
        ))
    }

    /// Uploads `file` as `relative`, in parts, never whole in memory. An object appears
    /// only once complete.
    pub fn upload(&self, file: &Path, relative: &Path) -> Result<(), StoreError> {
        self.run(async {
            let mut source = tokio::fs::File::open(file)
                .await
                .map_err(|e| e.to_string())?;
            let mut sink = BufWriter::new(self.store.clone(), self.key(relative));
            if let Err(e) = tokio::io::copy(&mut source, &mut sink).await {
                let _ = sink.abort().await;
                return Err(e.to_string());
            }
            sink.shutdown().await.map_err(|e| e.to_string())
        })
        .map_err(|e| self.fail("upload", relative, e))
    }

    /// Downloads `relative` to `dest`, under a temporary name until complete.
    pub fn download(&self, relative: &Path, dest: &Path) -> Result<(), StoreError> {
        let partial = dest.with_extension("part");
        let result = self.run(async {
            let got = self
                .store
                .get(&self.key(relative))
                .await
                .map_err(|e| e.to_string())?;
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| e.to_string())?;
            let mut chunks = got.into_stream();
            while let Some(chunk) = chunks.next().await {
                file.write_all(&chunk.map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            file.sync_all().await.map_err(|e| e.to_string())
        });
        match result.and_then(|()| std::fs::rename(&partial, dest).map_err(|e| e.to_string())) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(self.fail("download", relative, e))
            }
        }
    }

    /// True when some object's key starts with `relative/`.
    pub fn has_folder(&self, relative: &Path) -> Result<bool, StoreError> {
        self.run(async {
            self.store
                .list(Some(&self.key(relative)))
                .next()
                .await
                .transpose()
                .map(|first| first.is_some())
        })
        .map_err(|e| self.fail("list", relative, e))
    }

    /// Removes every object under `relative/`.
    pub fn remove_folder(&self, relative: &Path) -> Result<(), StoreError> {
        self.run(async {
            let mut listed = self.store.list(Some(&self.key(relative)));
            while let Some(meta) = listed.next().await {
                self.store.delete(&meta?.location).await?;
            }
            Ok::<_, object_store::Error>(())
        })
        .map_err(|e| self.fail("remove", relative, e))
    }
}
