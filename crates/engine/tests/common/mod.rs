//! What the queue tests share: the small fixture model standing in for htdemucs.

use std::path::Path;

use stemdeck_engine::ModelStore;

/// A model store holding the fixture `.th` under the official htdemucs name.
pub fn fixture_store(dir: &Path) -> ModelStore {
    let store = dir.join("models");
    std::fs::create_dir_all(&store).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../demucs/tests/fixtures/tiny_htdemucs_th.fixture");
    std::fs::copy(fixture, store.join("955717e8-8726e21a.th")).unwrap();
    ModelStore::with_dirs(vec![store])
}
