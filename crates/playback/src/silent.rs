//! Playback without a sound card: a thread pulls the mix at real-time pace and discards
//! it, so the transport, seeking, looping and the stem controls behave exactly as with a
//! device while the app tells the user that nothing is audible.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mixer::MixerRenderer;

/// Frames rendered per pull, like a typical device buffer.
const BLOCK_FRAMES: usize = 512;

pub struct SilentOutput {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    sample_rate: u32,
}

impl SilentOutput {
    /// Pulls `renderer` at `sample_rate` frames per second of wall-clock time.
    pub fn start(mut renderer: MixerRenderer, sample_rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("stemdeck-silent-clock".into())
                .spawn(move || {
                    let started = Instant::now();
                    let mut pulled: u64 = 0;
                    let mut block = vec![0f32; BLOCK_FRAMES * 2];
                    while !stop.load(Ordering::Relaxed) {
                        let due = (started.elapsed().as_secs_f64() * sample_rate as f64) as u64;
                        while pulled + BLOCK_FRAMES as u64 <= due {
                            renderer.render(&mut block);
                            pulled += BLOCK_FRAMES as u64;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .ok()
        };
        Self {
            stop,
            thread,
            sample_rate,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
}

impl Drop for SilentOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::mixer;
    use crate::source::{MemoryStems, StemAudio};
    use std::sync::Arc;

    #[test]
    fn the_silent_clock_advances_at_real_time_pace() {
        let rate = 44100;
        let stem = StemAudio {
            name: "a".into(),
            left: vec![0.1; rate as usize * 30],
            right: vec![0.1; rate as usize * 30],
        };
        let (mut control, renderer) = mixer(Arc::new(MemoryStems::new(vec![stem])), rate);
        control.play().unwrap();
        let output = SilentOutput::start(renderer, rate);
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(400));
        let position = control.position() as f64 / rate as f64;
        let elapsed = started.elapsed().as_secs_f64();
        // Paced, not unpaced: within a few blocks of the wall clock, never ahead of it.
        assert!(
            position <= elapsed + 0.02,
            "{position} s played in {elapsed} s"
        );
        assert!(position >= 0.2, "only {position} s played in {elapsed} s");
        drop(output);
        let stopped_at = control.position();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            control.position(),
            stopped_at,
            "dropping the output stops it"
        );
    }
}
