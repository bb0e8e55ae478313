//! Waveform overviews for the UI: the lowest and highest sample of each of `buckets`
//! equal slices of the track, over all channels.

use crate::buffer::AudioBuffer;

/// `(min, max)` per bucket; fewer buckets than requested only when the audio is shorter
/// than that many frames.
pub fn waveform_peaks(audio: &AudioBuffer, buckets: usize) -> Vec<(f32, f32)> {
    let mut peaks = PeakBuilder::new(audio.frames() as u64, buckets);
    peaks.add(0, &audio.channels);
    peaks.peaks().to_vec()
}

/// [`waveform_peaks`] of a track that arrives a block at a time (while it is separated or
/// decoded), for a track whose length is known up front.
#[derive(Debug, Clone)]
pub struct PeakBuilder {
    frames: u64,
    peaks: Vec<(f32, f32)>,
}

impl PeakBuilder {
    /// Buckets for a track of `frames` frames: `buckets`, or one per frame when shorter.
    pub fn new(frames: u64, buckets: usize) -> Self {
        let buckets = (buckets as u64).min(frames) as usize;
        Self {
            frames,
            peaks: vec![(0.0, 0.0); buckets],
        }
    }

    /// Takes the frames of `block` (planar) that start at frame `start` of the track.
    pub fn add(&mut self, start: u64, block: &[Vec<f32>]) {
        let buckets = self.peaks.len() as u64;
        if buckets == 0 {
            return;
        }
        let len = block.iter().map(Vec::len).min().unwrap_or(0) as u64;
        let end = (start + len).min(self.frames);
        let mut frame = start;
        while frame < end {
            // Frame f lies in bucket b when b * frames / buckets <= f < (b + 1) * frames / buckets.
            let bucket = ((frame + 1) * buckets - 1) / self.frames;
            let bucket_end = ((bucket + 1) * self.frames / buckets).min(end);
            let (from, to) = ((frame - start) as usize, (bucket_end - start) as usize);
            let slot = &mut self.peaks[bucket as usize];
            for channel in block {
                *slot = channel[from..to]
                    .iter()
                    .fold(*slot, |(lo, hi), &v| (lo.min(v), hi.max(v)));
            }
            frame = bucket_end;
        }
    }

    pub fn peaks(&self) -> &[(f32, f32)] {
        &self.peaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_holds_the_extremes_of_its_slice_over_all_channels() {
        let left = vec![0.1, -0.5, 0.2, 0.0, 0.9, 0.3];
        let right = vec![0.0, 0.0, -0.1, 0.7, 0.0, -0.8];
        let peaks = waveform_peaks(&AudioBuffer::new(44100, vec![left, right]), 3);
        assert_eq!(peaks, vec![(-0.5, 0.1), (-0.1, 0.7), (-0.8, 0.9)]);
    }

    #[test]
    fn short_audio_gives_one_bucket_per_frame_and_silence_gives_zeros() {
        let audio = AudioBuffer::new(44100, vec![vec![0.0; 4], vec![0.0; 4]]);
        assert_eq!(waveform_peaks(&audio, 1000), vec![(0.0, 0.0); 4]);
        assert!(waveform_peaks(&AudioBuffer::new(44100, vec![vec![], vec![]]), 10).is_empty());
    }

    #[test]
    fn peaks_built_block_by_block_equal_those_of_the_whole_track() {
        let frames = 10_007;
        let left: Vec<f32> = (0..frames)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let right: Vec<f32> = (0..frames)
            .map(|i| ((i * 13) % 89) as f32 / 44.0 - 1.0)
            .collect();
        let audio = AudioBuffer::new(44100, vec![left.clone(), right.clone()]);
        for buckets in [1, 7, 1600, 20_000] {
            let expected: Vec<(f32, f32)> = {
                let n = buckets.min(frames);
                (0..n)
                    .map(|b| {
                        let (s, e) = (b * frames / n, (b + 1) * frames / n);
                        left[s..e]
                            .iter()
                            .chain(&right[s..e])
                            .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
                    })
                    .collect()
            };
            assert_eq!(
                waveform_peaks(&audio, buckets),
                expected,
                "{buckets} buckets"
            );
            let mut built = PeakBuilder::new(frames as u64, buckets);
            let mut start = 0;
            for len in [1, 999, 4096, 3, 10_000].iter().cycle() {
                if start >= frames {
                    break;
                }
                let end = (start + len).min(frames);
                built.add(
                    start as u64,
                    &[left[start..end].to_vec(), right[start..end].to_vec()],
                );
                start = end;
            }
            assert_eq!(
                built.peaks(),
                expected.as_slice(),
                "{buckets} buckets in blocks"
            );
        }
    }
}
