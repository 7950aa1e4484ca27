//! The breaker's state machine, shared by every clone of a breaker.
//!
//! The state, its generation and the half-open probe counters live in one
//! atomic word, so that every transition is a single compare-and-swap and
//! half-open admits exactly the configured number of probes however many
//! callers race for them. Results of requests admitted under an earlier
//! generation are ignored: a slow request from before a trip cannot close
//! or re-open the breaker.

use super::config::BreakerConfig;
use crate::classify::Outcome;
use crate::window::SlidingWindow;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Requests flow; results are counted.
    Closed,
    /// Requests are refused with [`BreakerOpen`](super::BreakerOpen).
    Open,
    /// A limited number of probe requests test whether the service healed.
    HalfOpen,
}

/// A change of state, passed to observers registered with
/// [`BreakerLayer::on_transition`](super::BreakerLayer::on_transition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

type Observer = Arc<dyn Fn(Transition) + Send + Sync>;

/// `state:2 | left:16 | ok:16 | generation:30`
#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(state: State, generation: u64, left: u64, ok: u64) -> Self {
        let s = match state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        };
        Word(s | (left & 0xffff) << 2 | (ok & 0xffff) << 18 | (generation & 0x3fff_ffff) << 34)
    }
    fn state(self) -> State {
        match self.0 & 3 {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }
    fn left(self) -> u64 {
        (self.0 >> 2) & 0xffff
    }
    fn ok(self) -> u64 {
        (self.0 >> 18) & 0xffff
    }
    fn generation(self) -> u64 {
        self.0 >> 34
    }
    fn next(self, state: State, left: u64) -> Word {
        Word::new(state, self.generation() + 1, left, 0)
    }
}

pub(super) struct Core<C> {
    word: AtomicU64,
    opened_at_ms: AtomicU64,
    consecutive: AtomicU32,
    window: Option<SlidingWindow>,
    config: BreakerConfig,
    open_for_ms: u64,
    base: Instant,
    observers: RwLock<Vec<Observer>>,
    pub(super) classifier: C,
}

/// One admitted request. Dropped without a result (a cancelled request),
/// it gives its probe back.
pub(super) struct Ticket<C> {
    core: Arc<Core<C>>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl<C> Core<C> {
    pub(super) fn new(config: BreakerConfig, classifier: C) -> Self {
        Self {
            word: AtomicU64::new(Word::new(State::Closed, 0, 0, 0).0),
            opened_at_ms: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            window: config.failure_rate.map(|r| SlidingWindow::new(r.window)),
            open_for_ms: config.open_for.as_millis().max(1) as u64,
            config,
            base: Instant::now(),
            observers: RwLock::new(Vec::new()),
            classifier,
        }
    }

    pub(super) fn observe(&self, observer: Observer) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    pub(super) fn state(&self) -> State {
        Word(self.word.load(Ordering::Acquire)).state()
    }

    fn now_ms(&self) -> u64 {
        crate::clock::millis_since(self.base)
    }

    fn swap(&self, from: Word, to: Word) -> bool {
        let ok = self
            .word
            .compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok && from.state() != to.state() {
            self.notify(Transition {
                from: from.state(),
                to: to.state(),
            });
        }
        ok
    }

    fn notify(&self, transition: Transition) {
        tracing::info!(from = ?transition.from, to = ?transition.to, "circuit breaker transition");
        let observers = self.observers.read().unwrap_or_else(|p| p.into_inner());
        for observer in observers.iter() {
            observer(transition);
        }
    }

    fn open(&self, from: Word) -> bool {
        self.opened_at_ms.store(self.now_ms(), Ordering::Relaxed);
        self.swap(from, from.next(State::Open, 0))
    }

    fn close(&self, from: Word) -> bool {
        self.consecutive.store(0, Ordering::Relaxed);
        if let Some(window) = &self.window {
            window.reset();
        }
        self.swap(from, from.next(State::Closed, 0))
    }
}

/// Admits a request, or refuses it while open.
pub(super) fn admit<C>(core: &Arc<Core<C>>) -> Option<Ticket<C>> {
    loop {
        let word = Word(core.word.load(Ordering::Acquire));
        let probe = match word.state() {
            State::Closed => false,
            State::Open => {
                let opened = core.opened_at_ms.load(Ordering::Relaxed);
                if core.now_ms() < opened.saturating_add(core.open_for_ms) {
                    return None;
                }
                // This caller takes the first probe as it moves to half-open.
                let probes = u64::from(core.config.half_open_probes);
                let next = word.next(State::HalfOpen, probes - 1);
                if !core.swap(word, next) {
                    continue;
                }
                return Some(Ticket::new(core, next.generation(), true));
            }
            State::HalfOpen => {
                if word.left() == 0 {
                    return None;
                }
                let next = Word::new(
                    State::HalfOpen,
                    word.generation(),
                    word.left() - 1,
                    word.ok(),
                );
                if !core.swap(word, next) {
                    continue;
                }
                true
            }
        };
        return Some(Ticket::new(core, word.generation(), probe));
    }
}

impl<C> Ticket<C> {
    fn new(core: &Arc<Core<C>>, generation: u64, probe: bool) -> Self {
        Self {
            core: core.clone(),
            generation,
            probe,
            done: false,
        }
    }

    pub(super) fn core(&self) -> &Core<C> {
        &self.core
    }

    /// Records the request's result.
    pub(super) fn record(mut self, outcome: Outcome) {
        self.done = true;
        let failure = !outcome.is_success();
        if self.probe {
            self.record_probe(failure);
        } else {
            self.record_closed(failure);
        }
    }

    fn record_probe(&self, failure: bool) {
        let core = &*self.core;
        loop {
            let word = Word(core.word.load(Ordering::Acquire));
            if word.state() != State::HalfOpen || word.generation() != self.generation {
                return;
            }
            let done = if failure {
                core.open(word)
            } else if word.ok() + 1 >= u64::from(core.config.half_open_probes) {
                core.close(word)
            } else {
                let next = Word::new(
                    State::HalfOpen,
                    word.generation(),
                    word.left(),
                    word.ok() + 1,
                );
                core.swap(word, next)
            };
            if done {
                return;
            }
        }
    }

    fn record_closed(&self, failure: bool) {
        let core = &*self.core;
        let word = Word(core.word.load(Ordering::Acquire));
        if word.state() != State::Closed || word.generation() != self.generation {
            return;
        }
        if let Some(window) = &core.window {
            window.add(usize::from(failure));
        }
        if !failure {
            // Read first: most successes follow successes, and a store
            // would pull the line into every core's cache for nothing.
            if core.consecutive.load(Ordering::Relaxed) != 0 {
                core.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        let in_a_row = core.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let by_count = core
            .config
            .consecutive_failures
            .is_some_and(|n| in_a_row >= n);
        let by_rate = match (&core.window, &core.config.failure_rate) {
            (Some(window), Some(rate)) => {
                let [succeeded, failed] = window.totals();
                let total = succeeded + failed;
                total >= i64::from(rate.min_requests)
                    && failed as f64 >= rate.threshold * total as f64
            }
            _ => false,
        };
        if by_count || by_rate {
            core.open(word);
        }
    }
}

impl<C> Drop for Ticket<C> {
    fn drop(&mut self) {
        if self.done || !self.probe {
            return;
        }
        let core = &*self.core;
        loop {
            let word = Word(core.word.load(Ordering::Acquire));
            if word.state() != State::HalfOpen || word.generation() != self.generation {
                return;
            }
            let next = Word::new(
                State::HalfOpen,
                word.generation(),
                word.left() + 1,
                word.ok(),
            );
            if core.swap(word, next) {
                return;
            }
        }
    }
}
