//! What tempo and pitch cost on one core: renders a real song's stems through the mixer at
//! 75 % and -2 semitones, as the audio callback would, and prints the time it took as a
//! share of the audio's duration.
//!
//! `cargo run --release -p stemdeck-playback --example stretch_cost -- <stem.wav>...`
//!
//! With `STRETCH_WAV_DIR` set, each setting's output is also written there as a WAV, to
//! listen to or to look at (`sox x.wav -n spectrogram`).

use std::sync::Arc;
use std::time::Instant;

use stemdeck_playback::{MemoryStems, StemAudio, TempoPitch, mixer};

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        !paths.is_empty(),
        "give one or more 44.1 kHz stereo WAV stems"
    );
    let stems: Vec<StemAudio> = paths
        .iter()
        .map(|path| {
            let mut reader = hound::WavReader::open(path).expect("a WAV file");
            let scale = 1.0 / (1u32 << (reader.spec().bits_per_sample - 1)) as f32;
            let samples: Vec<f32> = reader
                .samples::<i32>()
                .map(|s| s.expect("readable samples") as f32 * scale)
                .collect();
            StemAudio {
                name: path.clone(),
                left: samples.iter().step_by(2).copied().collect(),
                right: samples.iter().skip(1).step_by(2).copied().collect(),
            }
        })
        .collect();
    let frames = stems[0].left.len();
    for (tempo, semitones) in [(1.0, 0.0), (0.75, -2.0), (1.25, 3.0)] {
        let (mut control, mut renderer) = mixer(Arc::new(MemoryStems::new(stems.clone())), 44_100);
        control
            .set_tempo_pitch(TempoPitch { tempo, semitones })
            .unwrap();
        control.play().unwrap();
        let mut block = vec![0f32; 512 * 2];
        let mut rendered = 0usize;
        let mut secs = 0f64;
        let mut heard: Vec<f32> = Vec::new();
        let mut worst = 0f64;
        loop {
            let pull = Instant::now();
            renderer.render(&mut block);
            let took = pull.elapsed().as_secs_f64();
            if control.is_waiting() {
                // Rendering far faster than real time outruns the feeder thread; such a
                // pull played nothing and is not counted.
                std::thread::sleep(std::time::Duration::from_millis(2));
                continue;
            }
            secs += took;
            worst = worst.max(took);
            heard.extend_from_slice(&block);
            rendered += 512;
            if !renderer.is_playing() {
                break;
            }
        }
        let audio = rendered as f64 / 44_100.0;
        if let Some(dir) = std::env::var_os("STRETCH_WAV_DIR") {
            let path = std::path::Path::new(&dir).join(format!(
                "tempo{:.0}_pitch{semitones:+.0}.wav",
                tempo * 100.0
            ));
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: 44_100,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut writer = hound::WavWriter::create(&path, spec).expect("a writable folder");
            for v in &heard {
                writer.write_sample(*v).expect("room on disk");
            }
            writer.finalize().expect("room on disk");
        }
        println!(
            "tempo {:>4.0} %, {:+.0} st: {:.1} s of output ({:.1} s of song) in {:.2} s of one core = {:.1} % of real time; slowest 512-frame pull {:.2} ms (budget {:.2} ms)",
            tempo * 100.0,
            semitones,
            audio,
            frames as f64 / 44_100.0,
            secs,
            100.0 * secs / audio,
            worst * 1e3,
            512.0 / 44.1
        );
    }
}
