//! The rate-limited work queue: which keys need reconciling, handed to workers one key at a time.
//!
//! A controller does not act on watch events one by one. Its event handlers reduce each event to
//! the key of the object that needs attention (`namespace/name`) and [add](WorkQueue::add) the key
//! to a [`WorkQueue`]; workers take keys from the queue and reconcile each against the current
//! state in the cache. This is client-go's `workqueue` (`queue.go`, `delaying_queue.go`,
//! `rate_limiting_queue.go`), with the same promises:
//!
//! - **Deduplication.** A key is queued at most once. Adding a key that is already waiting does
//!   nothing: the one reconcile that will run sees every change made before it starts.
//! - **One worker per key.** A key handed to a worker is *processing* until the worker is done
//!   with it (drops its [`Processing`] guard). It is never handed to a second worker meanwhile:
//!   adding it while it is processing marks it *dirty*, and it is queued again, once, when the
//!   current processing finishes. So no change is lost, and no two reconciles of one object race.
//! - **Fairness.** Keys are handed out in the order they became ready.
//! - **Delays.** [`add_after`](WorkQueue::add_after) makes a key ready after a delay (a reconcile
//!   that wants to look again in five minutes). A key waits for at most one time: if it is already
//!   ready, or due sooner, the earlier time wins, and a plain [`add`](WorkQueue::add) makes a
//!   delayed key ready at once.
//! - **Rate-limited retries.** [`add_rate_limited`](WorkQueue::add_rate_limited) delays a key by
//!   the queue's [`RateLimiter`]: by default a per-key exponential back-off (5 ms, 10 ms, 20 ms, …
//!   up to 1000 s) and an overall token bucket (10 retries a second, bursts of 100), the longer of
//!   the two, as client-go's `DefaultControllerRateLimiter`. [`forget`](WorkQueue::forget) resets a
//!   key's back-off once it succeeds.
//! - **Shutdown.** After [`shut_down`](WorkQueue::shut_down) the queue takes no new keys and drops
//!   the delayed ones, hands out what is ready (and what becomes ready when a dirty key finishes),
//!   and then [`next`](WorkQueue::next) returns `None`.
//!
//! The queue is a cheap handle (clone it for each event handler and worker) and runs no task of
//! its own: delayed keys become ready when someone asks, and [`next`](WorkQueue::next) sleeps
//! until the earliest of them is due. All time is [`tokio::time`], so tests pause and advance it.
//!
//! # Running a reconciler
//!
//! [`WorkQueue::run`] is the worker loop: it takes keys and runs a reconcile function on each,
//! with at most `concurrency` running at once, and does what the reconcile's result says: on
//! `Ok(`[`Action::AwaitChange`]`)` it forgets the key's back-off and leaves it until someone adds
//! it again, on `Ok(`[`Action::RequeueAfter`]`(d))` it forgets the back-off and adds the key after
//! `d`, and on `Err(_)` it adds the key rate-limited. It returns a future that the caller drives
//! (it spawns nothing) and that ends once the queue is shut down and drained.
//! [`WorkQueue::run_until`] also ends when a cancellation future resolves: it shuts the queue
//! down, takes no more keys, and returns when the reconciles in flight have finished.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Mutex;
//!
//! use orchestra_core::runtime::{Action, WorkQueue};
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! rt.block_on(async {
//!     let queue = WorkQueue::new();
//!     queue.add("default/web".to_string());
//!     queue.add("default/db".to_string());
//!     queue.add("default/web".to_string()); // already waiting: not queued twice
//!     assert_eq!(queue.len(), 2);
//!
//!     // Hand out what is queued, then stop.
//!     queue.shut_down();
//!     let reconciled = Mutex::new(Vec::new());
//!     queue
//!         .run(2, |key| {
//!             reconciled.lock().unwrap().push(key);
//!             async { Ok::<_, Infallible>(Action::await_change()) }
//!         })
//!         .await;
//!     assert_eq!(reconciled.into_inner().unwrap(), ["default/web", "default/db"]);
//! });
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::rate_limit::{DefaultRateLimiter, RateLimiter};

/// What a reconcile asks for next, once it succeeded.
///
/// A failed reconcile returns an error instead, and [`WorkQueue::run`] retries the key with the
/// queue's back-off.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use orchestra_core::runtime::Action;
///
/// // Look at the object again in five minutes, even if nothing changes.
/// let action = Action::requeue(Duration::from_secs(300));
/// assert_eq!(action, Action::RequeueAfter(Duration::from_secs(300)));
/// assert_eq!(Action::await_change(), Action::AwaitChange);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Nothing more to do until the object (or something it depends on) changes and its key is
    /// added again.
    AwaitChange,
    /// Reconcile the object again after this long, even if nothing changes (a change before then
    /// reconciles it sooner).
    RequeueAfter(Duration),
}

impl Action {
    /// Reconcile again after `after`: [`Action::RequeueAfter`].
    pub const fn requeue(after: Duration) -> Action {
        Action::RequeueAfter(after)
    }

    /// Wait for the next change: [`Action::AwaitChange`].
    pub const fn await_change() -> Action {
        Action::AwaitChange
    }
}

/// A deduplicating, delaying, rate-limited queue of keys to reconcile.
///
/// See the [module documentation](crate::runtime::queue) for its promises. `WorkQueue` is a handle: clones share
/// one queue.
///
/// # Examples
///
/// A worker loop written by hand (what [`WorkQueue::run`] does for you):
///
/// ```
/// use orchestra_core::runtime::WorkQueue;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// # rt.block_on(async {
/// let queue = WorkQueue::new();
/// queue.add("default/web");
///
/// let item = queue.next().await.expect("the queue is not shut down");
/// assert_eq!(*item.key(), "default/web");
/// // Added while it is processing: not handed out again until this processing is done.
/// queue.add("default/web");
/// assert!(queue.is_empty());
/// item.done();
/// assert_eq!(queue.len(), 1);
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

/// The processing of one key, handed out by [`WorkQueue::next`]: the key is not handed out again
/// until this guard is dropped (or [`done`](Processing::done) is called).
///
/// A worker that wants the key retried calls [`WorkQueue::add_rate_limited`] or
/// [`WorkQueue::add_after`] *before* it drops the guard, as client-go's workers call
/// `AddRateLimited` before `Done`.
#[must_use = "the key stays processing, and is not handed out again, until the guard is dropped"]
pub struct Processing<K: Eq + Hash> {
    shared: Arc<Shared<K>>,
    key: K,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// Woken whenever a key may have become ready, the earliest due time moved, a key finished
    /// processing, or the queue shut down.
    changed: Notify,
}

/// The queue's state, behind one lock.
///
/// Invariants (checked by `check_invariants` in tests):
/// - `dirty` is every key that needs processing: the keys in `ready`, and the processing keys
///   that were added again while processing;
/// - `ready` holds each key of `dirty` that is not processing, once, in the order they became
///   ready;
/// - `delayed` and `timers` hold the same keys, none of them dirty (a dirty key is due now, which
///   is earlier than any delay);
/// - once shut down, nothing is delayed.
struct State<K> {
    ready: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Each delayed key's due time and its entry in `timers`.
    delayed: HashMap<K, (Instant, u64)>,
    /// Delayed keys by due time; the sequence number keeps ties in the order they were added.
    timers: BTreeMap<(Instant, u64), K>,
    next_seq: u64,
    shut_down: bool,
    limiter: Box<dyn RateLimiter<K> + Send>,
}

/// What [`State::take`] found.
enum Take<K> {
    /// A key, now processing.
    Key(K),
    /// Shut down and drained.
    Closed,
    /// Nothing ready; wait for a change, or until the earliest delayed key is due.
    Wait(Option<Instant>),
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Makes `key` dirty: queues it unless it is already waiting, or marks it to be queued when
    /// its processing finishes.
    fn enqueue(&mut self, key: K) {
        if let Some(timer) = self.delayed.remove(&key) {
            self.timers.remove(&timer);
        }
        if self.dirty.contains(&key) {
            return;
        }
        if !self.processing.contains(&key) {
            self.ready.push_back(key.clone());
        }
        self.dirty.insert(key);
    }

    /// Makes `key` due at `at`, unless it is due sooner already. Returns whether anything changed.
    fn schedule(&mut self, key: K, at: Instant) -> bool {
        if self.dirty.contains(&key) {
            return false;
        }
        if let Some(&(due, seq)) = self.delayed.get(&key) {
            if due <= at {
                return false;
            }
            self.timers.remove(&(due, seq));
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.timers.insert((at, seq), key.clone());
        self.delayed.insert(key, (at, seq));
        true
    }

    /// Makes every delayed key that is due at `now` ready, earliest first.
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.delayed.remove(&key);
            self.enqueue(key);
        }
    }

    fn take(&mut self, now: Instant) -> Take<K> {
        self.promote(now);
        if let Some(key) = self.ready.pop_front() {
            self.dirty.remove(&key);
            self.processing.insert(key.clone());
            return Take::Key(key);
        }
        // Nothing is ready, so every dirty key is processing and will be ready when it finishes.
        if self.shut_down && self.dirty.is_empty() {
            return Take::Closed;
        }
        Take::Wait(self.timers.first_key_value().map(|(&(due, _), _)| due))
    }
}

impl<K: Eq + Hash> State<K> {
    /// Ends the processing of `key`, queueing it again if it was added meanwhile.
    fn finish(&mut self, key: &K) {
        if let Some(key) = self.processing.take(key)
            && self.dirty.contains(&key)
        {
            self.ready.push_back(key);
        }
    }
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // Only a key's `Hash`, `Eq` or `Clone`, or a user's rate limiter, can panic with the lock
        // held. Go on with the state as that left it rather than fail every later call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    /// An empty queue with client-go's default rate limiter ([`DefaultRateLimiter`]).
    pub fn new() -> Self {
        WorkQueue::with_rate_limiter(DefaultRateLimiter::default())
    }

    /// An empty queue whose [`add_rate_limited`](WorkQueue::add_rate_limited) asks `limiter`.
    pub fn with_rate_limiter<R>(limiter: R) -> Self
    where
        R: RateLimiter<K> + Send + 'static,
    {
        WorkQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: HashMap::new(),
                    timers: BTreeMap::new(),
                    next_seq: 0,
                    shut_down: false,
                    limiter: Box::new(limiter),
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Marks `key` as needing processing.
    ///
    /// A key that is already waiting is not queued twice. A key that is processing is queued
    /// again, once, when its processing finishes. A key waiting for a delay is ready at once.
    /// Ignored once the queue is shut down.
    pub fn add(&self, key: K) {
        {
            let mut state = self.shared.lock();
            if state.shut_down {
                return;
            }
            state.enqueue(key);
        }
        self.shared.changed.notify_waiters();
    }

    /// Marks `key` as needing processing after `delay` (at once if `delay` is zero).
    ///
    /// A key waits for one time at most, the earliest asked for: if it is ready already, or is
    /// processing and was added again, or is delayed until sooner, this does nothing; if it is
    /// delayed until later, it is now due sooner. A delay too long to represent as an instant
    /// (such as [`Duration::MAX`]) never comes due, and is ignored. Ignored once the queue is shut
    /// down.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use orchestra_core::runtime::WorkQueue;
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread()
    /// #     .enable_time()
    /// #     .start_paused(true)
    /// #     .build()?;
    /// # rt.block_on(async {
    /// let queue = WorkQueue::new();
    /// queue.add_after("default/web", Duration::from_secs(60));
    /// queue.add_after("default/web", Duration::from_secs(10)); // sooner: wins
    /// assert!(queue.is_empty());
    ///
    /// tokio::time::sleep(Duration::from_secs(10)).await;
    /// assert_eq!(queue.len(), 1);
    /// # });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let now = Instant::now();
        let Some(at) = now.checked_add(delay) else {
            return;
        };
        {
            let mut state = self.shared.lock();
            if state.shut_down || !state.schedule(key, at) {
                return;
            }
        }
        self.shared.changed.notify_waiters();
    }

    /// Marks `key` as needing processing after the delay its rate limiter gives it now: by
    /// default, its exponential back-off or the overall token bucket's delay, whichever is
    /// longer. Each call counts as one more failure of the key until it is
    /// [forgotten](WorkQueue::forget). Ignored once the queue is shut down.
    pub fn add_rate_limited(&self, key: K) {
        let now = Instant::now();
        let delay = {
            let mut state = self.shared.lock();
            if state.shut_down {
                return;
            }
            state.limiter.when(&key, now)
        };
        self.add_after(key, delay);
    }

    /// Resets `key`'s back-off: its next [`add_rate_limited`](WorkQueue::add_rate_limited) waits
    /// as after a first failure. Call it when the key's processing succeeds. It does not remove
    /// the key from the queue.
    pub fn forget(&self, key: &K) {
        self.shared.lock().limiter.forget(key);
    }

    /// How many times `key` was added rate-limited since it was last
    /// [forgotten](WorkQueue::forget), as the rate limiter counts.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.shared.lock().limiter.num_requeues(key)
    }

    /// Waits for a ready key and hands it out, now processing; `None` once the queue is shut down
    /// and drained.
    ///
    /// Keys come out in the order they became ready; a delayed key becomes ready when it is due.
    /// After [`shut_down`](WorkQueue::shut_down), `next` still hands out the keys that are ready
    /// and the dirty keys that become ready when their processing finishes, and returns `None`
    /// once there are none. It is cancel-safe: a `next` dropped before it returns takes no key.
    pub async fn next(&self) -> Option<Processing<K>> {
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            // Register before looking, so that a change made after the look wakes us.
            changed.as_mut().enable();
            let due = match self.shared.lock().take(Instant::now()) {
                Take::Key(key) => {
                    return Some(Processing {
                        shared: Arc::clone(&self.shared),
                        key,
                    });
                }
                Take::Closed => return None,
                Take::Wait(due) => due,
            };
            match due {
                Some(due) => {
                    tokio::select! {
                        biased;
                        () = changed => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// How many keys are ready to be handed out now. Keys that are processing, and delayed keys
    /// not yet due, are not counted (as client-go's `Len`).
    pub fn len(&self) -> usize {
        let mut state = self.shared.lock();
        state.promote(Instant::now());
        state.ready.len()
    }

    /// Whether no key is ready to be handed out now (see [`len`](WorkQueue::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts the queue down: it takes no more keys, drops the delayed ones, and
    /// [`next`](WorkQueue::next) returns `None` once the ready keys (and the dirty keys still
    /// processing) have been handed out. Waiting callers of `next` wake up.
    pub fn shut_down(&self) {
        {
            let mut state = self.shared.lock();
            state.shut_down = true;
            state.delayed.clear();
            state.timers.clear();
        }
        self.shared.changed.notify_waiters();
    }

    /// Whether [`shut_down`](WorkQueue::shut_down) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.lock().shut_down
    }

    /// Shuts the queue down and waits until it is drained: no key ready and none processing.
    ///
    /// As client-go's `ShutDownWithDrain`, this waits for the workers: it returns only once
    /// someone has taken every ready key with [`next`](WorkQueue::next) and finished it.
    pub async fn shut_down_with_drain(&self) {
        self.shut_down();
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.ready.is_empty() && state.processing.is_empty() {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Runs `reconcile` on the keys of the queue, at most `concurrency` at once (a `concurrency`
    /// of 0 counts as 1), until the queue is shut down and drained.
    ///
    /// Each key is processing while its reconcile runs, so one key is never reconciled twice at
    /// once. When the reconcile finishes, the key is:
    ///
    /// - `Ok(`[`Action::AwaitChange`]`)`: [forgotten](WorkQueue::forget), and left until it is
    ///   added again;
    /// - `Ok(`[`Action::RequeueAfter`]`(d))`: forgotten, and [added after](WorkQueue::add_after)
    ///   `d`;
    /// - `Err(_)`: [added rate-limited](WorkQueue::add_rate_limited), to be retried with back-off.
    ///   The error is not reported further: log it in `reconcile` if you want it seen.
    ///
    /// The returned future does all the work when the caller drives it; it spawns no task.
    /// Several `run`s may share one queue. See [`run_until`](WorkQueue::run_until) to stop on a
    /// signal.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use orchestra_core::runtime::{Action, WorkQueue};
    ///
    /// #[derive(Debug)]
    /// struct NotYet;
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread()
    /// #     .enable_time()
    /// #     .start_paused(true)
    /// #     .build()?;
    /// # rt.block_on(async {
    /// let queue = WorkQueue::new();
    /// queue.add("default/web".to_string());
    /// let attempts = std::sync::atomic::AtomicU32::new(0);
    /// let worker = queue.run(4, |_key| {
    ///     let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ///     async move {
    ///         // Fail twice, then succeed: retried after 5 ms and 10 ms.
    ///         if attempt < 2 { Err(NotYet) } else { Ok(Action::await_change()) }
    ///     }
    /// });
    /// let stop = async {
    ///     tokio::time::sleep(Duration::from_secs(1)).await;
    ///     queue.shut_down();
    /// };
    /// tokio::join!(worker, stop);
    /// assert_eq!(attempts.into_inner(), 3);
    /// # });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn run<F, Fut, E>(&self, concurrency: usize, reconcile: F)
    where
        F: FnMut(K) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
    {
        self.run_until(concurrency, reconcile, std::future::pending())
            .await;
    }

    /// [`run`](WorkQueue::run), stopping also when `cancel` resolves.
    ///
    /// On cancellation the queue is [shut down](WorkQueue::shut_down) and no further key is taken
    /// (keys still ready are left unprocessed, and the retries asked for by the reconciles in
    /// flight are ignored); the future returns as soon as the reconciles in flight have finished.
    /// Without cancellation it returns once the queue is shut down and drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    ///
    /// use orchestra_core::runtime::{Action, WorkQueue};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread()
    /// #     .enable_time()
    /// #     .start_paused(true)
    /// #     .build()?;
    /// # rt.block_on(async {
    /// let queue = WorkQueue::new();
    /// queue.add("default/web");
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let worker = queue.run_until(
    ///     1,
    ///     |_key| async { Ok::<_, Infallible>(Action::requeue(Duration::from_secs(30))) },
    ///     async {
    ///         let _ = stopped.await;
    ///     },
    /// );
    /// let _ = stop.send(());
    /// worker.await;
    /// assert!(queue.is_shut_down());
    /// # });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn run_until<F, Fut, E, C>(&self, concurrency: usize, mut reconcile: F, cancel: C)
    where
        F: FnMut(K) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        C: Future<Output = ()>,
    {
        let limit = concurrency.max(1);
        let mut cancel = pin!(cancel);
        let mut cancelled = false;
        let mut taking = true;
        let mut in_flight = FuturesUnordered::new();
        while taking || !in_flight.is_empty() {
            tokio::select! {
                biased;
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    taking = false;
                    self.shut_down();
                }
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                item = self.next(), if taking && in_flight.len() < limit => match item {
                    Some(item) => {
                        let reconciling = reconcile(item.key().clone());
                        in_flight.push(self.settle(item, reconciling));
                    }
                    None => taking = false,
                },
                else => break,
            }
        }
    }

    /// Awaits one reconcile and does what its result says, then ends the key's processing.
    async fn settle<Fut, E>(&self, item: Processing<K>, reconciling: Fut)
    where
        Fut: Future<Output = Result<Action, E>>,
    {
        let result = reconciling.await;
        let key = item.key();
        match result {
            Ok(Action::AwaitChange) => self.forget(key),
            Ok(Action::RequeueAfter(after)) => {
                self.forget(key);
                self.add_after(key.clone(), after);
            }
            Err(_) => self.add_rate_limited(key.clone()),
        }
        item.done();
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue::new()
    }
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for WorkQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("WorkQueue")
            .field("ready", &state.ready.len())
            .field("processing", &state.processing.len())
            .field("delayed", &state.delayed.len())
            .field("shut_down", &state.shut_down)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash> Processing<K> {
    /// The key being processed.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Ends the processing (as dropping the guard does): the key can be handed out again, and is
    /// queued again at once if it was added while processing.
    pub fn done(self) {}
}

impl<K: Eq + Hash> Drop for Processing<K> {
    fn drop(&mut self) {
        self.shared.lock().finish(&self.key);
        self.shared.changed.notify_waiters();
    }
}

impl<K: Eq + Hash + fmt::Debug> fmt::Debug for Processing<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processing")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::convert::Infallible;
    use std::rc::Rc;

    use futures_util::FutureExt;
    use proptest::prelude::*;
    use tokio::time::{advance, sleep};

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    impl<K: Clone + Eq + Hash + fmt::Debug> State<K> {
        fn check_invariants(&self) {
            let ready: HashSet<&K> = self.ready.iter().collect();
            assert_eq!(ready.len(), self.ready.len(), "a key is ready twice");
            for key in &self.ready {
                assert!(self.dirty.contains(key), "{key:?} is ready but not dirty");
                assert!(
                    !self.processing.contains(key),
                    "{key:?} is ready and processing"
                );
            }
            for key in &self.dirty {
                assert!(
                    ready.contains(key) || self.processing.contains(key),
                    "{key:?} is dirty but neither ready nor processing"
                );
                assert!(
                    !self.delayed.contains_key(key),
                    "{key:?} is dirty and delayed"
                );
            }
            assert_eq!(self.delayed.len(), self.timers.len());
            for (key, timer) in &self.delayed {
                assert_eq!(self.timers.get(timer), Some(key));
            }
            if self.shut_down {
                assert!(self.delayed.is_empty());
            }
        }
    }

    /// Takes a ready key without waiting.
    fn try_next<K: Clone + Eq + Hash + Send + Sync + 'static>(
        queue: &WorkQueue<K>,
    ) -> Option<Processing<K>> {
        queue.next().now_or_never().flatten()
    }

    /// Takes every ready key without waiting, finishing each at once.
    fn drain<K: Clone + Eq + Hash + Send + Sync + 'static>(queue: &WorkQueue<K>) -> Vec<K> {
        std::iter::from_fn(|| try_next(queue).map(|item| item.key().clone())).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn add_deduplicates_waiting_keys() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        queue.add("b");
        queue.add("c");
        assert_eq!(queue.len(), 3);
        assert_eq!(drain(&queue), ["a", "b", "c"]);
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_while_processing_requeues_once_after_done() {
        let queue = WorkQueue::new();
        queue.add("a");
        let item = try_next(&queue).unwrap();
        queue.add("a");
        queue.add("a");
        assert!(queue.is_empty(), "a processing key is not ready");
        assert!(try_next(&queue).is_none(), "never handed out twice at once");
        drop(item);
        assert_eq!(queue.len(), 1);
        assert_eq!(drain(&queue), ["a"]);
        assert!(queue.is_empty(), "requeued once, not once per add");
    }

    #[tokio::test(start_paused = true)]
    async fn done_without_readd_does_not_requeue() {
        let queue = WorkQueue::new();
        queue.add("a");
        try_next(&queue).unwrap().done();
        assert!(queue.is_empty());
        queue.add("a");
        assert_eq!(drain(&queue), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_getter_wakes_on_add() {
        let queue = WorkQueue::new();
        let getter = queue.next();
        let adder = async {
            sleep(ms(10)).await;
            queue.add(7);
        };
        let (item, ()) = tokio::join!(getter, adder);
        assert_eq!(item.map(|item| *item.key()), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_waits_for_its_delay() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        queue.add_after("a", ms(100));
        assert!(queue.is_empty());
        advance(ms(99)).await;
        assert!(queue.is_empty());
        advance(ms(1)).await;
        assert_eq!(queue.len(), 1);

        queue.add_after("b", ms(50));
        let item = queue.next().await.unwrap();
        assert_eq!(*item.key(), "a");
        let item = queue.next().await.unwrap();
        assert_eq!(*item.key(), "b");
        assert_eq!(start.elapsed(), ms(150), "next sleeps until the key is due");
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_orders_by_due_time() {
        let queue = WorkQueue::new();
        queue.add_after("c", ms(30));
        queue.add_after("a", ms(10));
        queue.add_after("b", ms(20));
        queue.add_after("d", ms(20));
        advance(ms(30)).await;
        assert_eq!(drain(&queue), ["a", "b", "d", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_earlier_time_wins() {
        let queue = WorkQueue::new();
        queue.add_after("a", ms(100));
        queue.add_after("a", ms(10));
        queue.add_after("a", ms(50));
        advance(ms(10)).await;
        assert_eq!(drain(&queue), ["a"]);
        advance(ms(1000)).await;
        assert!(
            queue.is_empty(),
            "the later times were merged into the earliest"
        );

        // A ready key is due now, which beats any delay.
        queue.add("b");
        queue.add_after("b", ms(10));
        assert_eq!(drain(&queue), ["b"]);
        advance(ms(10)).await;
        assert!(queue.is_empty());

        // A plain add makes a delayed key ready at once.
        queue.add_after("c", ms(10));
        queue.add("c");
        assert_eq!(drain(&queue), ["c"]);
        advance(ms(10)).await;
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_while_processing_waits_for_both() {
        let queue = WorkQueue::new();
        queue.add("a");
        let item = try_next(&queue).unwrap();
        queue.add_after("a", ms(10));
        advance(ms(20)).await;
        assert!(queue.is_empty(), "due, but still processing");
        drop(item);
        assert_eq!(drain(&queue), ["a"]);

        // Done before the delay: it waits for the delay.
        queue.add("a");
        let item = try_next(&queue).unwrap();
        queue.add_after("a", ms(10));
        drop(item);
        assert!(queue.is_empty());
        advance(ms(10)).await;
        assert_eq!(drain(&queue), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_zero_or_forever() {
        let queue = WorkQueue::new();
        queue.add_after("now", Duration::ZERO);
        queue.add_after("never", Duration::MAX);
        assert_eq!(drain(&queue), ["now"]);
        queue.shared.lock().check_invariants();
        assert!(queue.shared.lock().delayed.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_getter_wakes_for_an_earlier_delay() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        queue.add_after("late", Duration::from_secs(60));
        let getter = queue.next();
        let adder = async {
            sleep(ms(10)).await;
            queue.add_after("early", ms(10));
        };
        let (item, ()) = tokio::join!(getter, adder);
        assert_eq!(item.map(|item| *item.key()), Some("early"));
        assert_eq!(start.elapsed(), ms(20));
    }

    #[tokio::test(start_paused = true)]
    async fn add_rate_limited_backs_off_exponentially() {
        let queue = WorkQueue::new();
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            queue.add_rate_limited("a");
            let item = queue.next().await.unwrap();
            waits.push(before.elapsed());
            drop(item);
        }
        assert_eq!(waits, [ms(5), ms(10), ms(20), ms(40), ms(80), ms(160)]);
        assert_eq!(queue.num_requeues(&"a"), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_resets_the_backoff() {
        let queue = WorkQueue::new();
        for _ in 0..4 {
            queue.add_rate_limited("a");
        }
        assert_eq!(queue.num_requeues(&"a"), 4);
        queue.forget(&"a");
        assert_eq!(queue.num_requeues(&"a"), 0);
        advance(ms(5)).await;
        assert_eq!(drain(&queue), ["a"], "still queued after forget");

        let before = Instant::now();
        queue.add_rate_limited("a");
        queue.next().await.unwrap().done();
        assert_eq!(before.elapsed(), ms(5));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_limits_a_burst_of_retries() {
        let queue = WorkQueue::new();
        for key in 0..110 {
            queue.add_rate_limited(key);
        }
        advance(ms(5)).await;
        assert_eq!(queue.len(), 100, "the burst goes after the first back-off");
        let mut times = Vec::new();
        let start = Instant::now();
        for _ in 0..110 {
            let item = queue.next().await.unwrap();
            times.push((*item.key(), start.elapsed()));
        }
        // The other ten come one every 100 ms.
        let rest: Vec<_> = times[100..].to_vec();
        let expected: Vec<_> = (100..110)
            .map(|key| (key, ms(100 * (key - 99)) - ms(5)))
            .collect();
        assert_eq!(rest, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn custom_rate_limiter_is_used() {
        #[derive(Debug)]
        struct Fixed;
        impl RateLimiter<&'static str> for Fixed {
            fn when(&mut self, _key: &&'static str, _now: Instant) -> Duration {
                Duration::from_secs(7)
            }
            fn forget(&mut self, _key: &&'static str) {}
            fn num_requeues(&self, _key: &&'static str) -> u32 {
                42
            }
        }
        let queue = WorkQueue::with_rate_limiter(Fixed);
        let start = Instant::now();
        queue.add_rate_limited("a");
        queue.next().await.unwrap().done();
        assert_eq!(start.elapsed(), Duration::from_secs(7));
        assert_eq!(queue.num_requeues(&"a"), 42);
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_drains_then_returns_none() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add_after("delayed", ms(10));
        queue.shut_down();
        assert!(queue.is_shut_down());
        queue.add("c");
        queue.add_after("d", ms(1));
        queue.add_rate_limited("e");
        assert_eq!(
            queue.num_requeues(&"e"),
            0,
            "a shut-down queue asks no limiter"
        );
        let a = queue.next().await.unwrap();
        let b = queue.next().await.unwrap();
        assert_eq!((*a.key(), *b.key()), ("a", "b"));
        drop((a, b));
        assert!(queue.next().await.is_none());
        advance(ms(100)).await;
        assert!(queue.next().await.is_none(), "delayed keys were dropped");
        queue.shared.lock().check_invariants();
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_wakes_waiting_getters() {
        let queue = WorkQueue::<u32>::new();
        queue.add_after(1, Duration::from_secs(3600));
        let getters = futures_util::future::join(queue.next(), queue.next());
        let stopper = async {
            sleep(ms(10)).await;
            queue.shut_down();
        };
        let ((first, second), ()) = tokio::join!(getters, stopper);
        assert!(first.is_none() && second.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_still_hands_out_keys_dirty_while_processing() {
        let queue = WorkQueue::new();
        queue.add("a");
        let item = queue.next().await.unwrap();
        queue.add("a");
        queue.shut_down();
        let getter = queue.next();
        let worker = async {
            sleep(ms(10)).await;
            drop(item);
        };
        let (again, ()) = tokio::join!(getter, worker);
        assert_eq!(again.as_ref().map(|item| *item.key()), Some("a"));
        drop(again);
        assert!(queue.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_with_drain_waits_for_processing() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        let a = queue.next().await.unwrap();
        let start = Instant::now();
        let drained = queue.shut_down_with_drain();
        let worker = async {
            sleep(ms(10)).await;
            drop(a);
            let b = queue.next().await.unwrap();
            sleep(ms(10)).await;
            drop(b);
            assert!(queue.next().await.is_none());
        };
        tokio::join!(drained, worker);
        assert_eq!(start.elapsed(), ms(20));
    }

    /// Records how many reconciles run at once, overall and per key.
    #[derive(Debug, Default)]
    struct Gauge {
        running: usize,
        max_running: usize,
        per_key: HashMap<u32, usize>,
        runs: usize,
    }

    impl Gauge {
        fn enter(gauge: &RefCell<Gauge>, key: u32) {
            let mut gauge = gauge.borrow_mut();
            gauge.running += 1;
            gauge.runs += 1;
            gauge.max_running = gauge.max_running.max(gauge.running);
            let on_key = gauge.per_key.entry(key).or_default();
            *on_key += 1;
            assert_eq!(*on_key, 1, "key {key} reconciled twice at once");
        }

        fn leave(gauge: &RefCell<Gauge>, key: u32) {
            let mut gauge = gauge.borrow_mut();
            gauge.running -= 1;
            if let Some(on_key) = gauge.per_key.get_mut(&key) {
                *on_key -= 1;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runner_never_reconciles_one_key_twice_at_once() {
        let queue = WorkQueue::new();
        let gauge = RefCell::new(Gauge::default());
        let worker = queue.run(8, |key: u32| {
            let gauge = &gauge;
            async move {
                Gauge::enter(gauge, key);
                sleep(ms(1 + u64::from(key) * 7 % 13)).await;
                Gauge::leave(gauge, key);
                Ok::<_, Infallible>(Action::await_change())
            }
        });
        let producer = async {
            for round in 0..500u32 {
                queue.add(round * 31 % 3);
                if round % 4 == 0 {
                    sleep(ms(1)).await;
                }
            }
            sleep(ms(100)).await;
            queue.shut_down();
        };
        tokio::join!(worker, producer);
        let gauge = gauge.into_inner();
        assert!(gauge.max_running <= 3, "only three keys");
        assert!(gauge.max_running >= 2, "keys do run side by side");
        assert!(
            gauge.runs > 3,
            "keys added during processing are reconciled again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_respects_the_concurrency_limit() {
        let queue = WorkQueue::new();
        for key in 0..100 {
            queue.add(key);
        }
        queue.shut_down();
        let gauge = RefCell::new(Gauge::default());
        let start = Instant::now();
        queue
            .run(8, |key: u32| {
                let gauge = &gauge;
                async move {
                    Gauge::enter(gauge, key);
                    sleep(ms(10)).await;
                    Gauge::leave(gauge, key);
                    Ok::<_, Infallible>(Action::await_change())
                }
            })
            .await;
        let gauge = gauge.into_inner();
        assert_eq!(gauge.max_running, 8);
        assert_eq!(gauge.runs, 100);
        // 100 keys, 8 at a time, 10 ms each: 13 rounds.
        assert_eq!(start.elapsed(), ms(130));
    }

    #[tokio::test(start_paused = true)]
    async fn runner_with_zero_concurrency_runs_one_at_a_time() {
        let queue = WorkQueue::new();
        for key in 0..5 {
            queue.add(key);
        }
        queue.shut_down();
        let gauge = RefCell::new(Gauge::default());
        queue
            .run(0, |key: u32| {
                let gauge = &gauge;
                async move {
                    Gauge::enter(gauge, key);
                    sleep(ms(10)).await;
                    Gauge::leave(gauge, key);
                    Ok::<_, Infallible>(Action::await_change())
                }
            })
            .await;
        let gauge = gauge.into_inner();
        assert_eq!((gauge.max_running, gauge.runs), (1, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn runner_requeues_after_the_asked_delay() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        queue.add("a");
        let runs = RefCell::new(Vec::new());
        let worker = queue.run(2, |key| {
            runs.borrow_mut().push((key, start.elapsed()));
            async { Ok::<_, Infallible>(Action::requeue(Duration::from_secs(30))) }
        });
        let stopper = async {
            sleep(Duration::from_secs(100)).await;
            queue.shut_down();
        };
        tokio::join!(worker, stopper);
        let secs = |n| Duration::from_secs(n);
        assert_eq!(
            runs.into_inner(),
            [
                ("a", secs(0)),
                ("a", secs(30)),
                ("a", secs(60)),
                ("a", secs(90))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_change_during_requeue_delay_reconciles_sooner() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        queue.add("a");
        let runs = RefCell::new(Vec::new());
        let worker = queue.run(1, |_key| {
            runs.borrow_mut().push(start.elapsed());
            async { Ok::<_, Infallible>(Action::requeue(Duration::from_secs(30))) }
        });
        let changer = async {
            sleep(Duration::from_secs(10)).await;
            queue.add("a");
            sleep(Duration::from_secs(35)).await;
            queue.shut_down();
        };
        tokio::join!(worker, changer);
        let secs = |n| Duration::from_secs(n);
        assert_eq!(runs.into_inner(), [secs(0), secs(10), secs(40)]);
    }

    #[tokio::test(start_paused = true)]
    async fn runner_retries_errors_with_backoff_and_forgets_on_success() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        queue.add("a");
        let runs = RefCell::new(Vec::new());
        let requeues = RefCell::new(Vec::new());
        let worker = queue.run(1, |key| {
            let attempt = runs.borrow().len();
            runs.borrow_mut().push(start.elapsed());
            requeues.borrow_mut().push(queue.num_requeues(&key));
            async move {
                sleep(ms(1)).await;
                if attempt < 4 {
                    Err("not yet")
                } else {
                    Ok(Action::await_change())
                }
            }
        });
        let stopper = async {
            sleep(Duration::from_secs(10)).await;
            assert_eq!(queue.num_requeues(&"a"), 0, "forgotten after success");
            queue.shut_down();
        };
        tokio::join!(worker, stopper);
        // Each attempt takes 1 ms, then waits 5, 10, 20, 40 ms.
        assert_eq!(runs.into_inner(), [ms(0), ms(6), ms(17), ms(38), ms(79)]);
        assert_eq!(requeues.into_inner(), [0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn runner_stops_on_cancel_after_in_flight_work() {
        let start = Instant::now();
        let queue = WorkQueue::new();
        for key in 0..10 {
            queue.add(key);
        }
        let finished = RefCell::new(Vec::new());
        queue
            .run_until(
                2,
                |key: u32| {
                    let finished = &finished;
                    async move {
                        sleep(ms(100)).await;
                        finished.borrow_mut().push(key);
                        // Asks for a retry that the shut-down queue ignores.
                        Err::<Action, _>("retry")
                    }
                },
                sleep(ms(150)),
            )
            .await;
        // Keys 0 and 1 ran in [0, 100 ms), 2 and 3 were in flight at the signal and finished.
        assert_eq!(finished.into_inner(), [0, 1, 2, 3]);
        assert_eq!(start.elapsed(), ms(200));
        assert!(queue.is_shut_down());
        assert_eq!(queue.len(), 6, "keys not yet taken are left");
        queue.shared.lock().check_invariants();
        assert!(queue.shared.lock().processing.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn runner_on_an_idle_queue_stops_on_cancel_at_once() {
        let start = Instant::now();
        let queue = WorkQueue::<u32>::new();
        queue
            .run_until(
                4,
                |_key| async { Ok::<_, Infallible>(Action::await_change()) },
                sleep(ms(10)),
            )
            .await;
        assert_eq!(start.elapsed(), ms(10));
    }

    #[tokio::test(start_paused = true)]
    async fn two_runners_share_a_queue() {
        let queue = WorkQueue::new();
        for key in 0..20 {
            queue.add(key);
        }
        queue.shut_down();
        let gauge = Rc::new(RefCell::new(Gauge::default()));
        let reconcile = |key: u32| {
            let gauge = Rc::clone(&gauge);
            async move {
                Gauge::enter(&gauge, key);
                sleep(ms(10)).await;
                Gauge::leave(&gauge, key);
                Ok::<_, Infallible>(Action::await_change())
            }
        };
        tokio::join!(queue.run(2, reconcile), queue.run(3, reconcile));
        let gauge = gauge.borrow();
        assert_eq!((gauge.max_running, gauge.runs), (5, 20));
    }

    /// Four runners on four threads, sharing one queue of five keys: the runner futures are
    /// `Send`, a key is never reconciled twice at once across threads, and every key is
    /// reconciled after its last add.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn runners_on_many_threads_never_share_a_key() {
        use std::sync::atomic::{AtomicU64, Ordering};

        const KEYS: usize = 5;
        let queue = WorkQueue::new();
        let clock = Arc::new(AtomicU64::new(1));
        let running: Arc<Vec<Mutex<bool>>> =
            Arc::new((0..KEYS).map(|_| Mutex::new(false)).collect());
        let last_start: Arc<Vec<AtomicU64>> =
            Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                let (clock, running, last_start) = (
                    Arc::clone(&clock),
                    Arc::clone(&running),
                    Arc::clone(&last_start),
                );
                tokio::spawn(async move {
                    queue
                        .run(4, move |key: usize| {
                            let (clock, running, last_start) = (
                                Arc::clone(&clock),
                                Arc::clone(&running),
                                Arc::clone(&last_start),
                            );
                            async move {
                                let stamp = clock.fetch_add(1, Ordering::SeqCst);
                                last_start[key].store(stamp, Ordering::SeqCst);
                                {
                                    let mut busy = running[key].lock().unwrap();
                                    assert!(!*busy, "key {key} reconciled twice at once");
                                    *busy = true;
                                }
                                tokio::task::yield_now().await;
                                *running[key].lock().unwrap() = false;
                                Ok::<_, Infallible>(Action::await_change())
                            }
                        })
                        .await;
                })
            })
            .collect();
        let mut last_add = [0; KEYS];
        for round in 0..5000 {
            let key = round * 7 % KEYS;
            last_add[key] = clock.fetch_add(1, Ordering::SeqCst);
            queue.add(key);
            if round % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        queue.shut_down();
        for runner in runners {
            runner.await.unwrap();
        }
        for key in 0..KEYS {
            assert!(
                last_start[key].load(Ordering::SeqCst) > last_add[key],
                "key {key} not reconciled after its last add"
            );
        }
        assert!(queue.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn processing_guard_reports_its_key() {
        let queue = WorkQueue::new();
        queue.add("default/web".to_string());
        let item = queue.next().await.unwrap();
        assert_eq!(item.key(), "default/web");
        assert_eq!(
            format!("{item:?}"),
            r#"Processing { key: "default/web", .. }"#
        );
        assert_eq!(
            format!("{queue:?}"),
            "WorkQueue { ready: 0, processing: 1, delayed: 0, shut_down: false, .. }"
        );
    }

    /// One step of the model-based test.
    #[derive(Clone, Debug)]
    enum Op {
        Add(u8),
        AddAfter(u8, u64),
        AddRateLimited(u8),
        Forget(u8),
        /// Take a ready key, if there is one.
        Next,
        /// Finish the n-th (modulo) key being processed.
        Done(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = 0u8..5;
        prop_oneof![
            3 => key.clone().prop_map(Op::Add),
            3 => (key.clone(), 1u64..200).prop_map(|(key, ms)| Op::AddAfter(key, ms)),
            1 => key.clone().prop_map(Op::AddRateLimited),
            1 => key.prop_map(Op::Forget),
            4 => Just(Op::Next),
            3 => any::<usize>().prop_map(Op::Done),
            2 => (0u64..100).prop_map(Op::Advance),
        ]
    }

    /// The reference model: for each key, when the earliest add not yet served by a processing
    /// that started after it is due.
    #[derive(Debug, Default)]
    struct Model {
        due: HashMap<u8, Instant>,
        limiter: DefaultRateLimiter<u8>,
        processing: Vec<Processing<u8>>,
    }

    impl Model {
        fn want(&mut self, key: u8, at: Instant) {
            let due = self.due.entry(key).or_insert(at);
            *due = (*due).min(at);
        }

        fn is_processing(&self, key: u8) -> bool {
            self.processing.iter().any(|item| *item.key() == key)
        }

        /// The keys that the queue must hand out now: due, and not processing.
        fn ready(&self, now: Instant) -> BTreeSet<u8> {
            self.due
                .iter()
                .filter(|&(&key, &due)| due <= now && !self.is_processing(key))
                .map(|(&key, _)| key)
                .collect()
        }
    }

    async fn check_against_model(ops: Vec<Op>) {
        let queue = WorkQueue::<u8>::new();
        let mut model = Model::default();
        for op in ops {
            let now = Instant::now();
            match op {
                Op::Add(key) => {
                    queue.add(key);
                    model.want(key, now);
                }
                Op::AddAfter(key, delay) => {
                    queue.add_after(key, ms(delay));
                    model.want(key, now + ms(delay));
                }
                Op::AddRateLimited(key) => {
                    queue.add_rate_limited(key);
                    let delay = model.limiter.when(&key, now);
                    model.want(key, now + delay);
                }
                Op::Forget(key) => {
                    queue.forget(&key);
                    model.limiter.forget(&key);
                }
                Op::Next => {
                    let expected = model.ready(now);
                    match try_next(&queue) {
                        Some(item) => {
                            let key = *item.key();
                            assert!(!model.is_processing(key), "{key} handed out twice at once");
                            assert!(expected.contains(&key), "{key} handed out but not due");
                            model.due.remove(&key);
                            model.processing.push(item);
                        }
                        None => assert!(expected.is_empty(), "{expected:?} due but not handed out"),
                    }
                }
                Op::Done(n) => {
                    if !model.processing.is_empty() {
                        let n = n % model.processing.len();
                        model.processing.swap_remove(n).done();
                    }
                }
                Op::Advance(by) => advance(ms(by)).await,
            }
            let now = Instant::now();
            assert_eq!(queue.len(), model.ready(now).len());
            let state = queue.shared.lock();
            state.check_invariants();
            let dirty: BTreeSet<u8> = state.dirty.iter().copied().collect();
            let due_now: BTreeSet<u8> = model
                .due
                .iter()
                .filter(|&(_, &due)| due <= now)
                .map(|(&key, _)| key)
                .collect();
            assert_eq!(dirty, due_now, "dirty keys are exactly the due ones");
            let delayed: BTreeSet<u8> = state.delayed.keys().copied().collect();
            let not_yet: BTreeSet<u8> = model.due.keys().copied().collect();
            assert_eq!(delayed, &not_yet - &due_now, "delayed keys are the others");
        }

        // Finish everything and let every delay pass: every key still wanted is handed out
        // exactly once, and then nothing is left.
        model.processing.clear();
        advance(Duration::from_secs(4000)).await;
        let mut served = drain(&queue);
        served.sort_unstable();
        let wanted: Vec<u8> = model
            .due
            .keys()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(served, wanted);
        queue.shut_down();
        assert!(queue.next().await.is_none());
    }

    proptest! {
        #[test]
        fn queue_matches_model(ops in proptest::collection::vec(op(), 0..200)) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(check_against_model(ops));
        }
    }
}
