//! The metronome: a short woodblock-like click on each beat, higher on the first beat of
//! a bar, mixed after tempo and pitch so that it always sounds the same.

/// Beats in the bar the count-in plays (Stemdeck counts in 4/4).
pub const BEATS_PER_BAR: usize = 4;
const CLICK_SECS: f32 = 0.035;
const VOICES: usize = 4;

/// Where a song's beats fall, in frames of the stems, and its tempo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BeatGrid {
    pub bpm: f64,
    pub frames: Vec<u64>,
}

impl BeatGrid {
    /// The first beat at or after `frame`.
    fn first_from(&self, frame: u64) -> usize {
        self.frames.partition_point(|&b| b < frame)
    }

    /// Calls `each(beat number, frame)` for every beat in `[from, to)`.
    pub(crate) fn each_between(&self, from: u64, to: u64, mut each: impl FnMut(usize, u64)) {
        let mut i = self.first_from(from);
        while let Some(&frame) = self.frames.get(i) {
            if frame >= to {
                break;
            }
            each(i, frame);
            i += 1;
        }
    }
}

pub(crate) struct Click {
    accent: Vec<f32>,
    plain: Vec<f32>,
    /// Sounding clicks: (which sound, frames into it, frames before it starts).
    voices: [(bool, usize, usize); VOICES],
    active: usize,
}

impl Click {
    pub(crate) fn new(sample_rate: u32) -> Self {
        let sound = |hz: f32| -> Vec<f32> {
            let n = (CLICK_SECS * sample_rate as f32) as usize;
            (0..n)
                .map(|i| {
                    let t = i as f32 / sample_rate as f32;
                    let attack = (t * 2000.0).min(1.0);
                    (std::f32::consts::TAU * hz * t).sin() * attack * (-t * 90.0).exp()
                })
                .collect()
        };
        Self {
            accent: sound(1760.0),
            plain: sound(1320.0),
            voices: [(false, 0, 0); VOICES],
            active: 0,
        }
    }

    /// Schedules a click `delay` frames into the next [`Self::mix_into`].
    pub(crate) fn trigger(&mut self, accent: bool, delay: usize) {
        if self.active == VOICES {
            // The oldest click is nearly over; it gives way.
            self.voices.rotate_left(1);
            self.active -= 1;
        }
        self.voices[self.active] = (accent, 0, delay);
        self.active += 1;
    }

    /// Adds the sounding clicks at `volume` to `out` (interleaved stereo).
    pub(crate) fn mix_into(&mut self, out: &mut [f32], volume: f32) {
        let frames = out.len() / 2;
        let mut v = 0;
        while v < self.active {
            let (accent, ref mut at, ref mut delay) = self.voices[v];
            let sound = if accent { &self.accent } else { &self.plain };
            let start = (*delay).min(frames);
            let n = (sound.len() - *at).min(frames - start);
            for (i, s) in sound[*at..*at + n].iter().enumerate() {
                out[(start + i) * 2] += s * volume;
                out[(start + i) * 2 + 1] += s * volume;
            }
            *delay -= start;
            *at += n;
            if *at >= sound.len() {
                self.voices.copy_within(v + 1..self.active, v);
                self.active -= 1;
            } else {
                v += 1;
            }
        }
    }

    pub(crate) fn silence(&mut self) {
        self.active = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_starts_on_its_frame_across_pulls() {
        let mut click = Click::new(44_100);
        click.trigger(true, 700);
        let mut out = vec![0f32; 512 * 2];
        click.mix_into(&mut out, 1.0);
        assert!(out.iter().all(|v| *v == 0.0), "nothing before frame 700");
        out.fill(0.0);
        click.mix_into(&mut out, 1.0);
        let first = out.chunks(2).position(|f| f[0] != 0.0).unwrap();
        assert_eq!(
            first,
            700 - 512 + 1,
            "the attack's first sample is 0, the next sounds"
        );
    }

    #[test]
    fn the_grid_lists_beats_in_a_range() {
        let grid = BeatGrid {
            bpm: 120.0,
            frames: vec![100, 200, 300, 400],
        };
        let mut seen = Vec::new();
        grid.each_between(150, 400, |i, f| seen.push((i, f)));
        assert_eq!(seen, [(1, 200), (2, 300)]);
    }
}
