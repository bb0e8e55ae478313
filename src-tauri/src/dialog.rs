//! The native dialogs answer through a callback; commands await the answer instead.

use crate::error::{AppError, AppResult};

/// Shows a dialog with `show`, handing it the callback to answer with, and waits for the
/// answer without holding up the async runtime.
pub async fn answer<T: Send + 'static>(
    show: impl FnOnce(Box<dyn FnOnce(T) + Send>),
) -> AppResult<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    show(Box::new(move |answer| {
        let _ = tx.send(answer);
    }));
    rx.await.map_err(|_| AppError::DialogGone)
}
