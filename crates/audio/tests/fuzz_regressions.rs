//! Every input the decode fuzzer (`scripts/fuzz.sh`) crashed on, kept in
//! `tests/fuzz-regressions/`: each must now be decoded or refused with an error, and a
//! decoded block must be stereo and finite, as the fuzz target checks.

use std::path::{Path, PathBuf};

/// The fuzz target's extension hints, picked by the first byte.
const EXTENSIONS: [&str; 12] = [
    "wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "mkv", "webm", "aiff", "caf", "mp4",
];

#[test]
fn every_input_the_fuzzer_crashed_on_is_decoded_or_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let (&pick, bytes) = data.split_first().unwrap();
        let name = PathBuf::from(format!(
            "fuzz.{}",
            EXTENSIONS[pick as usize % EXTENSIONS.len()]
        ));
        let outcome =
            stemdeck_audio::decode::open_bytes(bytes.to_vec(), &name).and_then(|mut stream| {
                let mut frames = 0;
                while let Some(block) = stream.next_block()? {
                    assert_eq!(block.num_channels(), 2);
                    assert!(block.channels.iter().flatten().all(|s| s.is_finite()));
                    frames += block.frames();
                }
                Ok(frames)
            });
        println!("{}: {outcome:?}", file.display());
        if let Err(e) = outcome {
            assert!(e.to_string().starts_with("fuzz."), "names the file: {e}");
        }
    }
}
