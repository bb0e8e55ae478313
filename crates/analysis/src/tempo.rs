//! Tempo and beats from an onset envelope.
//!
//! The tempo is the period whose whole-beat multiples the envelope repeats at best on
//! average (a subdivision such as eighth-note hi-hats repeats there only every other
//! time) and whose half-beat offsets it does not (so a steady click is not heard at half
//! speed), weighted gently towards 120 BPM as listeners are. The beats are then placed by dynamic
//! programming (Ellis, "Beat tracking by dynamic programming", 2007): each beat on a
//! strong onset, each gap close to that period. The tempo reported is the slope of the
//! beats found, which is far finer than the envelope's 10 ms frames.

/// The range a song's tempo is looked for in.
pub const MIN_BPM: f64 = 55.0;
pub const MAX_BPM: f64 = 215.0;
/// Every candidate is compared over the same span: this many beats of the slowest tempo.
const SPAN_BEATS: f64 = 4.0;
/// How much an onset half a beat away counts against a tempo.
const OFFBEAT_PENALTY: f32 = 0.25;
/// How strongly beats are held to the period (Ellis' tightness).
const TIGHTNESS: f32 = 100.0;
/// Under this many seconds of audio there is no tempo to speak of.
const MIN_SECS: f64 = 3.0;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Beats {
    pub bpm: f64,
    /// Envelope frames of each beat.
    pub frames: Vec<usize>,
}

pub(crate) fn track(envelope: &[f32], frame_rate: f64) -> Option<Beats> {
    if (envelope.len() as f64) < MIN_SECS * frame_rate {
        return None;
    }
    let period = best_period(envelope, frame_rate)?;
    let frames = place_beats(envelope, period);
    if frames.len() < 4 {
        return None;
    }
    // Beats bridged across a break (kept, so a click plays on through it) say nothing
    // about the tempo; only gaps between beats on real onsets measure it.
    let threshold =
        0.2 * frames.iter().map(|b| strength(envelope, *b)).sum::<f32>() / frames.len() as f32;
    let heard: Vec<bool> = frames
        .iter()
        .map(|b| strength(envelope, *b) >= threshold)
        .collect();
    let gaps: Vec<f64> = frames
        .windows(2)
        .zip(heard.windows(2))
        .filter(|(_, h)| h[0] && h[1])
        .map(|(w, _)| (w[1] - w[0]) as f64)
        .collect();
    let slope = steady_period(gaps).unwrap_or(period);
    Some(Beats {
        bpm: 60.0 * frame_rate / slope,
        frames,
    })
}

/// The beat period, in frames, that best explains the envelope's repetitions.
fn best_period(envelope: &[f32], frame_rate: f64) -> Option<f64> {
    let longest = frame_rate * 60.0 / MIN_BPM;
    let span = SPAN_BEATS * longest;
    let max_lag = span.ceil() as usize + 2;
    let correlation = smoothed(&autocorrelation(envelope, max_lag));
    let at = |lag: f64| -> f32 {
        let i = lag.floor() as usize;
        let frac = (lag - i as f64) as f32;
        if i + 1 >= correlation.len() {
            return 0.0;
        }
        correlation[i] * (1.0 - frac) + correlation[i + 1] * frac
    };
    let mut best: Option<(f64, f32)> = None;
    let mut bpm = MIN_BPM;
    while bpm <= MAX_BPM {
        let period = frame_rate * 60.0 / bpm;
        let multiples = (span / period).floor().max(1.0) as usize;
        let on: f32 = (1..=multiples).map(|k| at(k as f64 * period)).sum();
        let off: f32 = (1..=multiples).map(|k| at((k as f64 - 0.5) * period)).sum();
        let octaves = (bpm / 120.0).log2();
        let prior = (-0.5 * octaves * octaves) as f32;
        let score = ((on - OFFBEAT_PENALTY * off) / multiples as f32).max(0.0) * prior.exp();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((period, score));
        }
        bpm += 0.25;
    }
    best.filter(|(_, score)| *score > 0.0).map(|(p, _)| p)
}

/// `r[lag]` for lags `0..=max_lag`, normalised so `r[0]` is 1 and each lag is a mean.
fn autocorrelation(envelope: &[f32], max_lag: usize) -> Vec<f32> {
    let n = envelope.len();
    let mut r = vec![0.0f32; max_lag + 1];
    for (lag, slot) in r.iter_mut().enumerate().take(n) {
        let sum: f64 = envelope[..n - lag]
            .iter()
            .zip(&envelope[lag..])
            .map(|(a, b)| (*a * *b) as f64)
            .sum();
        *slot = (sum / (n - lag) as f64) as f32;
    }
    let zero = r[0].max(f32::MIN_POSITIVE);
    r.iter_mut().for_each(|v| *v /= zero);
    r
}

/// Widens the correlation's peaks by a frame, so a period between two frames still meets
/// them.
fn smoothed(r: &[f32]) -> Vec<f32> {
    (0..r.len())
        .map(|i| {
            let before = r[i.saturating_sub(1)];
            let after = r[(i + 1).min(r.len() - 1)];
            0.25 * before + 0.5 * r[i] + 0.25 * after
        })
        .collect()
}

/// Beats on strong onsets, spaced close to `period`.
fn place_beats(envelope: &[f32], period: f64) -> Vec<usize> {
    let n = envelope.len();
    let mut score = vec![0f32; n];
    let mut from = vec![usize::MAX; n];
    let nearest = (period / 2.0).round().max(1.0) as usize;
    let furthest = (period * 2.0).round() as usize;
    for t in 0..n {
        let mut best = 0f32;
        let mut best_from = usize::MAX;
        if t >= nearest {
            let first = t.saturating_sub(furthest);
            for (tau, prior_score) in score.iter().enumerate().take(t - nearest + 1).skip(first) {
                let gap = ((t - tau) as f64 / period).ln() as f32;
                let candidate = prior_score - TIGHTNESS * gap * gap;
                if best_from == usize::MAX || candidate > best {
                    best = candidate;
                    best_from = tau;
                }
            }
        }
        // A beat chain is only extended when that helps; otherwise it starts afresh here.
        if best_from != usize::MAX && best > 0.0 {
            score[t] = envelope[t] + best;
            from[t] = best_from;
        } else {
            score[t] = envelope[t];
        }
    }
    // The last beat: the best-scoring frame among the final period that is on an onset.
    let tail = n.saturating_sub(period.ceil() as usize);
    let mut last = (tail..n)
        .max_by(|&a, &b| score[a].total_cmp(&score[b]))
        .unwrap_or(0);
    let mut beats = vec![last];
    while from[last] != usize::MAX {
        last = from[last];
        beats.push(last);
    }
    beats.reverse();
    trim_quiet_ends(&mut beats, envelope);
    beats
}

/// The strongest onset within two frames of `beat`.
fn strength(envelope: &[f32], beat: usize) -> f32 {
    let lo = beat.saturating_sub(2);
    let hi = (beat + 3).min(envelope.len());
    envelope[lo..hi].iter().fold(0f32, |m, v| m.max(*v))
}

/// Drops beats at either end that land on nothing (silence before and after the music).
fn trim_quiet_ends(beats: &mut Vec<usize>, envelope: &[f32]) {
    let strength = |b: &usize| strength(envelope, *b);
    let mean = beats.iter().map(strength).sum::<f32>() / beats.len().max(1) as f32;
    let threshold = 0.2 * mean;
    while beats.last().is_some_and(|b| strength(b) < threshold) {
        beats.pop();
    }
    let first = beats.iter().position(|b| strength(b) >= threshold);
    beats.drain(..first.unwrap_or(beats.len()));
}

/// The mean gap between consecutive beats, over the gaps near the typical one: a break
/// where the drums stop, bridged by a long gap, does not pull the tempo.
fn steady_period(mut gaps: Vec<f64>) -> Option<f64> {
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let steady: Vec<f64> = gaps
        .into_iter()
        .filter(|g| (g - median).abs() <= 0.08 * median)
        .collect();
    Some(steady.iter().sum::<f64>() / steady.len() as f64)
}

/// The least-squares slope of beat frame against beat number.
#[cfg(test)]
fn fitted_period(beats: &[usize]) -> Option<f64> {
    let n = beats.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mean_i = (n - 1.0) / 2.0;
    let mean_t = beats.iter().map(|&b| b as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &b) in beats.iter().enumerate() {
        let di = i as f64 - mean_i;
        num += di * (b as f64 - mean_t);
        den += di * di;
    }
    (den > 0.0 && num > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitted_period_is_finer_than_a_frame() {
        // Beats every 28.7 frames, rounded to whole frames as the envelope places them.
        let beats: Vec<usize> = (0..60)
            .map(|i| (i as f64 * 28.7).round() as usize)
            .collect();
        let period = fitted_period(&beats).unwrap();
        assert!((period - 28.7).abs() < 0.01, "{period}");
    }

    #[test]
    fn an_impulse_train_is_tracked_on_its_impulses() {
        let mut envelope = vec![0f32; 2000];
        for t in (37..2000).step_by(50) {
            envelope[t] = 1.0;
        }
        let beats = track(&envelope, 100.0).unwrap();
        assert!((beats.bpm - 120.0).abs() < 0.5, "{}", beats.bpm);
        assert!(
            beats.frames.iter().all(|f| (f - 37) % 50 == 0),
            "{:?}",
            beats.frames
        );
        assert_eq!(beats.frames.len(), 40);
    }
}
