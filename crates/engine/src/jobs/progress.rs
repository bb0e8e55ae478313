//! Turning a job's coarse events (one per 7.8 s segment, seconds apart) into a smooth
//! percentage and an ETA for the UI.

use std::time::{Duration, Instant};

use crate::events::JobEvent;
use crate::jobs::library::JobStage;

/// Share of the whole job each stage covers, in order.
const LOADING: (f64, f64) = (0.0, 0.02);
const DECODING: (f64, f64) = (0.02, 0.05);
const SEPARATING: (f64, f64) = (0.05, 0.97);
const WRITING: (f64, f64) = (0.97, 1.0);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Fetching a linked song; the bar shows the download's own fraction.
    Downloading {
        fraction: Option<f64>,
    },
    Loading,
    Decoding,
    Separating {
        done: usize,
        total: usize,
    },
    Writing,
}

/// A download's bytes so far, and its total when known.
pub type DownloadBytes = (u64, Option<u64>);

/// The stage and phase an event moves a job into, and the bytes of a download it
/// reports; `None` for an event that moves neither (a title found, the end).
pub fn stage_of(event: &JobEvent) -> Option<(JobStage, Phase, Option<DownloadBytes>)> {
    Some(match event {
        JobEvent::DownloadingAudio { bytes, total, .. } => (
            JobStage::Downloading,
            Phase::Downloading {
                fraction: total.filter(|&t| t > 0).map(|t| *bytes as f64 / t as f64),
            },
            Some((*bytes, *total)),
        ),
        JobEvent::DownloadingModel { bytes, total, .. } => (
            JobStage::LoadingModel,
            Phase::Loading,
            Some((*bytes, *total)),
        ),
        JobEvent::LoadingModel => (JobStage::LoadingModel, Phase::Loading, None),
        JobEvent::Decoding { .. } => (JobStage::Decoding, Phase::Decoding, None),
        JobEvent::Separating { progress, .. } => (
            JobStage::Separating,
            Phase::Separating {
                done: progress.segments_done,
                total: progress.segments_total,
            },
            None,
        ),
        JobEvent::Writing { .. } => (JobStage::Writing, Phase::Writing, None),
        JobEvent::Analysing => (JobStage::Analysing, Phase::Writing, None),
        JobEvent::SourceReady { .. } | JobEvent::Finished { .. } => return None,
    })
}

/// Estimates progress between events from the pace of the segments so far.
#[derive(Debug, Clone)]
pub struct ProgressEstimator {
    phase: Phase,
    separation_started: Option<Instant>,
    last_segment: Option<Instant>,
}

impl Default for ProgressEstimator {
    fn default() -> Self {
        Self {
            phase: Phase::Loading,
            separation_started: None,
            last_segment: None,
        }
    }
}

impl ProgressEstimator {
    pub fn update(&mut self, phase: Phase, now: Instant) {
        if let Phase::Separating { done, .. } = phase {
            if self.separation_started.is_none() {
                self.separation_started = Some(now);
            }
            if done > 0 {
                self.last_segment = Some(now);
            }
        }
        self.phase = phase;
    }

    fn seconds_per_segment(&self) -> Option<f64> {
        let (start, last) = (self.separation_started?, self.last_segment?);
        match self.phase {
            Phase::Separating { done, .. } if done > 0 => {
                Some((last - start).as_secs_f64() / done as f64)
            }
            _ => None,
        }
    }

    /// `(fraction of the job done, seconds left)`, the latter once the pace is known.
    pub fn estimate(&self, now: Instant) -> (f64, Option<f64>) {
        let lerp = |(a, b): (f64, f64), t: f64| a + (b - a) * t.clamp(0.0, 1.0);
        match self.phase {
            Phase::Downloading { fraction } => (fraction.unwrap_or(0.0).clamp(0.0, 1.0), None),
            Phase::Loading => (LOADING.0, None),
            Phase::Decoding => (DECODING.0, None),
            Phase::Writing => (WRITING.0, Some(0.0)),
            Phase::Separating { done, total } => {
                let total = total.max(1);
                let Some(pace) = self.seconds_per_segment() else {
                    return (lerp(SEPARATING, done as f64 / total as f64), None);
                };
                let since = self
                    .last_segment
                    .map_or(Duration::ZERO, |t| now - t)
                    .as_secs_f64();
                // Creep through the current segment, never past it before it is reported.
                let within = (since / pace).min(0.95);
                let fraction = (done as f64 + within) / total as f64;
                let remaining = (pace * (total - done) as f64 - since).max(0.0);
                (lerp(SEPARATING, fraction), Some(remaining))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_moves_smoothly_between_segments_and_never_backwards() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut p = ProgressEstimator::default();
        p.update(Phase::Decoding, at(0.0));
        p.update(Phase::Separating { done: 0, total: 4 }, at(1.0));
        assert_eq!(
            p.estimate(at(2.0)).1,
            None,
            "no ETA before the pace is known"
        );
        p.update(Phase::Separating { done: 1, total: 4 }, at(11.0));
        let mut last = 0.0;
        for s in [11.0, 13.0, 16.0, 20.0, 25.0, 40.0] {
            let (fraction, eta) = p.estimate(at(s));
            assert!(fraction >= last, "{fraction} < {last} at {s}");
            last = fraction;
            assert!(
                fraction < SEPARATING.0 + (SEPARATING.1 - SEPARATING.0) * 0.5,
                "stays inside segment 2 of 4"
            );
            assert!(eta.unwrap() <= 30.0);
        }
        let (_, eta) = p.estimate(at(16.0));
        assert!(
            (eta.unwrap() - 25.0).abs() < 1e-9,
            "10 s per segment, 3 left, 5 s in: {eta:?}"
        );
        p.update(Phase::Separating { done: 2, total: 4 }, at(21.0));
        assert!(p.estimate(at(21.0)).0 >= last);
        p.update(Phase::Writing, at(50.0));
        assert_eq!(p.estimate(at(50.0)), (WRITING.0, Some(0.0)));
    }
}
