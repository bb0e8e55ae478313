//! The cpal adapter on a real ALSA device: the `null` sink, which accepts audio unpaced.

use std::time::{Duration, Instant};

use std::sync::Arc;

use stemdeck_playback::{MemoryStems, OutputDevice, StemAudio, mixer};

#[test]
fn the_null_output_pulls_frames_from_the_mixer() {
    let device = match OutputDevice::by_id("null", 44100) {
        Ok(device) => device,
        Err(e) => panic!("ALSA's null output should exist wherever libasound2 is installed: {e}"),
    };
    let rate = device.sample_rate();
    let tone = StemAudio {
        name: "tone".into(),
        left: vec![0.25; rate as usize * 600],
        right: vec![0.25; rate as usize * 600],
    };
    let (mut control, renderer) = mixer(Arc::new(MemoryStems::new(vec![tone])), rate);
    control.play().unwrap();
    let output = device.start(renderer).expect("the null output starts");
    let started = Instant::now();
    while control.position() < 4096 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "{} at {} Hz pulled {} frames",
        output.device_name(),
        output.sample_rate(),
        control.position()
    );
    assert!(
        control.position() >= 4096,
        "the device pulled only {} frames",
        control.position()
    );
    assert!(control.is_playing());
}
