//! The scheduler thread: owns the model's [`Backend`], keeps `N` slots (one KV cache each)
//! and a bounded queue of requests waiting for a slot, and steps every active slot together.
//!
//! Continuous batching: each step is ONE [`Backend::forward_batch`] holding the decode
//! token of every generating slot plus a prompt chunk of every slot still prefilling, at
//! most [`STEP_TOKENS`] tokens in all. Decoding slots always take part (a long prompt
//! slows their step but never skips it); the rest of the budget is shared fairly among
//! the prompts. Every weight matrix is then read once per step for all of them, so a new
//! request's prompt costs the decoding slots little. After the pass, slots that decoded
//! or finished their prompt sample their next token.
//!
//! A slot keeps its cache and the tokens in it after a request ends, so a later request
//! sharing a prompt prefix (a chat that goes on) only computes the rest.
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
use crate::slots::SlotCommand;
use mote_session::dry::CycleDetector;
use mote_session::shift::shift_positions;
use mote_session::stream::TextStream;
use mote_session::{Sampler, ShiftPolicy};

/// Tokens per step, decode tokens and prompt chunks together (llama.cpp's `n_batch`):
/// large enough that prompt processing runs at full matrix-product speed, small enough
/// that a long prompt delays the other slots' next token by one step of this size only.
const STEP_TOKENS: usize = 512;

/// How many of `wanted[i]` tokens each prompt gets from `budget`: the shortest prompts
/// are served in full first and the rest split evenly (water-filling), so several long
/// prompts advance together and a short one is not held back by them. Every prompt gets
/// at least one token, so none waits forever, even when the budget is smaller.
fn share_budget(wanted: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_key(|&i| wanted[i]);
    let mut given = vec![0; wanted.len()];
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let fair = left / (order.len() - k);
        given[i] = wanted[i].min(fair.max(1));
        left = left.saturating_sub(given[i]);
    }
    given
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Length,
    /// The answer was stuck repeating one short block of tokens and was ended (see
    /// `mote_session::dry::CycleDetector`).
    Repetition,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Tokens context shift dropped (prompt truncation and shifts while generating);
    /// reported next to `usage` as `n_discarded` / `truncated`.
    #[serde(skip)]
    pub n_discarded: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values were already in the slot's cache (a shared
    /// prefix, or a restored slot file), so were not processed again.
    pub cached_tokens: usize,
}

/// llama-server's `timings` of a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Prompt tokens taken from the cache, and those processed.
    pub cache_n: usize,
    pub prompt_n: usize,
    pub prompt_ms: f64,
    pub prompt_per_second: f64,
    pub predicted_n: usize,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
}

#[derive(Debug)]
pub enum GenEvent {
    Text(String),
    Done {
        finish: FinishReason,
        usage: Usage,
        timings: Timings,
    },
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
    /// How to make room when the context fills (`--context-shift`, `--streaming`).
    pub shift: Option<ShiftPolicy>,
    /// Where the prompt's chat turns begin, so shifts drop whole turns.
    pub turn_starts: Vec<usize>,
    /// Prompt tokens already dropped to make the prompt fit.
    pub n_discarded: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {0} requests are already waiting")]
    QueueFull(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

pub(crate) struct Queue {
    waiting: VecDeque<GenRequest>,
    /// Slot actions (save, restore, erase, list) not yet taken by the scheduler.
    pub(crate) commands: VecDeque<SlotCommand>,
    shutdown: bool,
}

pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
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
    /// The queue, unless the server is shutting down.
    fn open_queue(&self) -> Result<std::sync::MutexGuard<'_, Queue>, SubmitError> {
        match self.shared.queue.lock() {
            Ok(q) if !q.shutdown => Ok(q),
            _ => Err(SubmitError::ShuttingDown),
        }
    }

    pub fn submit(&self, req: GenRequest) -> Result<(), SubmitError> {
        let mut q = self.open_queue()?;
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

    /// Queues a slot action; it runs between steps, once its slot is idle.
    pub fn slot_command(&self, cmd: SlotCommand) -> Result<(), SubmitError> {
        let mut q = self.open_queue()?;
        q.commands.push_back(cmd);
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
    ignore_eos: bool,
    metrics: Arc<Metrics>,
) -> SchedulerHandle {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            waiting: VecDeque::new(),
            commands: VecDeque::new(),
            shutdown: false,
        }),
        wake: Condvar::new(),
        in_flight: AtomicUsize::new(0),
        capacity: n_slots.max(1) + max_queue,
        metrics,
    });
    // End-of-generation tokens, banned from sampling when they must not end an answer.
    let banned = if ignore_eos {
        (0..backend.vocab_size() as u32)
            .filter(|&t| frontend.is_eog(t))
            .collect()
    } else {
        Vec::new()
    };
    let worker = Worker {
        backend,
        frontend,
        banned,
        n_ctx,
        slots: (0..n_slots.max(1)).map(|_| Slot::default()).collect(),
        shared: shared.clone(),
        clock: 0,
        window_start: Instant::now(),
        window_tokens: 0,
        deferred: Vec::new(),
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
pub(crate) struct Slot {
    /// Tokens whose keys and values are in this slot's cache, in order.
    pub(crate) cached: Vec<u32>,
    pub(crate) job: Option<Active>,
    /// Logical time of the last assignment, to pick the least recently used slot.
    pub(crate) last_used: u64,
}

pub(crate) struct Active {
    events: UnboundedSender<GenEvent>,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    max_tokens: usize,
    generated: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    cycles: CycleDetector,
    shift: Option<ShiftPolicy>,
    turn_starts: Vec<usize>,
    /// Where the answer begins in the slot's cache (moves with shifts).
    answer_start: usize,
    n_discarded: usize,
    arrived: Instant,
    first_token: bool,
    /// Prompt tokens found in the cache.
    cached: usize,
    /// When the slot took the request, and when its first token was sampled.
    started: Instant,
    first_at: Option<Instant>,
}

pub(crate) struct Worker {
    pub(crate) backend: Box<dyn Backend>,
    frontend: Arc<dyn Frontend>,
    /// Tokens every request's sampler never picks (`--ignore-eos`).
    banned: Vec<u32>,
    /// Positions each slot's cache holds.
    pub(crate) n_ctx: usize,
    pub(crate) slots: Vec<Slot>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) clock: u64,
    window_start: Instant,
    window_tokens: u64,
    /// Slot actions waiting for their slot to be idle.
    pub(crate) deferred: Vec<SlotCommand>,
}

impl Active {
    fn timings(&self) -> Timings {
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
        let now = Instant::now();
        let first = self.first_at.unwrap_or(now);
        let rate = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        let prompt_n = self.prompt.len() - self.cached;
        let (prompt_ms, predicted_ms) = (ms(self.started, first), ms(first, now));
        // The first token is sampled from the prompt pass; the others each took a step.
        let predicted_n = self.generated.len();
        Timings {
            cache_n: self.cached,
            prompt_n,
            prompt_ms,
            prompt_per_second: rate(prompt_n, prompt_ms),
            predicted_n,
            predicted_ms,
            predicted_per_second: rate(predicted_n.saturating_sub(1), predicted_ms),
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One slot's sampling on the pool: slot, its request, its logits, the sampled token.
type SampleTask<'a> = (usize, Option<&'a mut Active>, Vec<f32>, Result<u32, String>);

/// What happened to a slot in a step.
enum Outcome {
    Continue,
    Finished(FinishReason),
    Failed(String),
}

impl Worker {
    fn run(mut self) {
        loop {
            self.run_slot_commands();
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
            if active > 0 || !q.commands.is_empty() {
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
        if !self.banned.is_empty() {
            sampler.set_banned(self.banned.clone());
        }
        let answer_start = req.prompt.len();
        s.job = Some(Active {
            events: req.events,
            sampler,
            prompt: req.prompt,
            prefilled: reuse,
            max_tokens: req.max_tokens,
            generated: Vec::new(),
            text: TextStream::new(&req.stops),
            cycles: CycleDetector::default(),
            shift: req.shift,
            turn_starts: req.turn_starts,
            answer_start,
            n_discarded: req.n_discarded,
            arrived: req.arrived,
            first_token: false,
            cached: reuse,
            started: Instant::now(),
            first_at: None,
        });
    }

    fn step(&mut self) {
        // Decode entries first: every generating slot takes part in every step.
        let mut decode: Vec<(usize, u32)> = Vec::new();
        let mut prefill: Vec<(usize, usize)> = Vec::new(); // (slot, prompt tokens left)
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
                prefill.push((i, job.prompt.len() - job.prefilled));
            } else if let Some(&last) = job.generated.last() {
                if self.backend.cache_len(i) >= self.n_ctx {
                    if let Err(e) = self.make_room(i) {
                        self.settle(i, Outcome::Failed(e));
                        continue;
                    }
                }
                decode.push((i, last));
            }
        }
        if decode.is_empty() && prefill.is_empty() {
            return;
        }
        let wanted: Vec<usize> = prefill.iter().map(|&(_, left)| left).collect();
        let chunks = share_budget(&wanted, STEP_TOKENS.saturating_sub(decode.len()));

        // Each entry's tokens, owned here so the batch can borrow them.
        let mut entries: Vec<(usize, Vec<u32>)> = decode
            .iter()
            .map(|&(slot, token)| (slot, vec![token]))
            .collect();
        for (&(slot, _), &take) in prefill.iter().zip(&chunks) {
            if let Some(job) = &self.slots[slot].job {
                let end = job.prefilled + take;
                entries.push((slot, job.prompt[job.prefilled..end].to_vec()));
            }
        }
        let batch: Vec<(usize, &[u32])> = entries.iter().map(|(s, t)| (*s, &t[..])).collect();

        let started = Instant::now();
        let results = self.backend.forward_batch(&batch);
        self.shared
            .metrics
            .record_decode(started.elapsed().as_secs_f64());

        // Book-keeping first; the slots whose logits are wanted are sampled together below.
        let mut to_sample: Vec<(usize, Vec<f32>)> = Vec::new();
        for ((slot, tokens), result) in entries.into_iter().zip(results) {
            let outcome = match result {
                Ok(logits) => {
                    self.slots[slot].cached.extend_from_slice(&tokens);
                    if let Some(job) = &mut self.slots[slot].job {
                        if job.prefilled < job.prompt.len() {
                            job.prefilled += tokens.len();
                        }
                        if job.prefilled >= job.prompt.len() {
                            to_sample.push((slot, logits));
                        }
                    }
                    Outcome::Continue
                }
                Err(e) => Outcome::Failed(e.to_string()),
            };
            self.settle(slot, outcome);
        }
        let sampled = to_sample.len() as u64;
        for (slot, token) in self.sample_slots(to_sample) {
            let outcome = match token {
                Ok(token) => self.emit(slot, token),
                Err(e) => Outcome::Failed(e),
            };
            self.settle(slot, outcome);
        }
        self.update_rate(sampled);
    }

    /// Samples the next token of every listed slot from its logits. Several slots are
    /// sampled on the kernel pool at once: each pass over a 50k–260k vocabulary costs
    /// about as much as a small matrix product, and the workers would only wait meanwhile.
    fn sample_slots(&mut self, work: Vec<(usize, Vec<f32>)>) -> Vec<(usize, Result<u32, String>)> {
        let vocab = self.backend.vocab_size();
        let mut jobs: Vec<Option<&mut Active>> =
            self.slots.iter_mut().map(|s| s.job.as_mut()).collect();
        let tasks: Vec<Mutex<SampleTask>> = work
            .into_iter()
            .map(|(slot, logits)| {
                let job = jobs.get_mut(slot).and_then(Option::take);
                Mutex::new((slot, job, logits, Err(String::new())))
            })
            .collect();
        let run = |i: usize| {
            let mut task = tasks[i].lock().unwrap_or_else(|e| e.into_inner());
            let (_, job, logits, out) = &mut *task;
            *out = match job {
                Some(job) => job.sampler.sample(logits, vocab).map_err(|e| e.to_string()),
                None => Err("the slot has no request".into()),
            };
        };
        if tasks.len() > 1 {
            mote_tensor::parallel::global().run(tasks.len(), &run);
        } else {
            (0..tasks.len()).for_each(run);
        }
        tasks
            .into_iter()
            .map(|t| {
                let (slot, _, _, out) = t.into_inner().unwrap_or_else(|e| e.into_inner());
                (slot, out)
            })
            .collect()
    }

    /// Takes a slot's sampled token: streams its text and says whether the slot goes on.
    fn emit(&mut self, slot: usize, token: u32) -> Outcome {
        let cache_len = self.backend.cache_len(slot);
        let Some(job) = &mut self.slots[slot].job else {
            return Outcome::Continue;
        };
        job.sampler.accept(token);
        let m = &self.shared.metrics;
        if !job.first_token {
            job.first_token = true;
            job.first_at = Some(Instant::now());
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
        // Under --ignore-eos (benchmarks) answers run to their limit whatever they say.
        let stuck = job.cycles.push(token).filter(|_| self.banned.is_empty());
        if let Some(block) = stuck {
            tracing::info!("slot {slot}: answer stuck repeating a block of {block} tokens, ended");
            return Outcome::Finished(FinishReason::Repetition);
        }
        // The sampled token still has to go into the cache before the next one (with
        // context shift, room is made first).
        let full = cache_len + 1 > self.n_ctx && job.shift.is_none();
        if job.generated.len() >= job.max_tokens || full {
            return Outcome::Finished(FinishReason::Length);
        }
        Outcome::Continue
    }

    /// Context shift of a slot whose cache is full: drops whole turns (or the older half of
    /// the answer) after the kept tokens, with the cache shifted in place.
    fn make_room(&mut self, slot: usize) -> Result<(), String> {
        let s = &mut self.slots[slot];
        let Some(job) = &mut s.job else {
            return Ok(());
        };
        let plan = job
            .shift
            .and_then(|p| p.plan(s.cached.len(), &job.turn_starts, job.answer_start))
            .ok_or("the context is full and nothing can be dropped")?;
        let (start, n) = plan;
        self.backend
            .shift(slot, start, n)
            .map_err(|e| e.to_string())?;
        s.cached.drain(start..start + n);
        shift_positions(&mut job.turn_starts, start, n);
        if job.answer_start >= start + n {
            job.answer_start -= n;
        } else if job.answer_start > start {
            job.answer_start = start;
        }
        job.n_discarded += n;
        tracing::info!("slot {slot}: context shift dropped {n} tokens at position {start}");
        Ok(())
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
                    n_discarded: job.n_discarded,
                    prompt_tokens_details: PromptTokensDetails {
                        cached_tokens: job.cached,
                    },
                };
                let timings = job.timings();
                let _ = job.events.send(GenEvent::Done {
                    finish,
                    usage,
                    timings,
                });
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

#[cfg(test)]
mod tests {
    use super::share_budget;

    #[test]
    fn budget_serves_short_prompts_whole_and_splits_the_rest() {
        assert_eq!(share_budget(&[10, 1000, 1000], 500), vec![10, 245, 245]);
        assert_eq!(share_budget(&[3, 4], 512), vec![3, 4]);
        assert_eq!(share_budget(&[600], 508), vec![508]);
        assert_eq!(share_budget(&[], 512), Vec::<usize>::new());
    }

    #[test]
    fn every_prompt_advances_even_past_the_budget() {
        assert_eq!(share_budget(&[5, 5, 5], 1), vec![1, 1, 1]);
    }
}
