//! A session's bounded outbound queue: many producers (the realm's publishers, dealers and
//! meta API), one consumer (the connection task).
//!
//! tokio's `mpsc::channel` allocates its shared state (~0.5 KiB) and a first block of 32
//! slots when it is created, for every session, connected or idle. This queue allocates its
//! slots only when something is queued (a `VecDeque`), gives a large burst's slots back once
//! drained, and costs about 100 bytes for a session that never gets a message: most of what
//! an idle MQTT connection used to hold.
//!
//! A push wakes the consumer only when it is waiting (its waker is taken), so a burst of
//! pushes costs one wake-up; the consumer then takes what is there with [`Receiver::try_recv`]
//! without waiting again.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// A drained queue whose slots grew past this many gives them back.
const KEPT_SLOTS_MAX: usize = 256;

/// The producing end; cheap to clone.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming end.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// The consumer, while it waits for an item.
    waker: Option<Waker>,
    senders: usize,
    receiver_alive: bool,
}

/// Why [`Sender::try_send`] did not queue its item (handed back).
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and every sender is gone.
    Disconnected,
}

/// A queue holding at most `capacity` items (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
            senders: 1,
            receiver_alive: true,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned one still holds a valid queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or the receiver gone; `Ok` with the number
    /// of items queued now, this one included.
    pub fn try_send(&self, item: T) -> Result<usize, TrySendError<T>> {
        let (waker, queued) = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Err(TrySendError::Closed(item));
            }
            if state.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
            (state.waker.take(), state.items.len())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(queued)
    }

    /// The queue's capacity.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and every sender is gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            match Self::take(&mut state) {
                Some(item) => Poll::Ready(Some(item)),
                None if state.senders == 0 => Poll::Ready(None),
                None => {
                    match &mut state.waker {
                        Some(waker) => waker.clone_from(cx.waker()),
                        none => *none = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match Self::take(&mut state) {
            Some(item) => Ok(item),
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    fn take(state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEPT_SLOTS_MAX {
            state.items = VecDeque::new();
        }
        Some(item)
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    /// The queue's capacity.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Dropped outside the lock: an item's drop may do anything.
        let items = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_with_full_and_closed() {
        let (tx, mut rx) = channel(2);
        assert_eq!(tx.try_send(1), Ok(1));
        assert_eq!(tx.try_send(2), Ok(2));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!((rx.len(), rx.max_capacity()), (2, 2));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.try_send(4), Ok(2));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(4));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx);
        assert_eq!(tx.try_send(5), Err(TrySendError::Closed(5)));
    }

    #[test]
    fn disconnected_once_every_sender_is_gone_and_the_queue_is_empty() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "a clone is alive");
        tx2.try_send(2).unwrap();
        drop(tx2);
        assert_eq!(rx.try_recv(), Ok(2), "queued items outlive the senders");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn nothing_is_allocated_until_something_is_queued_and_a_burst_is_given_back() {
        let (tx, mut rx) = channel(10_000);
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        for i in 0..1_000 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_from_another_task_and_ends_with_the_senders() {
        let (tx, mut rx) = channel(64);
        let producer = tokio::spawn(async move {
            for i in 0..1_000u32 {
                while tx.try_send(i).is_err() {
                    tokio::task::yield_now().await;
                }
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        producer.await.unwrap();
        assert_eq!(got, (0..1_000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_producers_on_other_threads_lose_nothing() {
        let (tx, mut rx) = channel(16);
        let producers: Vec<_> = (0..4u32)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..2_000u32 {
                        while tx.try_send((p, i)).is_err() {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u32; 4];
        while let Some((p, i)) = rx.recv().await {
            assert_eq!(next[p as usize], i, "per-producer order");
            next[p as usize] += 1;
        }
        for producer in producers {
            producer.await.unwrap();
        }
        assert_eq!(next, [2_000; 4]);
    }
}
