//! Server-Sent Events: every job change (the browser UI's queue), or one job's progress
//! until it finishes. Each stream ends when the server stops, so shutdown never waits on a
//! client that keeps listening.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use stemdeck_engine::jobs::queue::JobUpdate;
use tokio::sync::broadcast::error::RecvError;

use crate::state::ServerState;

pub type EventStream =
    Sse<KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

pub fn event<T: Serialize>(name: &str, value: &T) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event(name))
}

pub fn sse(stream: impl Stream<Item = Event> + Send + 'static) -> EventStream {
    Sse::new(stream.map(Ok).boxed()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Job updates from now on (`job` events), starting with `first`; only job `only` when
/// given, and then ending after it finishes.
pub fn job_updates(
    state: &Arc<ServerState>,
    first: impl FnOnce() -> Vec<JobUpdate>,
    only: Option<u64>,
) -> impl Stream<Item = Event> + Send + 'static {
    // Subscribed before the snapshot is taken, so that no change falls between them.
    let updates = state.queue.subscribe();
    let shutdown = state.shutdown.subscribe();
    let first = first();
    let finished_already = only.is_some() && first.iter().any(|u| u.stage.is_finished());
    let head = stream::iter(first.into_iter().map(|u| event("job", &u)));
    let tail = stream::unfold(
        (updates, shutdown, finished_already),
        move |(mut updates, mut shutdown, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = tokio::select! {
                    _ = shutdown.wait_for(|stopping| *stopping) => return None,
                    next = updates.recv() => next,
                };
                match next {
                    Ok(update) if only.is_none_or(|id| id == update.id) => {
                        let finished = only.is_some() && update.stage.is_finished();
                        return Some((event("job", &update), (updates, shutdown, finished)));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    head.chain(tail)
}
