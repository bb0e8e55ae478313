//! Any bytes, under any of the extensions users drop, through the decoder's entry point:
//! it must return audio or an error, never panic, hang or run out of memory.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

/// The extension is only a hint to the probe; the first byte picks it.
const EXTENSIONS: [&str; 12] = [
    "wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "mkv", "webm", "aiff", "caf", "mp4",
];

/// Stops reading a stream that decodes to more than this (a minute at 48 kHz): a valid
/// file's length is not the point, and the fuzzer's time is better spent elsewhere.
const MAX_FRAMES: usize = 48_000 * 60;

fuzz_target!(|data: &[u8]| {
    // libFuzzer's hook aborts on any panic, even one the decoder catches: a panic inside
    // symphonia is caught by `DecodeStream` and the file refused (a regression test keeps
    // the input that showed it). Panics anywhere else still reach libFuzzer and abort.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let name = PathBuf::from(format!(
        "fuzz.{}",
        EXTENSIONS[pick as usize % EXTENSIONS.len()]
    ));
    let Ok(mut stream) = stemdeck_audio::decode::open_bytes(bytes.to_vec(), &name) else {
        return;
    };
    let mut frames = 0;
    while let Ok(Some(block)) = stream.next_block() {
        assert_eq!(block.num_channels(), 2, "every block is stereo");
        assert!(
            block.channels.iter().flatten().all(|s| s.is_finite()),
            "every sample is a number"
        );
        frames += block.frames();
        if frames > MAX_FRAMES {
            break;
        }
    }
});
