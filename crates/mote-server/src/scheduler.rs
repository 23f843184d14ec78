//! The scheduler thread: owns the model's [`Backend`], keeps `N` slots (one KV cache each)
//! and a bounded queue of requests waiting for a slot, and steps every active slot in turn.
//!
//! Each step prefills at most one prompt chunk per slot and then runs one decode token for
//! every decoding slot through [`Backend::forward_batch`] (a loop over slots unless the
//! engine batches them). A slot keeps its cache and the tokens in it after a request ends,
//! so a later request sharing a prompt prefix (a chat that goes on) only computes the rest.
//!
//! Requests talk back through an unbounded channel of [`GenEvent`]s; when the receiving side
//! is dropped (the client went away) the generation is cancelled and its slot freed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Backend, Frontend};
use crate::metrics::Metrics;
use mote_session::stream::TextStream;
use mote_session::Sampler;

/// Prompt tokens computed per slot per step, so one long prompt does not stall the
/// streams of the other slots for its whole prefill.
const PREFILL_CHUNK: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug)]
pub enum GenEvent {
    Text(String),
    Done { finish: FinishReason, usage: Usage },
    Error(String),
}

pub struct GenRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub stops: Vec<String>,
    /// Built (and its settings checked) by the handler, so bad settings are a 400.
    pub sampler: Sampler,
    pub events: UnboundedSender<GenEvent>,
    pub arrived: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {0} requests are already waiting")]
    QueueFull(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Queue {
    waiting: VecDeque<GenRequest>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Requests accepted and not yet finished (waiting or in a slot).
    in_flight: AtomicUsize,
    /// Most requests in flight: slots plus the queue.
    capacity: usize,
    metrics: Arc<Metrics>,
}

/// The handlers' side of the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SchedulerHandle {
    pub fn submit(&self, req: GenRequest) -> Result<(), SubmitError> {
        let mut q = self
            .shared
            .queue
            .lock()
            .map_err(|_| SubmitError::ShuttingDown)?;
        if q.shutdown {
            return Err(SubmitError::ShuttingDown);
        }
        if self.shared.in_flight.load(Ordering::Relaxed) >= self.shared.capacity {
            self.shared
                .metrics
                .rejected_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::QueueFull(q.waiting.len()));
        }
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        q.waiting.push_back(req);
        self.shared
            .metrics
            .queue_depth
            .store(q.waiting.len() as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Ends every generation (clients get an error event), refuses new requests and waits
    /// for the scheduler thread to exit.
    pub fn shutdown(&self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.shutdown = true;
        }
        self.shared.wake.notify_all();
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Starts the scheduler thread.
pub fn spawn(
    backend: Box<dyn Backend>,
    frontend: Arc<dyn Frontend>,
    n_slots: usize,
    n_ctx: usize,
    max_queue: usize,
    metrics: Arc<Metrics>,
) -> SchedulerHandle {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            waiting: VecDeque::new(),
            shutdown: false,
        }),
        wake: Condvar::new(),
        in_flight: AtomicUsize::new(0),
        capacity: n_slots.max(1) + max_queue,
        metrics,
    });
    let worker = Worker {
        backend,
        frontend,
        n_ctx,
        slots: (0..n_slots.max(1)).map(|_| Slot::default()).collect(),
        shared: shared.clone(),
        clock: 0,
        window_start: Instant::now(),
        window_tokens: 0,
    };
    let thread = std::thread::Builder::new()
        .name("mote-scheduler".into())
        .spawn(move || worker.run())
        .ok();
    SchedulerHandle {
        shared,
        thread: Arc::new(Mutex::new(thread)),
    }
}

#[derive(Default)]
struct Slot {
    /// Tokens whose keys and values are in this slot's cache, in order.
    cached: Vec<u32>,
    job: Option<Active>,
    /// Logical time of the last assignment, to pick the least recently used slot.
    last_used: u64,
}

struct Active {
    events: UnboundedSender<GenEvent>,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    max_tokens: usize,
    generated: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    arrived: Instant,
    first_token: bool,
}

struct Worker {
    backend: Box<dyn Backend>,
    frontend: Arc<dyn Frontend>,
    /// Positions each slot's cache holds.
    n_ctx: usize,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    clock: u64,
    window_start: Instant,
    window_tokens: u64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What happened to a slot in a step.
enum Outcome {
    Continue,
    Finished(FinishReason),
    Failed(String),
}

impl Worker {
    fn run(mut self) {
        loop {
            if !self.admit() {
                break;
            }
            self.step();
        }
        // Shutdown: end every stream so the HTTP server can finish its connections.
        for i in 0..self.slots.len() {
            if let Some(job) = self.slots[i].job.take() {
                self.release();
                let _ = job
                    .events
                    .send(GenEvent::Error("the server is shutting down".into()));
                self.shared
                    .metrics
                    .cancelled
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.shared.metrics.active_slots.store(0, Ordering::Relaxed);
    }

    fn release(&self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Moves waiting requests into free slots; blocks while there is nothing to do.
    /// Returns false on shutdown.
    fn admit(&mut self) -> bool {
        let shared = self.shared.clone();
        let Ok(mut q) = shared.queue.lock() else {
            return false;
        };
        loop {
            if q.shutdown {
                for req in q.waiting.drain(..) {
                    self.release();
                    let _ = req
                        .events
                        .send(GenEvent::Error("the server is shutting down".into()));
                }
                return false;
            }
            while let Some(slot) = self.free_slot_for(q.waiting.front().map(|r| &r.prompt[..])) {
                let Some(req) = q.waiting.pop_front() else {
                    break;
                };
                if req.events.is_closed() {
                    self.release();
                    shared.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.assign(slot, req);
            }
            self.shared
                .metrics
                .queue_depth
                .store(q.waiting.len() as u64, Ordering::Relaxed);
            let active = self.slots.iter().filter(|s| s.job.is_some()).count();
            self.shared
                .metrics
                .active_slots
                .store(active as u64, Ordering::Relaxed);
            if active > 0 {
                return true;
            }
            shared.metrics.set_tokens_per_second(0.0);
            q = match shared.wake.wait_timeout(q, Duration::from_secs(1)) {
                Ok((q, _)) => q,
                Err(_) => return false,
            };
        }
    }

    /// The free slot sharing the longest prefix with `prompt`, else the least recently used.
    fn free_slot_for(&self, prompt: Option<&[u32]>) -> Option<usize> {
        let prompt = prompt?;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .max_by_key(|(_, s)| (common_prefix(&s.cached, prompt), u64::MAX - s.last_used))
            .map(|(i, _)| i)
    }

    fn assign(&mut self, slot: usize, req: GenRequest) {
        let s = &mut self.slots[slot];
        // Keep the shared prefix, but always recompute at least the last prompt token:
        // its logits are what the first sample needs.
        let mut reuse = common_prefix(&s.cached, &req.prompt);
        if reuse == req.prompt.len() {
            reuse = reuse.saturating_sub(1);
        }
        self.backend.truncate(slot, reuse);
        s.cached.truncate(reuse);
        self.clock += 1;
        s.last_used = self.clock;
        let m = &self.shared.metrics;
        m.prompt_tokens
            .fetch_add(req.prompt.len() as u64, Ordering::Relaxed);
        m.prompt_tokens_cached
            .fetch_add(reuse as u64, Ordering::Relaxed);
        // The penalties look at recent tokens, prompt included, as llama.cpp's do.
        let mut sampler = req.sampler;
        for &t in &req.prompt {
            sampler.accept(t);
        }
        s.job = Some(Active {
            events: req.events,
            sampler,
            prompt: req.prompt,
            prefilled: reuse,
            max_tokens: req.max_tokens,
            generated: Vec::new(),
            text: TextStream::new(&req.stops),
            arrived: req.arrived,
            first_token: false,
        });
    }

    fn step(&mut self) {
        let mut decode: Vec<(usize, u32)> = Vec::new();
        for i in 0..self.slots.len() {
            let Some(job) = &self.slots[i].job else {
                continue;
            };
            if job.events.is_closed() {
                self.slots[i].job = None;
                self.release();
                self.shared
                    .metrics
                    .cancelled
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if job.prefilled < job.prompt.len() {
                let outcome = self.prefill(i);
                self.settle(i, outcome);
            } else if let Some(&last) = job.generated.last() {
                decode.push((i, last));
            }
        }
        if decode.is_empty() {
            return;
        }
        let started = Instant::now();
        let results = self.backend.forward_batch(&decode);
        self.shared
            .metrics
            .record_decode(started.elapsed().as_secs_f64());
        for (&(slot, token), result) in decode.iter().zip(results) {
            let outcome = match result {
                Ok(logits) => {
                    self.slots[slot].cached.push(token);
                    self.sample_and_emit(slot, logits)
                }
                Err(e) => Outcome::Failed(e.to_string()),
            };
            self.settle(slot, outcome);
        }
        self.update_rate(decode.len() as u64);
    }

    fn prefill(&mut self, slot: usize) -> Outcome {
        let Some(job) = &mut self.slots[slot].job else {
            return Outcome::Continue;
        };
        let end = (job.prefilled + PREFILL_CHUNK).min(job.prompt.len());
        let chunk = job.prompt[job.prefilled..end].to_vec();
        match self.backend.forward(slot, &chunk) {
            Ok(logits) => {
                self.slots[slot].cached.extend_from_slice(&chunk);
                let Some(job) = &mut self.slots[slot].job else {
                    return Outcome::Continue;
                };
                job.prefilled = end;
                if end < job.prompt.len() {
                    Outcome::Continue
                } else {
                    self.sample_and_emit(slot, logits)
                }
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn sample_and_emit(&mut self, slot: usize, logits: Vec<f32>) -> Outcome {
        let cache_len = self.backend.cache_len(slot);
        let vocab = self.backend.vocab_size();
        let Some(job) = &mut self.slots[slot].job else {
            return Outcome::Continue;
        };
        let token = match job.sampler.sample(&logits, vocab) {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        job.sampler.accept(token);
        let m = &self.shared.metrics;
        if !job.first_token {
            job.first_token = true;
            m.record_ttft(job.arrived.elapsed().as_secs_f64());
        }
        if self.frontend.is_eog(token) {
            return Outcome::Finished(FinishReason::Stop);
        }
        job.generated.push(token);
        m.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let piece = job.text.push(&self.frontend.token_bytes(token));
        if !piece.text.is_empty() {
            let _ = job.events.send(GenEvent::Text(piece.text));
        }
        if piece.stopped {
            return Outcome::Finished(FinishReason::Stop);
        }
        // The sampled token still has to go into the cache before the next one.
        if job.generated.len() >= job.max_tokens || cache_len + 1 > self.n_ctx {
            return Outcome::Finished(FinishReason::Length);
        }
        Outcome::Continue
    }

    /// Sends the final events of a finished or failed slot and frees it.
    fn settle(&mut self, slot: usize, outcome: Outcome) {
        let finish = match outcome {
            Outcome::Continue => return,
            Outcome::Finished(f) => Ok(f),
            Outcome::Failed(e) => Err(e),
        };
        let Some(mut job) = self.slots[slot].job.take() else {
            return;
        };
        // Before the final event: a client that sends its next request as soon as this
        // one ends must find the capacity free.
        self.release();
        match finish {
            Ok(finish) => {
                let rest = job.text.finish();
                if !rest.is_empty() {
                    let _ = job.events.send(GenEvent::Text(rest));
                }
                let usage = Usage {
                    prompt_tokens: job.prompt.len(),
                    completion_tokens: job.generated.len(),
                    total_tokens: job.prompt.len() + job.generated.len(),
                };
                let _ = job.events.send(GenEvent::Done { finish, usage });
            }
            Err(e) => {
                // The cache may be half written: start this slot afresh next time.
                self.backend.truncate(slot, 0);
                self.slots[slot].cached.clear();
                let _ = job.events.send(GenEvent::Error(e));
            }
        }
    }

    fn update_rate(&mut self, tokens: u64) {
        self.window_tokens += tokens;
        let elapsed = self.window_start.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            self.shared
                .metrics
                .set_tokens_per_second(self.window_tokens as f64 / elapsed);
            self.window_tokens = 0;
            self.window_start = Instant::now();
        }
    }
}
