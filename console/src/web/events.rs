//! Server-sent events: one per NOTIFY heard on the person's own connections.
//! An event names only its kind and the database of the connection that
//! heard it; the page then reads the data again itself.

use super::session::Signed;
use crate::db::REQUESTS;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

pub async fn stream(who: Signed) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = who.login.events.subscribe();
    let events = BroadcastStream::new(rx).map(|m| {
        Ok(match m {
            Ok(ev) => {
                let kind = if ev.channel == REQUESTS {
                    "request"
                } else {
                    "decision"
                };
                Event::default().event(kind).data(ev.database)
            }
            // Missed some: a refresh catches up all the same.
            Err(_) => Event::default().event("request").data(""),
        })
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
