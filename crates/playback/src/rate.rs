//! Playing stems on a device that runs at another rate (a 48 kHz-only card for 44.1 kHz
//! stems): the mix is rendered at the stems' rate and converted on its way out by rubato's
//! FFT resampler, in fixed chunks kept in a small queue, so that the renderer's position
//! stays in the stems' own frames.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};

use crate::mixer::MixerRenderer;

/// Device frames produced per resampler call.
const CHUNK_FRAMES: usize = 512;

/// Pulls the renderer at its own rate and hands out interleaved stereo at the device's.
pub struct RateAdapter {
    resampler: Fft<f32>,
    rendered: Vec<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    queue: VecDeque<f32>,
}

impl RateAdapter {
    /// `None` when rubato cannot convert between the two rates.
    pub fn new(stems_rate: u32, device_rate: u32) -> Option<Self> {
        let resampler = Fft::<f32>::new(
            stems_rate as usize,
            device_rate as usize,
            CHUNK_FRAMES,
            2,
            FixedSync::Output,
        )
        .ok()?;
        let input_max = resampler.input_frames_max();
        let output_max = resampler.output_frames_max();
        Some(Self {
            resampler,
            rendered: vec![0.0; 2 * input_max],
            input: vec![vec![0.0; input_max]; 2],
            output: vec![vec![0.0; output_max]; 2],
            queue: VecDeque::with_capacity(4 * output_max + 8192),
        })
    }

    /// Fills `out` (interleaved stereo at the device's rate) from `renderer`.
    pub fn render(&mut self, renderer: &mut MixerRenderer, out: &mut [f32]) {
        while self.queue.len() < out.len() {
            let needed = self.resampler.input_frames_next();
            let rendered = &mut self.rendered[..2 * needed];
            renderer.render(rendered);
            for (i, frame) in rendered.chunks_exact(2).enumerate() {
                self.input[0][i] = frame[0];
                self.input[1][i] = frame[1];
            }
            let written = {
                let Ok(input) = SequentialSliceOfVecs::new(&self.input, 2, needed) else {
                    break;
                };
                let len = self.output[0].len();
                let Ok(mut output) = SequentialSliceOfVecs::new_mut(&mut self.output, 2, len)
                else {
                    break;
                };
                match self
                    .resampler
                    .process_into_buffer(&input, &mut output, None)
                {
                    Ok((_, written)) => written,
                    Err(_) => break,
                }
            };
            for i in 0..written {
                self.queue.push_back(self.output[0][i]);
                self.queue.push_back(self.output[1][i]);
            }
        }
        for v in out.iter_mut() {
            *v = self.queue.pop_front().unwrap_or(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mixer::mixer;
    use crate::source::{MemoryStems, StemAudio};

    #[test]
    fn a_44_1_khz_mix_plays_at_48_khz_at_the_same_pitch_and_pace() {
        let rate = 44_100;
        let frames = rate as usize * 3;
        let tone: Vec<f32> = (0..frames)
            .map(|i| 0.5 * (i as f32 * std::f32::consts::TAU * 1000.0 / rate as f32).sin())
            .collect();
        let stem = StemAudio {
            name: "tone".into(),
            left: tone.clone(),
            right: tone,
        };
        let (mut control, mut renderer) = mixer(Arc::new(MemoryStems::new(vec![stem])), rate);
        control.play().unwrap();
        let mut adapter = RateAdapter::new(rate, 48_000).unwrap();
        // Let the feeder read ahead, then play one second of device time.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut out = Vec::new();
        let mut block = vec![0f32; 2 * 480];
        for _ in 0..100 {
            adapter.render(&mut renderer, &mut block);
            out.extend_from_slice(&block);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let played = control.position() as f64 / rate as f64;
        assert!(
            (played - 1.0).abs() < 0.05,
            "one second of device time played {played} s of the song"
        );
        // Count zero crossings over the last half second: a 1 kHz tone has 1000 per second.
        let left: Vec<f32> = out.iter().step_by(2).copied().skip(24_000).collect();
        let crossings = left
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!(
            (495..=505).contains(&crossings),
            "{crossings} rising crossings in 0.5 s"
        );
    }
}
