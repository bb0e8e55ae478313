//! Every output format written by us and read back by our own decoder and by ffmpeg/sox:
//! the length matches to the sample (gapless), the level matches within the codec's
//! tolerance, and the tags are where players look for them.

use std::path::Path;
use std::process::Command;

use stemdeck_audio::{
    AudioBuffer, FlacDepth, OutputFormat, Tags, WavFormat, decode_file, write_audio,
};

const RATE: u32 = 44100;
// Not a multiple of any codec frame (1152 for MP3, 4096 for FLAC blocks).
const FRAMES: usize = 2 * 44100 + 3217;

fn stem() -> AudioBuffer {
    let f = |i: usize, phase: f32| {
        let t = i as f32 / RATE as f32;
        let onset = t % 0.3;
        let burst = if onset < 0.01 {
            0.3 * (-onset * 500.0).exp()
        } else {
            0.0
        };
        0.35 * (2.0 * std::f32::consts::PI * 220.0 * t + phase).sin()
            + 0.15 * (2.0 * std::f32::consts::PI * 1375.0 * t).sin()
            + burst
    };
    AudioBuffer::new(
        RATE,
        vec![
            (0..FRAMES).map(|i| f(i, 0.0)).collect(),
            (0..FRAMES).map(|i| f(i, 0.9)).collect(),
        ],
    )
}

fn tags() -> Tags {
    Tags {
        title: Some("Night Drive".into()),
        stem: Some("vocals".into()),
        source: Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ".into()),
    }
}

fn tool(name: &str) -> Command {
    assert!(
        Command::new(name).arg("-h").output().is_ok(),
        "{name} is needed for this test (scripts/setup-system.sh installs it)"
    );
    Command::new(name)
}

/// ffprobe's view of the file: codec, rate, channels, sample format and tags (as JSON text).
fn ffprobe(path: &Path) -> serde_json::Value {
    let out = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What ffmpeg decodes, as planar f32 (it applies the MP3 encoder delay and padding).
fn ffmpeg_decode(path: &Path) -> Vec<Vec<f32>> {
    let out = tool("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-acodec", "pcm_f32le", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let interleaved: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (0..2)
        .map(|c| interleaved.iter().skip(c).step_by(2).copied().collect())
        .collect()
}

/// The sample count sox reports.
fn sox_samples(path: &Path) -> usize {
    let out = tool("sox").args(["--i", "-s"]).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn max_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Signal-to-error ratio in dB: how closely a lossy decode follows the original.
fn snr_db(reference: &[Vec<f32>], decoded: &[Vec<f32>]) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (x, y) in reference.iter().zip(decoded) {
        for (p, q) in x.iter().zip(y) {
            signal += (*p as f64).powi(2);
            noise += ((p - q) as f64).powi(2);
        }
    }
    10.0 * (signal / noise.max(1e-20)).log10()
}

fn tag<'a>(probe: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    let tags = probe["format"]["tags"].as_object()?;
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

fn write(format: OutputFormat) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("vocals.{}", format.extension()));
    write_audio(&path, &stem(), format, &tags()).unwrap();
    (dir, path)
}

#[test]
fn wav_in_every_sample_format_round_trips_exactly_with_its_tags() {
    let reference = stem();
    for (format, bits, tolerance, codec) in [
        (WavFormat::Int16, 16, 1.0 / 32768.0, "pcm_s16le"),
        (WavFormat::Int24, 24, 1.0 / 8_388_608.0, "pcm_s24le"),
        (WavFormat::Float32, 32, 0.0, "pcm_f32le"),
    ] {
        let (_dir, path) = write(OutputFormat::Wav(format));
        let ours = decode_file(&path).unwrap();
        assert_eq!(ours.frames(), FRAMES, "{format:?}");
        assert!(
            max_error(&ours.channels, &reference.channels) <= tolerance,
            "{format:?}"
        );
        assert_eq!(sox_samples(&path), FRAMES, "{format:?}");
        let theirs = ffmpeg_decode(&path);
        assert_eq!(theirs[0].len(), FRAMES);
        assert!(
            max_error(&theirs, &reference.channels) <= tolerance,
            "{format:?}"
        );

        let probe = ffprobe(&path);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], codec);
        assert_eq!(stream["sample_rate"], "44100");
        assert_eq!(stream["channels"], 2);
        assert_eq!(stream["bits_per_sample"], bits);
        assert_eq!(tag(&probe, "title"), Some("Night Drive (vocals)"));
        assert_eq!(tag(&probe, "album"), Some("Night Drive"));
        assert_eq!(
            tag(&probe, "comment"),
            Some("stem: vocals; source: https://www.youtube.com/watch?v=dQw4w9WgXcQ")
        );
    }
}

#[test]
fn flac_16_and_24_bit_are_lossless_to_their_depth_with_vorbis_comments() {
    let reference = stem();
    for (depth, tolerance, sample_fmt) in [
        (FlacDepth::Bits16, 1.0 / 32768.0, "s16"),
        (FlacDepth::Bits24, 1.0 / 8_388_608.0, "s32"),
    ] {
        let (_dir, path) = write(OutputFormat::Flac(depth));
        let wav_size = FRAMES * 2 * depth.bits() as usize / 8;
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(
            size < wav_size,
            "FLAC compresses: {size} of {wav_size} bytes"
        );

        let ours = decode_file(&path).unwrap();
        assert_eq!(ours.frames(), FRAMES, "{depth:?}");
        assert!(
            max_error(&ours.channels, &reference.channels) <= tolerance,
            "{depth:?}"
        );
        assert_eq!(sox_samples(&path), FRAMES, "{depth:?}");
        let theirs = ffmpeg_decode(&path);
        assert_eq!(theirs[0].len(), FRAMES);
        assert!(
            max_error(&theirs, &reference.channels) <= tolerance,
            "{depth:?}"
        );

        let probe = ffprobe(&path);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "flac");
        assert_eq!(stream["sample_fmt"], sample_fmt);
        assert_eq!(stream["bits_per_raw_sample"], depth.bits().to_string());
        assert_eq!(stream["duration_ts"], FRAMES);
        assert_eq!(tag(&probe, "title"), Some("Night Drive (vocals)"));
        assert_eq!(tag(&probe, "album"), Some("Night Drive"));
        assert_eq!(tag(&probe, "stem"), Some("vocals"));
        assert_eq!(
            tag(&probe, "source"),
            Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
        );
    }
}

#[test]
fn mp3_is_constant_bitrate_and_gapless_to_the_sample_in_our_decoder_and_ffmpeg() {
    let reference = stem();
    for kbps in [128, 320] {
        let (_dir, path) = write(OutputFormat::Mp3 { kbps });
        let probe = ffprobe(&path);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "mp3");
        assert_eq!(stream["sample_rate"], "44100");
        assert_eq!(stream["channels"], 2);
        assert_eq!(stream["bit_rate"], (kbps * 1000).to_string(), "CBR");
        assert_eq!(tag(&probe, "title"), Some("Night Drive (vocals)"));
        assert_eq!(tag(&probe, "album"), Some("Night Drive"));
        assert_eq!(tag(&probe, "STEM"), Some("vocals"));
        assert_eq!(
            tag(&probe, "SOURCE"),
            Some("https://www.youtube.com/watch?v=dQw4w9WgXcQ")
        );

        // The LAME Info frame: the encoder delay and padding gapless players honour.
        let bytes = std::fs::read(&path).unwrap();
        let info = bytes
            .windows(4)
            .position(|w| w == b"Info")
            .expect("an Info frame");
        let lame = info + 120;
        assert_eq!(
            &bytes[lame..lame + 4],
            b"LAME",
            "the LAME extension follows"
        );
        let delay_padding = &bytes[lame + 21..lame + 24];
        let delay = ((delay_padding[0] as usize) << 4) | (delay_padding[1] as usize >> 4);
        let padding = ((delay_padding[1] as usize & 0xF) << 8) | delay_padding[2] as usize;
        assert_eq!(delay, 576, "LAME's encoder delay");
        let mp3_frames = (FRAMES + delay + padding) / 1152;
        assert_eq!(
            (FRAMES + delay + padding) % 1152,
            0,
            "delay + audio + padding fill whole frames"
        );
        assert!(mp3_frames > FRAMES / 1152);

        for (who, decoded) in [
            ("ours", decode_file(&path).unwrap().channels),
            ("ffmpeg", ffmpeg_decode(&path)),
        ] {
            assert_eq!(
                decoded[0].len(),
                FRAMES,
                "{who} at {kbps} kbps: gapless length"
            );
            let snr = snr_db(&reference.channels, &decoded);
            println!("{kbps} kbps, {who}: SNR {snr:.1} dB");
            // Aligned to the sample: a shift of even one sample would drop this below 10 dB.
            assert!(snr > 18.0, "{who} at {kbps} kbps: SNR {snr:.1} dB");
        }
    }
}

#[test]
fn bad_settings_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocals.mp3");
    let err = write_audio(
        &path,
        &stem(),
        OutputFormat::Mp3 { kbps: 300 },
        &Tags::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MP3 bitrate 300 kbps is not offered; choose 128, 160, 192, 224, 256 or 320"
    );
    let six = AudioBuffer::new(RATE, vec![vec![0.0; 100]; 6]);
    let err = write_audio(
        &path,
        &six,
        OutputFormat::Mp3 { kbps: 320 },
        &Tags::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("mono or stereo"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
