//! Runs the real htdemucs forward pass on segments of noise-free synthetic audio and prints
//! the op-level profile: `cargo run --release -p stemdeck-demucs --example profile_forward --
//! WEIGHTS.safetensors [SEGMENTS] [fast|exact]`. Pass `RAYON_NUM_THREADS` to pin the thread
//! count.

use std::time::Instant;

use stemdeck_demucs::{Checkpoint, Device, HTDemucs, Precision, profile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .ok_or("usage: profile_forward WEIGHTS [SEGMENTS] [fast|exact]")?;
    let segments: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let precision: Precision = args
        .next()
        .map_or(Ok(Precision::recommended()), |s| s.parse())?;
    let checkpoint = Checkpoint::from_bytes(&std::fs::read(&weights)?)?;
    let model = HTDemucs::from_checkpoint_with(&checkpoint, &Device::Cpu, precision)?;
    eprintln!("precision: {}", model.precision().name());
    drop(checkpoint);
    eprintln!("after load: {}", memory());
    let length = model.config().segment_samples();
    // A chord with a beat: deterministic, and busy in every band the model looks at.
    let signal: Vec<f32> = (0..2 * length)
        .map(|i| {
            let t = (i % length) as f32 / 44_100.0;
            let beat = (-((t * 2.0).fract()) * 8.0).exp();
            0.2 * (2.0 * std::f32::consts::PI * 110.0 * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                + 0.1 * beat * (2.0 * std::f32::consts::PI * 60.0 * t).sin()
        })
        .collect();
    let input = candle_core::Tensor::from_vec(signal, (1, 2, length), &Device::Cpu)?;
    // The first pass warms allocations and thread pools; profile the rest.
    model.forward(&input)?;
    eprintln!("after one segment: {}", memory());
    profile::enable(true);
    profile::reset();
    let start = Instant::now();
    for _ in 0..segments {
        model.forward(&input)?;
    }
    let per = start.elapsed().as_secs_f64() / segments as f64;
    println!("{per:.2} s per {:.1} s segment", length as f64 / 44_100.0);
    if let Some(report) = profile::report() {
        print!("{report}");
    }
    Ok(())
}

/// Resident and peak resident memory, from /proc (Linux), for watching the working set.
fn memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|_| "unknown".into())
}
