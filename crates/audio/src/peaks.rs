//! Waveform overviews for the UI: the lowest and highest sample of each of `buckets`
//! equal slices of the track, over all channels.

use crate::buffer::AudioBuffer;

/// `(min, max)` per bucket; fewer buckets than requested only when the audio is shorter
/// than that many frames.
pub fn waveform_peaks(audio: &AudioBuffer, buckets: usize) -> Vec<(f32, f32)> {
    let frames = audio.frames();
    let buckets = buckets.min(frames);
    (0..buckets)
        .map(|b| {
            let (start, end) = (b * frames / buckets, (b + 1) * frames / buckets);
            audio
                .channels
                .iter()
                .flat_map(|c| &c[start..end])
                .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        })
        .collect()
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
}
