//! The model manager: importing local checkpoints (accepted only when they really are the
//! model they are imported as), official files recognised by their SHA-256, the state each
//! model is in, and removing models.

#[path = "../../../tests/checkpoint_files.rs"]
mod checkpoint_files;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use checkpoint_files::*;
use stemdeck_demucs::{Device, Precision};
use stemdeck_engine::models::manager::{
    ModelManagerError, PresenceState, import_checkpoint, presence, remove_model, sha256_hex,
};
use stemdeck_engine::models::manifest::{self, ModelInfo};
use stemdeck_engine::models::store::load_bag;
use stemdeck_engine::{EngineError, ModelStore};

/// Built once per test run: each is 84 MB, like the real checkpoint.
fn four_stem_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| htdemucs_checkpoint(&FOUR_STEMS))
}

fn six_stem_file() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| htdemucs_checkpoint(&SIX_STEMS))
}

struct Setup {
    dir: tempfile::TempDir,
    store: ModelStore,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::with_dirs(vec![dir.path().join("models")]);
        Self { dir, store }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn models_dir(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.models_dir())
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn import(&self, path: &Path, as_model: Option<&str>) -> Result<PathBuf, String> {
        import_checkpoint(&self.store, &manifest::models(), path, as_model)
            .map(|imported| imported.path)
            .map_err(|e| e.to_string())
    }
}

fn tiny_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demucs/tests/fixtures/tiny_htdemucs.fixture")
}

#[test]
fn an_htdemucs_checkpoint_is_imported_shows_as_ready_and_loads_then_is_removed() {
    let setup = Setup::new();
    let source = setup.file("my-finetune.safetensors", four_stem_file());
    let htdemucs = manifest::find("htdemucs").unwrap();
    assert_eq!(
        presence(&setup.store, &htdemucs).state(),
        PresenceState::Missing
    );

    let imported = import_checkpoint(&setup.store, &manifest::models(), &source, None).unwrap();
    assert_eq!(imported.model, "htdemucs");
    assert!(!imported.official, "its hash is no official file's");
    assert_eq!(
        imported.path,
        setup.models_dir().join("955717e8.safetensors")
    );
    assert_eq!(std::fs::read(&imported.path).unwrap(), four_stem_file());
    assert_eq!(
        setup.stored(),
        ["955717e8.safetensors"],
        "no temporary file left"
    );

    let here = presence(&setup.store, &htdemucs);
    assert_eq!(here.state(), PresenceState::Ready);
    assert!(here.imported());
    assert_eq!(here.disk_bytes(), Some(four_stem_file().len() as u64));
    assert_eq!(here.files[0].path.as_ref(), Some(&imported.path));
    let paths = setup
        .store
        .ensure(&htdemucs, &|_, _, _| panic!("no download"), &|| false);
    let bag = load_bag(&paths.unwrap(), None, &Device::Cpu, Precision::Exact).unwrap();
    assert_eq!(bag.sources(), FOUR_STEMS);

    let again = setup.import(&source, None).unwrap_err();
    assert!(
        again.contains("htdemucs is already here") && again.contains("remove it first"),
        "{again}"
    );

    let removed = remove_model(&setup.store, &htdemucs).unwrap();
    assert_eq!(removed, [imported.path]);
    assert!(setup.stored().is_empty());
    assert_eq!(
        presence(&setup.store, &htdemucs).state(),
        PresenceState::Missing
    );
    let err = remove_model(&setup.store, &htdemucs).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Models(ModelManagerError::NotPresent { .. })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "htdemucs is not downloaded or imported, so there is nothing to remove"
    );
}

#[test]
fn a_misshapen_missing_or_extra_tensor_is_refused_by_name_and_nothing_is_stored() {
    let setup = Setup::new();
    let kwargs = htdemucs_kwargs(&FOUR_STEMS);
    let shapes = shapes_for(&kwargs);
    type Edit = fn(&mut std::collections::BTreeMap<String, Vec<usize>>);
    let cases: [(&str, Edit, &str); 3] = [
        (
            "wrong-shape",
            |s| {
                s.insert("decoder.3.conv_tr.weight".into(), vec![48, 8, 8, 2]);
            },
            "tensor decoder.3.conv_tr.weight has shape [48, 8, 8, 2] where the model needs [48, 16, 8, 1]",
        ),
        (
            "missing",
            |s| {
                s.remove("crosstransformer.layers.2.linear1.weight");
            },
            "tensor crosstransformer.layers.2.linear1.weight is missing",
        ),
        (
            "extra",
            |s| {
                s.insert("encoder.0.extra.weight".into(), vec![3]);
            },
            "tensor encoder.0.extra.weight (shape [3]) is not part of this model",
        ),
    ];
    for (name, edit, words) in cases {
        let mut edited = shapes.clone();
        edit(&mut edited);
        let source = setup.file(name, &safetensors_checkpoint(&kwargs, &edited));
        let err = setup.import(&source, Some("htdemucs")).unwrap_err();
        println!("{name}: {err}");
        assert!(
            err.contains("does not fit htdemucs") && err.contains(words),
            "{name}: {err}"
        );
        assert!(
            setup.stored().is_empty(),
            "{name} stored {:?}",
            setup.stored()
        );
    }
}

#[test]
fn the_toy_fixture_is_refused_for_its_architecture() {
    let setup = Setup::new();
    let err = setup.import(&tiny_fixture(), None).unwrap_err();
    println!("{err}");
    assert!(
        err.contains("is not built like htdemucs")
            && err.contains("channels is 4 (htdemucs has 48)")
            && err.contains("segment is 0.5 s (htdemucs has 7.8 s)"),
        "{err}"
    );
    assert!(setup.stored().is_empty());
}

#[test]
fn garbage_an_empty_file_and_a_missing_file_are_refused_clearly() {
    let setup = Setup::new();
    let garbage = setup.file("song.mp3", b"ID3\x04\x00 this is not a model at all");
    let err = setup.import(&garbage, None).unwrap_err();
    assert!(
        err.contains("song.mp3 is not a model Stemdeck can use")
            && err.contains("not a safetensors or .th checkpoint"),
        "{err}"
    );
    let empty = setup.file("empty.th", b"");
    let err = setup.import(&empty, None).unwrap_err();
    assert!(err.ends_with("the file is empty"), "{err}");
    let err = setup
        .import(&setup.dir.path().join("nowhere.th"), None)
        .unwrap_err();
    assert!(err.contains("nowhere.th: file not found"), "{err}");
    assert!(setup.stored().is_empty());
}

#[test]
fn a_six_stem_file_is_htdemucs_6s_and_is_refused_as_htdemucs() {
    let setup = Setup::new();
    let source = setup.file("six.safetensors", six_stem_file());
    let err = setup.import(&source, Some("htdemucs")).unwrap_err();
    assert!(
        err.ends_with(
            "is a 6-stem model (drums, bass, other, vocals, guitar, piano); import it as htdemucs_6s"
        ),
        "{err}"
    );
    assert!(setup.stored().is_empty());

    let path = setup.import(&source, None).unwrap();
    assert_eq!(path, setup.models_dir().join("5c90dfd2.safetensors"));
    let six = presence(&setup.store, &manifest::find("htdemucs_6s").unwrap());
    assert_eq!(six.state(), PresenceState::Ready);
    assert_eq!(
        presence(&setup.store, &manifest::find("htdemucs").unwrap()).state(),
        PresenceState::Missing
    );
}

#[test]
fn a_bag_takes_only_its_official_files_and_unknown_names_list_the_models() {
    let setup = Setup::new();
    let source = setup.file("member.safetensors", four_stem_file());
    let err = setup.import(&source, Some("htdemucs_ft")).unwrap_err();
    assert!(
        err.starts_with("htdemucs_ft is a bag of 4 models")
            && err.contains("only its official files can be imported")
            && err.ends_with("Download htdemucs_ft instead"),
        "{err}"
    );
    let err = setup.import(&source, Some("spleeter")).unwrap_err();
    assert!(
        err.contains("unknown model \"spleeter\"") && err.contains("htdemucs_6s"),
        "{err}"
    );
    assert!(setup.stored().is_empty());
}

/// The manifest with `file` of `model` published with the SHA-256 of `bytes`, as if they
/// were the official checkpoint.
fn catalogue_publishing(model: &str, file: usize, bytes: &[u8]) -> Vec<ModelInfo> {
    let prefix = sha256_hex(bytes)[..8].to_string();
    let mut all = manifest::models();
    let entry = &mut all.iter_mut().find(|m| m.name == model).unwrap().files[file];
    entry.name = format!("{}-{prefix}.th", entry.signature());
    entry.sha256_prefix = prefix;
    all
}

#[test]
fn an_official_file_is_recognised_by_its_hash_and_kept_under_its_official_name() {
    let setup = Setup::new();
    let source = setup.file("downloaded-elsewhere.bin", four_stem_file());
    let catalogue = catalogue_publishing("htdemucs", 0, four_stem_file());
    let official_name = catalogue[0].files[0].name.clone();

    let err = import_checkpoint(&setup.store, &catalogue, &source, Some("htdemucs_6s"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "is the official file {official_name} of htdemucs, not of htdemucs_6s"
        )),
        "{err}"
    );

    let imported = import_checkpoint(&setup.store, &catalogue, &source, None).unwrap();
    assert!(imported.official);
    assert_eq!(imported.path, setup.models_dir().join(&official_name));
    let here = presence(&setup.store, &catalogue[0]);
    assert_eq!(here.state(), PresenceState::Ready);
    assert!(!here.imported(), "an official file is not an imported copy");
}

#[test]
fn an_official_bag_member_is_imported_and_the_bag_is_then_partly_here() {
    let setup = Setup::new();
    let source = setup.file("vocals-member.th", four_stem_file());
    let catalogue = catalogue_publishing("htdemucs_ft", 3, four_stem_file());
    let imported = import_checkpoint(&setup.store, &catalogue, &source, None).unwrap();
    assert_eq!(imported.model, "htdemucs_ft");
    assert!(imported.official);
    let bag = catalogue.iter().find(|m| m.name == "htdemucs_ft").unwrap();
    let here = presence(&setup.store, bag);
    assert_eq!(
        here.state(),
        PresenceState::Partial {
            present: 1,
            total: 4
        }
    );
    assert_eq!(here.disk_bytes(), Some(four_stem_file().len() as u64));
    assert_eq!(here.files[3].path.as_ref(), Some(&imported.path));

    // Removing the bag takes the member and a half-written download a crash left behind.
    let partial = setup
        .models_dir()
        .join(format!(".{}.4242.partial", bag.files[0].name));
    std::fs::write(&partial, b"half").unwrap();
    assert_eq!(remove_model(&setup.store, bag).unwrap(), [imported.path]);
    assert!(setup.stored().is_empty(), "{:?}", setup.stored());
}

#[test]
fn a_model_outside_the_model_folder_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, shared) = (dir.path().join("mine"), dir.path().join("shared"));
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    let elsewhere = shared.join("955717e8.safetensors");
    std::fs::write(&elsewhere, b"weights").unwrap();
    let store = ModelStore::with_dirs(vec![mine.clone(), shared]);
    let err = remove_model(&store, &manifest::find("htdemucs").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "is in {}, outside Stemdeck's model folder {}",
            elsewhere.display(),
            mine.display()
        )),
        "{err}"
    );
    assert!(elsewhere.is_file());
}
