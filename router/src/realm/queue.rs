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
//!
//! Inside a [`WakeBatch`] (a connection task handling one read's worth of input), those
//! wake-ups wait until the batch ends. Otherwise the first push wakes the consumer at once,
//! another worker thread runs it while this one is still pushing, and it writes one message
//! per socket write: a whole read's worth of answers then costs a write each instead of one.

// An edge: the bounded queues between the realm and the connection tasks.
#![allow(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Live senders. Outside the lock: a session's handle is cloned for every call it
    /// takes part in, and a clone must not contend with the producers.
    senders: AtomicUsize,
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// The consumer, while it waits for an item.
    waker: Option<Waker>,
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
        senders: AtomicUsize::new(1),
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
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
        crate::locks::lock(&self.state)
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
            wake_now_or_after_batch(waker);
        }
        Ok(queued)
    }

    /// The queue's capacity.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Wakes the consumer if it waits, without queueing anything: the caller set a flag
    /// of its own first (a kill, an overflow, the router shutting down), which the
    /// consumer reads after [`Receiver::poll_queued`] registered it. One wake-up source
    /// per session, in the queue's existing waker slot, lets an idle connection wait on
    /// everything without a future per event.
    pub fn wake_consumer(&self) {
        let waker = self.shared.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

std::thread_local! {
    /// The consumers to wake when this thread's [`WakeBatch`] ends; `None` outside one.
    static DEFERRED: RefCell<Option<Vec<Waker>>> = const { RefCell::new(None) };
}

fn wake_now_or_after_batch(waker: Waker) {
    let waker = DEFERRED.with(|deferred| match deferred.borrow_mut().as_mut() {
        Some(wakers) => {
            wakers.push(waker);
            None
        }
        None => Some(waker),
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Holds back the consumer wake-ups of pushes made on this thread until it is dropped, so
/// consumers find everything a batch of input queued for them at once. Synchronous code
/// only: it is not `Send`, so it cannot be held across an `.await` in a spawned task (the
/// task could move to another thread). Nested batches end with the outermost.
#[must_use = "wake-ups are held only while the batch is alive"]
pub struct WakeBatch {
    outermost: bool,
    _not_send: PhantomData<*const ()>,
}

impl WakeBatch {
    /// Starts holding back wake-ups on this thread.
    pub fn begin() -> Self {
        let outermost = DEFERRED.with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            if deferred.is_some() {
                return false;
            }
            *deferred = Some(Vec::new());
            true
        });
        Self {
            outermost,
            _not_send: PhantomData,
        }
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let wakers = DEFERRED.with(|deferred| deferred.borrow_mut().take());
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last sender: a consumer that saw a sender alive under the lock registered its
        // waker before we could take the lock, so it is woken here and sees none.
        self.wake_consumer();
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// Makes `cx`'s task the consumer the next push (or wake) wakes.
fn register<T>(state: &mut State<T>, cx: &std::task::Context<'_>) {
    match &mut state.waker {
        Some(waker) => waker.clone_from(cx.waker()),
        none => *none = Some(cx.waker().clone()),
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and every sender is gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            match Self::take(&mut state) {
                Some(item) => Poll::Ready(Some(item)),
                None if self.shared.senders.load(Ordering::Acquire) == 0 => Poll::Ready(None),
                None => {
                    register(&mut state, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Registers the consumer to be woken by the next push (or
    /// [`Sender::wake_consumer`], or the last sender leaving) and tells whether an item is
    /// queued now. Takes nothing; `recv` or `try_recv` does.
    pub fn poll_queued(&self, cx: &mut std::task::Context<'_>) -> bool {
        let mut state = self.shared.lock();
        if !state.items.is_empty() {
            return true;
        }
        register(&mut state, cx);
        false
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match Self::take(&mut state) {
            Some(item) => Ok(item),
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                Err(TryRecvError::Disconnected)
            }
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

    /// Counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A consumer waiting on `rx`, and how often it has been woken.
    fn waiting_consumer(rx: &mut Receiver<u32>) -> Arc<CountingWaker> {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut recv = std::pin::pin!(rx.recv());
        assert!(
            std::future::Future::poll(recv.as_mut(), &mut cx).is_pending(),
            "nothing queued yet"
        );
        counter
    }

    #[test]
    fn a_wake_batch_wakes_each_waiting_consumer_once_when_it_ends() {
        let (tx_a, mut rx_a) = channel(16);
        let (tx_b, mut rx_b) = channel(16);
        let (a, b) = (waiting_consumer(&mut rx_a), waiting_consumer(&mut rx_b));
        let batch = WakeBatch::begin();
        for i in 0..3 {
            tx_a.try_send(i).unwrap();
            tx_b.try_send(i).unwrap();
        }
        {
            let _nested = WakeBatch::begin();
            tx_a.try_send(3).unwrap();
        }
        let woken = |c: &Arc<CountingWaker>| c.0.load(Ordering::SeqCst);
        assert_eq!((woken(&a), woken(&b)), (0, 0), "held while the batch lives");
        drop(batch);
        assert_eq!(
            (woken(&a), woken(&b)),
            (1, 1),
            "one wake-up each at its end"
        );
        assert_eq!((rx_a.len(), rx_b.len()), (4, 3));
        // Without a batch, a push wakes a waiting consumer at once.
        while rx_a.try_recv().is_ok() {}
        let c = waiting_consumer(&mut rx_a);
        tx_a.try_send(9).unwrap();
        assert_eq!(woken(&c), 1);
    }

    #[test]
    fn the_last_sender_leaving_wakes_the_waiting_consumer() {
        let (tx, mut rx) = channel::<u32>(4);
        let tx2 = tx.clone();
        let counter = waiting_consumer(&mut rx);
        drop(tx);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "a sender is still alive"
        );
        drop(tx2);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn poll_queued_registers_the_consumer_for_a_push_or_a_bare_wake() {
        let (tx, rx) = channel::<u32>(4);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(!rx.poll_queued(&mut cx), "nothing queued");
        tx.wake_consumer();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken without an item");
        tx.wake_consumer();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "once per registration");
        assert!(!rx.poll_queued(&mut cx));
        tx.try_send(7).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2, "woken by the push");
        assert!(rx.poll_queued(&mut cx), "an item is queued");
        assert_eq!(rx.len(), 1, "and left in the queue");
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
