//! An op-level profile of the forward pass, so that the next optimisation targets the
//! biggest cost. Off unless `STEMDECK_PROFILE` is set (to anything but `0`); then every
//! [`scope`] records its wall time, and [`report`] prints a table of self times (a scope's
//! time minus that of the scopes opened inside it), largest first.
//!
//! The CPU ops run synchronously, so wall time around a call is the op's cost. On a GPU the
//! kernels are asynchronous and the times land wherever the queue is waited for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    calls: u64,
    total: Duration,
    own: Duration,
}

fn table() -> &'static Mutex<HashMap<&'static str, Totals>> {
    static TABLE: OnceLock<Mutex<HashMap<&'static str, Totals>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

thread_local! {
    /// Time spent in scopes nested inside each open scope of this thread.
    static CHILD_TIME: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
}

/// Whether profiling is on (read once from `STEMDECK_PROFILE`, or set by [`enable`]).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var("STEMDECK_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns profiling on or off for the rest of the process.
pub fn enable(on: bool) {
    STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// The scope around each whole forward pass: its total is the time in the model.
pub const FORWARD: &str = "forward (other)";

/// Records the time until the returned guard is dropped under `name`.
#[must_use = "the scope ends when this guard is dropped"]
pub fn scope(name: &'static str) -> Scope {
    if !enabled() {
        return Scope(None);
    }
    CHILD_TIME.with(|c| c.borrow_mut().push(Duration::ZERO));
    Scope(Some((name, Instant::now())))
}

pub struct Scope(Option<(&'static str, Instant)>);

impl Drop for Scope {
    fn drop(&mut self) {
        let Some((name, start)) = self.0 else {
            return;
        };
        let elapsed = start.elapsed();
        let children = CHILD_TIME.with(|c| {
            let mut stack = c.borrow_mut();
            let children = stack.pop().unwrap_or_default();
            if let Some(parent) = stack.last_mut() {
                *parent += elapsed;
            }
            children
        });
        let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
        let entry = table.entry(name).or_default();
        entry.calls += 1;
        entry.total += elapsed;
        entry.own += elapsed.saturating_sub(children);
    }
}

/// Forgets everything recorded so far.
pub fn reset() {
    table().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// One row of the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: &'static str,
    pub calls: u64,
    /// Time in the scope itself, not in scopes opened inside it.
    pub own: Duration,
    pub total: Duration,
}

/// Every scope recorded so far, the largest own time first.
pub fn rows() -> Vec<Row> {
    let table = table().lock().unwrap_or_else(|e| e.into_inner());
    let mut rows: Vec<Row> = table
        .iter()
        .map(|(name, t)| Row {
            name,
            calls: t.calls,
            own: t.own,
            total: t.total,
        })
        .collect();
    rows.sort_by(|a, b| b.own.cmp(&a.own).then(a.name.cmp(b.name)));
    rows
}

/// The profile as a table, or `None` when nothing was recorded.
pub fn report() -> Option<String> {
    let rows = rows();
    if rows.is_empty() {
        return None;
    }
    let own_sum: Duration = rows.iter().map(|r| r.own).sum();
    let mut out =
        String::from("forward-pass profile (own time: a scope minus the scopes inside it)\n");
    out.push_str(&format!(
        "  {:<28} {:>8} {:>10} {:>7} {:>10}\n",
        "op", "calls", "own s", "own %", "total s"
    ));
    for r in &rows {
        out.push_str(&format!(
            "  {:<28} {:>8} {:>10.3} {:>6.1}% {:>10.3}\n",
            r.name,
            r.calls,
            r.own.as_secs_f64(),
            100.0 * r.own.as_secs_f64() / own_sum.as_secs_f64().max(1e-12),
            r.total.as_secs_f64(),
        ));
    }
    out.push_str(&format!(
        "  {:<28} {:>8} {:>10.3}\n",
        "sum",
        "",
        own_sum.as_secs_f64()
    ));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_split_own_and_total_time() {
        enable(true);
        reset();
        {
            let _outer = scope("test.outer");
            std::thread::sleep(Duration::from_millis(20));
            for _ in 0..2 {
                let _inner = scope("test.inner");
                std::thread::sleep(Duration::from_millis(15));
            }
        }
        let rows = rows();
        let get = |n: &str| rows.iter().find(|r| r.name == n).cloned().unwrap();
        let (outer, inner) = (get("test.outer"), get("test.inner"));
        assert_eq!((outer.calls, inner.calls), (1, 2));
        assert!(inner.total >= Duration::from_millis(30));
        assert!(outer.total >= outer.own + inner.total - Duration::from_millis(1));
        assert!(outer.own >= Duration::from_millis(20));
        assert!(outer.own < Duration::from_millis(20) + inner.total);
        let text = report().unwrap();
        assert!(text.contains("test.outer") && text.contains("test.inner"));
        enable(false);
        assert!(scope("test.off").0.is_none());
    }
}
