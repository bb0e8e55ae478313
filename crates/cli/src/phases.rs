//! The whole run's profile (with `STEMDECK_PROFILE=1`): where the wall-clock time of a
//! `separate` went, phase by phase, and how much of it the model's forward passes were.
//! Whatever is outside them runs beside at most one busy core, so it is the serial share
//! that Amdahl's law charges on a machine with more cores.

use std::sync::Mutex;
use std::time::Duration;

use stemdeck_engine::JobEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Loading,
    Decoding,
    Separating,
    Writing,
    Finishing,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Loading => "start-up and model load",
            Phase::Decoding => "decoding",
            Phase::Separating => "separating",
            Phase::Writing => "writing the stems",
            Phase::Finishing => "after writing",
        }
    }
}

/// When each phase of the run was first entered, as times since the run started.
#[derive(Default)]
pub struct RunPhases {
    marks: Mutex<Vec<(Phase, Duration)>>,
}

impl RunPhases {
    /// Notes `event`, heard `at` into the run.
    pub fn on_event(&self, event: &JobEvent, at: Duration) {
        let phase = match event {
            JobEvent::LoadingModel => Phase::Loading,
            JobEvent::Decoding { .. } => Phase::Decoding,
            JobEvent::Separating { .. } => Phase::Separating,
            JobEvent::Writing { .. } => Phase::Writing,
            JobEvent::Finished { .. } => Phase::Finishing,
            _ => return,
        };
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if marks.last().is_none_or(|(last, _)| *last != phase) {
            marks.push((phase, at));
        }
    }

    /// The table for a run of `total` so far, `forward` of it inside the model's forward
    /// passes.
    pub fn report(&self, total: Duration, forward: Duration) -> String {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let mut spent: Vec<(Phase, Duration)> = Vec::new();
        // Everything before the first event is start-up.
        let mut at = (Phase::Loading, Duration::ZERO);
        for &(phase, when) in marks
            .iter()
            .chain(std::iter::once(&(Phase::Finishing, total)))
        {
            let (current, since) = at;
            let d = when.saturating_sub(since);
            match spent.iter_mut().find(|(p, _)| *p == current) {
                Some((_, sum)) => *sum += d,
                None => spent.push((current, d)),
            }
            at = (phase, when);
        }
        spent.sort_by_key(|(p, _)| *p);
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9);
        let mut out = String::from("whole-run profile (wall clock)\n");
        for (phase, d) in &spent {
            out.push_str(&format!(
                "  {:<28} {:>8.3} s {:>6.1}%\n",
                phase.label(),
                d.as_secs_f64(),
                pct(*d)
            ));
        }
        let outside = total.saturating_sub(forward);
        out.push_str(&format!(
            "  {:<28} {:>8.3} s\n  forward passes               {:>8.3} s {:>6.1}%\n  serial share (outside them)  {:>8.3} s {:>6.1}%\n",
            "total",
            total.as_secs_f64(),
            forward.as_secs_f64(),
            pct(forward),
            outside.as_secs_f64(),
            pct(outside),
        ));
        out
    }
}
