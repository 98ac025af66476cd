//! `GET /_dashboard/events`: server-sent events. A page first gets `hello`
//! (its row bound, the channel's capacity, the exchanges since the server
//! started and those kept since the last clear), then the
//! latest [`MAX_ROWS`](super::MAX_ROWS) exchanges, then every `exchange`,
//! `finished`, `cleared` as it happens. A page that falls more than
//! [`EVENT_CAPACITY`] events behind gets `lagged` with the number it lost:
//! the server never waits for a page.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::transcript::{EVENT_CAPACITY, TranscriptEvent};

fn event(name: &str, data: serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// The event stream of one page.
pub async fn events(State(state): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the snapshot is taken: nothing falls between them (the page drops repeats by seq).
    let receiver = state.transcript.subscribe();
    let snapshot = state.transcript.latest(super::MAX_ROWS);
    let hello = event(
        "hello",
        json!({
            "max_rows": super::MAX_ROWS,
            "capacity": EVENT_CAPACITY,
            "total": state.transcript.count(),
            "kept": state.transcript.kept(),
        }),
    );
    let shown = snapshot.len();
    let first = stream::once(async move { hello })
        .chain(stream::iter(snapshot).map(|e| event("exchange", super::view::exchange(&e))))
        .chain(stream::once(async move { event("ready", json!({"snapshot": shown})) }));
    let live = stream::unfold(receiver, |mut receiver| async move {
        let item = match receiver.recv().await {
            Ok(TranscriptEvent::Started(e)) => event("exchange", super::view::exchange(&e)),
            Ok(TranscriptEvent::Finished { seq, bytes, fault_not_applied }) => {
                event("finished", json!({"seq": seq, "bytes": bytes, "fault_not_applied": fault_not_applied}))
            }
            Ok(TranscriptEvent::Cleared) => event("cleared", json!({})),
            Err(RecvError::Lagged(missed)) => event("lagged", json!({"missed": missed})),
            Err(RecvError::Closed) => return None,
        };
        Some((item, receiver))
    });
    let stopped = state.dashboard.stopped();
    Sse::new(first.chain(live).take_until(stopped)).keep_alive(KeepAlive::default())
}
