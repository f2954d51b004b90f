//! The idle wait of an established connection (see [`super::active`]): a hand-written
//! poll over what the connection keeps anyway, so that the future of an idle connection is
//! its state and nothing more.
//!
//! What wakes it, and where each waker is kept:
//!
//! ```text
//! socket readable           the socket's readiness (tokio's ScheduledIo)
//! a queued message          the session queue's waker slot
//! kill, overflow, shutdown  the same slot (SessionHandle::wake; a flag says which)
//! takeover                  the takeover oneshot
//! keep alive                the connection's keep alive timer
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::active::Connection;
use super::Source;
use crate::mqtt::session::Parked;

/// Why an idle connection woke.
pub(super) enum Wake {
    /// Something may be ready: the select loop finds out what.
    Active,
    /// A newer connection with the same client identifier takes the session over.
    Kicked(oneshot::Sender<Option<Parked>>),
}

/// Waits until something may be ready for `connection`. The queue's waker is registered
/// before the flags are read (a flag set after the read wakes it), and a queued message
/// wakes it only while the session takes deliveries (a full inflight window waits for the
/// client's acknowledgements, on the socket).
pub(super) fn idle<'a, R: Source, W>(
    connection: &'a mut Connection<R, W>,
    mut keep_alive: Pin<&'a mut Sleep>,
) -> impl Future<Output = Wake> + 'a {
    std::future::poll_fn(move |cx| {
        if let Some(kicks) = connection.kicks.as_mut() {
            match Pin::new(kicks).poll(cx) {
                Poll::Ready(Ok(reply)) => {
                    connection.kicks = None;
                    return Poll::Ready(Wake::Kicked(reply));
                }
                // The registry gave the slot up without a kick: never again.
                Poll::Ready(Err(_)) => connection.kicks = None,
                Poll::Pending => {}
            }
        }
        if connection.reader.poll_readable(cx).is_ready() {
            return Poll::Ready(Wake::Active);
        }
        let queued = connection.rx.poll_queued(cx);
        if queued && connection.session.wants_deliveries() {
            return Poll::Ready(Wake::Active);
        }
        if connection.session.handle().stats.take_alert() || *connection.shutdown.borrow() {
            return Poll::Ready(Wake::Active);
        }
        if connection.keep_alive_armed && keep_alive.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Active);
        }
        Poll::Pending
    })
}
