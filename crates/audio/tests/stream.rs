//! The streaming paths against the whole-file ones: decoding (and resampling to the model's
//! rate) block by block gives exactly the whole-file result, and a file written block by
//! block is byte for byte the one `write_audio` writes, appearing only when finished.

use std::path::Path;
use std::process::Command;

use stemdeck_audio::{
    AudioBuffer, AudioWriter, FlacDepth, OutputFormat, Tags, WavFormat, decode, decode_file,
    load_for_model, open_for_model, write_audio,
};

fn signal(rate: u32, frames: usize) -> Vec<Vec<f32>> {
    (0..2)
        .map(|c| {
            (0..frames)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    0.4 * (2.0 * std::f32::consts::PI * 330.0 * t + c as f32).sin()
                        + 0.1 * (((i * 7919) % 101) as f32 / 101.0 - 0.5)
                })
                .collect()
        })
        .collect()
}

fn write_float_wav(path: &Path, rate: u32, frames: usize) {
    write_audio(
        path,
        &AudioBuffer::new(rate, signal(rate, frames)),
        OutputFormat::Wav(WavFormat::Float32),
        &Tags::default(),
    )
    .unwrap();
}

fn ffmpeg(input: &Path, output: &Path, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(output)
        .status()
        .expect("ffmpeg is needed for these tests (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed for {output:?}");
}

fn collect_model_stream(path: &Path) -> (Vec<Vec<f32>>, usize) {
    let mut stream = open_for_model(path, 44100).unwrap();
    assert_eq!(stream.sample_rate(), 44100);
    let mut out = vec![Vec::new(); 2];
    let mut blocks = 0;
    while let Some(block) = stream.next_block().unwrap() {
        assert!(!block[0].is_empty() && block[0].len() == block[1].len());
        blocks += 1;
        for (o, b) in out.iter_mut().zip(block) {
            o.extend(b);
        }
    }
    assert!(
        stream.next_block().unwrap().is_none(),
        "the end stays the end"
    );
    (out, blocks)
}

#[test]
fn decoding_and_resampling_block_by_block_gives_the_whole_file_result() {
    let dir = tempfile::tempdir().unwrap();
    let wav44 = dir.path().join("a44.wav");
    let wav48 = dir.path().join("a48.wav");
    write_float_wav(&wav44, 44100, 150_000 + 17);
    write_float_wav(&wav48, 48000, 160_000 + 3);
    let mp3 = dir.path().join("a48.mp3");
    ffmpeg(&wav48, &mp3, &["-c:a", "libmp3lame", "-b:a", "192k"]);
    let m4a = dir.path().join("a44.m4a");
    ffmpeg(&wav44, &m4a, &["-c:a", "aac", "-b:a", "192k"]);
    let mono = dir.path().join("mono.flac");
    ffmpeg(&wav48, &mono, &["-ac", "1"]);
    for path in [&wav44, &wav48, &mp3, &m4a, &mono] {
        let whole = load_for_model(path, 44100).unwrap();
        let (streamed, blocks) = collect_model_stream(path);
        assert!(blocks > 10, "{path:?} came in {blocks} blocks");
        assert_eq!(streamed[0].len(), whole.frames(), "{path:?}");
        assert!(streamed == whole.channels, "{path:?} differs");
    }
    // At the model's rate the decoder's own blocks pass through.
    let mut stream = decode::open(&wav44).unwrap();
    assert_eq!(stream.sample_rate(), 44100);
    let mut frames = 0;
    while let Some(block) = stream.next_block().unwrap() {
        frames += block.frames();
    }
    assert_eq!(frames, decode_file(&wav44).unwrap().frames());
}

#[test]
fn streaming_errors_are_the_whole_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("song.wav");
    write_float_wav(&wav, 44100, 44100);
    let bytes = std::fs::read(&wav).unwrap();
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let missing = dir.path().join("missing.wav");
    for path in [&truncated, &missing] {
        let whole = decode_file(path).unwrap_err().to_string();
        let streamed = (|| {
            let mut stream = open_for_model(path, 44100)?;
            while stream.next_block()?.is_some() {}
            Ok::<_, stemdeck_audio::AudioError>(())
        })()
        .unwrap_err()
        .to_string();
        assert_eq!(streamed, whole);
    }
}

fn tags() -> Tags {
    Tags {
        title: Some("Night Drive".into()),
        stem: Some("bass".into()),
        source: Some("/music/night drive.flac".into()),
    }
}

/// Writes `audio` through an `AudioWriter` in blocks of odd sizes.
fn write_in_blocks(path: &Path, audio: &AudioBuffer, format: OutputFormat, total: Option<u64>) {
    let mut writer = AudioWriter::create(
        path,
        format,
        audio.sample_rate,
        audio.num_channels(),
        &tags(),
        total,
    )
    .unwrap();
    assert!(
        !path.exists(),
        "nothing under the final name before the end"
    );
    let mut at = 0;
    for size in [1usize, 999, 4096, 70_000].iter().cycle() {
        if at >= audio.frames() {
            break;
        }
        let end = (at + size).min(audio.frames());
        let block: Vec<Vec<f32>> = audio.channels.iter().map(|c| c[at..end].to_vec()).collect();
        writer.write(&block).unwrap();
        at = end;
    }
    assert_eq!(writer.frames(), audio.frames() as u64);
    writer.finish().unwrap();
}

#[test]
fn a_file_written_block_by_block_is_the_file_write_audio_writes() {
    let dir = tempfile::tempdir().unwrap();
    let audio = AudioBuffer::new(44100, signal(44100, 2 * 44100 + 3217));
    let mono = AudioBuffer::new(48000, vec![signal(48000, 50_001)[0].clone()]);
    for (name, audio, format) in [
        ("i16.wav", &audio, OutputFormat::Wav(WavFormat::Int16)),
        ("i24.wav", &audio, OutputFormat::Wav(WavFormat::Int24)),
        ("f32.wav", &audio, OutputFormat::Wav(WavFormat::Float32)),
        ("b16.flac", &audio, OutputFormat::Flac(FlacDepth::Bits16)),
        ("b24.flac", &audio, OutputFormat::Flac(FlacDepth::Bits24)),
        ("cbr.mp3", &audio, OutputFormat::Mp3 { kbps: 320 }),
        ("mono.mp3", &mono, OutputFormat::Mp3 { kbps: 128 }),
    ] {
        let whole = dir.path().join(format!("whole-{name}"));
        let streamed = dir.path().join(format!("streamed-{name}"));
        write_audio(&whole, audio, format, &tags()).unwrap();
        write_in_blocks(&streamed, audio, format, Some(audio.frames() as u64));
        assert!(
            std::fs::read(&whole).unwrap() == std::fs::read(&streamed).unwrap(),
            "{name}: the streamed file differs"
        );
    }
    // FLAC without the length up front still states it once finished.
    let unknown = dir.path().join("unknown-length.flac");
    write_in_blocks(
        &unknown,
        &audio,
        OutputFormat::Flac(FlacDepth::Bits24),
        None,
    );
    let back = decode_file(&unknown).unwrap();
    assert_eq!(back.frames(), audio.frames());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_unfinished_writer_leaves_nothing_and_bad_blocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stems").join("vocals.flac");
    let mut writer = AudioWriter::create(
        &target,
        OutputFormat::Flac(FlacDepth::Bits16),
        44100,
        2,
        &tags(),
        None,
    )
    .unwrap();
    writer.write(&signal(44100, 10_000)).unwrap();
    let err = writer
        .write(&[vec![0.0; 10], vec![0.0; 9]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("equally long channels"), "{err}");
    assert_eq!(writer.path(), target);
    drop(writer);
    assert!(!target.exists());
    let left: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the temporary file is removed: {left:?}");

    let err = AudioWriter::create(
        &dir.path().join("x.mp3"),
        OutputFormat::Mp3 { kbps: 100 },
        44100,
        2,
        &tags(),
        None,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("not offered"), "{err}");
    let err = AudioWriter::create(
        &dir.path().join("six.mp3"),
        OutputFormat::Mp3 { kbps: 320 },
        44100,
        6,
        &tags(),
        None,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("mono or stereo"), "{err}");
    assert!(!dir.path().join("x.mp3").exists() && !dir.path().join("six.mp3").exists());
}
