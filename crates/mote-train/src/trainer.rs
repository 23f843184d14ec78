//! The training loop: batches of random windows, gradient accumulation, clipping,
//! AdamW on a warm-up + cosine schedule, evaluation on held-out text (perplexity and
//! KL to the teacher), checkpoints from which a resumed run continues bit for bit, and
//! a stop request (Ctrl-C) honoured between steps.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mote_model::Model;

use crate::adamw::{adamw_step, clip_grad_norm, AdamConfig, AdamState};
use crate::checkpoint::{self, Checkpoint};
use crate::data::{Batch, TokenData};
use crate::loss::{head_loss, LossSpec, Teacher};
use crate::model::{Grads, Network};
use crate::params::Params;
use crate::rng::Rng;
use crate::TrainError;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Sequences per micro-batch (`-b`).
    pub batch: usize,
    /// Micro-batches whose gradients are summed before each update.
    pub accumulate: usize,
    pub steps: usize,
    pub adam: AdamConfig,
    pub seed: u64,
    /// Weight of the hard-label cross-entropy when a teacher is present.
    pub alpha: f32,
    pub temperature: f32,
    /// Evaluate every this many steps (0: only at the start and the end).
    pub eval_every: usize,
    /// Held-out windows per evaluation (0: all).
    pub eval_windows: usize,
    pub checkpoint_out: Option<PathBuf>,
    /// Also write the checkpoint every this many steps (0: only at the end or on stop).
    pub checkpoint_every: usize,
}

/// One evaluation on held-out text.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvalResult {
    pub step: usize,
    pub ppl: f64,
    /// Mean KL(teacher ‖ model) per token at temperature 1, when there is a teacher.
    pub kl: Option<f64>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    pub first_step: usize,
    pub steps_done: usize,
    pub losses: Vec<f64>,
    pub evals: Vec<EvalResult>,
    /// Training tokens per second (teacher forward included).
    pub tokens_per_s: f64,
    pub seconds: f64,
    pub stopped: bool,
    pub activation_bytes: usize,
}

/// The teacher's logits for rows of the current batch, one sequence at a time.
pub struct ModelTeacher<'a> {
    pub model: &'a Model,
    pub inputs: &'a [u32],
    pub seq_len: usize,
    cached: Option<usize>,
    logits: Vec<f32>,
}

impl<'a> ModelTeacher<'a> {
    pub fn new(model: &'a Model, inputs: &'a [u32], seq_len: usize) -> ModelTeacher<'a> {
        ModelTeacher {
            model,
            inputs,
            seq_len,
            cached: None,
            logits: Vec::new(),
        }
    }
}

impl Teacher for ModelTeacher<'_> {
    fn logits(&mut self, rows: std::ops::Range<usize>, out: &mut [f32]) -> Result<(), TrainError> {
        let v = self.model.config().vocab_size;
        for (k, r) in rows.enumerate() {
            let seq = r / self.seq_len;
            if self.cached != Some(seq) {
                let toks = &self.inputs[seq * self.seq_len..(seq + 1) * self.seq_len];
                let mut cache = self.model.new_cache(self.seq_len);
                self.logits = self.model.forward(toks, &mut cache, true)?;
                self.cached = Some(seq);
            }
            let t = r % self.seq_len;
            out[k * v..(k + 1) * v].copy_from_slice(&self.logits[t * v..(t + 1) * v]);
        }
        Ok(())
    }
}

/// Called after each step with the step number, its loss, tokens/s so far and the
/// evaluation made at that step, if any.
pub type OnStep<'f> = dyn FnMut(usize, f64, f64, Option<&EvalResult>) + 'f;

/// The state of a run: parameters, gradients, optimizer, generator, step.
pub struct Trainer<'a> {
    pub net: Network,
    pub params: Params,
    pub trainable: Vec<bool>,
    pub grads: Grads,
    pub adam: AdamState,
    pub rng: Rng,
    pub step: usize,
    pub teacher: Option<&'a Model>,
    pub opts: TrainOptions,
}

/// Peak resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl<'a> Trainer<'a> {
    pub fn new(
        net: Network,
        params: Params,
        trainable: Vec<bool>,
        teacher: Option<&'a Model>,
        opts: TrainOptions,
    ) -> Result<Trainer<'a>, TrainError> {
        if let Some(t) = teacher {
            let (tv, sv) = (t.config().vocab_size, net.cfg.vocab_size);
            if tv != sv {
                return Err(TrainError::Invalid(format!(
                    "the teacher's vocabulary has {tv} tokens, the student's {sv}"
                )));
            }
        }
        if !trainable.iter().any(|&t| t) {
            return Err(TrainError::Invalid("no tensor is trainable".into()));
        }
        let grads = Grads::new(&params, &trainable);
        let adam = AdamState::new(&grads);
        Ok(Trainer {
            net,
            params,
            trainable,
            grads,
            adam,
            rng: Rng::new(opts.seed),
            step: 0,
            teacher,
            opts,
        })
    }

    /// Continues from a checkpoint written by [`Trainer::save_checkpoint`].
    pub fn resume(&mut self, path: &std::path::Path) -> Result<(), TrainError> {
        let ck = checkpoint::load(path, &mut self.params, &self.trainable)?;
        self.step = ck.step;
        self.rng = ck.rng;
        self.adam = ck.adam;
        Ok(())
    }

    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<(), TrainError> {
        let ck = Checkpoint {
            step: self.step,
            rng: self.rng.clone(),
            adam: self.adam.clone(),
        };
        checkpoint::save(path, &self.params, &ck)
    }

    fn spec<'s>(&self, labels: &'s [u32], teacher: Option<&'s mut dyn Teacher>) -> LossSpec<'s> {
        LossSpec {
            labels,
            alpha: if teacher.is_some() {
                self.opts.alpha
            } else {
                1.0
            },
            teacher,
            temperature: self.opts.temperature,
            softcap: self.net.cfg.final_logit_softcap,
            chunk: 0,
        }
    }

    /// One optimizer step; returns the mean loss of its micro-batches.
    pub fn train_step(&mut self, data: &TokenData) -> Result<(f64, usize), TrainError> {
        self.grads.zero();
        let mut loss = 0.0;
        let mut act_bytes = 0;
        let accum = self.opts.accumulate.max(1);
        for _ in 0..accum {
            let b = data.sample(&mut self.rng, self.opts.batch);
            let tape = self.net.forward(&self.params, &b.inputs)?;
            act_bytes = act_bytes.max(tape.bytes());
            let mut mt = self
                .teacher
                .map(|m| ModelTeacher::new(m, &b.inputs, data.window));
            let mut spec = self.spec(&b.labels, mt.as_mut().map(|t| t as &mut dyn Teacher));
            let (v, dh) = head_loss(&self.params, &tape.hidden, &mut spec, Some(&mut self.grads))?;
            self.net.backward(&self.params, &tape, &dh, &mut self.grads);
            loss += v.loss;
        }
        if accum > 1 {
            let s = 1.0 / accum as f32;
            self.grads.g.iter_mut().flatten().for_each(|v| *v *= s);
        }
        clip_grad_norm(&mut self.grads, self.opts.adam.clip);
        let lr = self.opts.adam.lr_at(self.step);
        adamw_step(
            &mut self.params,
            &self.grads,
            &mut self.adam,
            &self.opts.adam,
            lr,
        );
        self.step += 1;
        Ok((loss / accum as f64, act_bytes))
    }

    /// Perplexity (and KL to the teacher at temperature 1) on held-out windows.
    pub fn evaluate(&self, windows: &[Batch]) -> Result<EvalResult, TrainError> {
        let (mut ce, mut kl, mut n) = (0.0, 0.0, 0usize);
        for w in windows {
            let tape = self.net.forward(&self.params, &w.inputs)?;
            let mut mt = self
                .teacher
                .map(|m| ModelTeacher::new(m, &w.inputs, w.inputs.len()));
            let mut spec = LossSpec {
                labels: &w.labels,
                alpha: 0.5,
                teacher: mt.as_mut().map(|t| t as &mut dyn Teacher),
                temperature: 1.0,
                softcap: self.net.cfg.final_logit_softcap,
                chunk: 0,
            };
            let (v, _) = head_loss(&self.params, &tape.hidden, &mut spec, None)?;
            ce += v.ce * v.labelled as f64;
            kl += v.kl * v.positions as f64;
            n += v.labelled;
        }
        let n = n.max(1) as f64;
        Ok(EvalResult {
            step: self.step,
            ppl: (ce / n).exp(),
            kl: self.teacher.map(|_| kl / n),
        })
    }

    /// Runs until `opts.steps`; `on_step(step, loss, tokens/s)` after each step; stops
    /// early (with a checkpoint) when `stop` becomes true.
    pub fn run(
        &mut self,
        data: &TokenData,
        eval: Option<&[Batch]>,
        stop: &AtomicBool,
        on_step: &mut OnStep,
    ) -> Result<TrainReport, TrainError> {
        let mut report = TrainReport {
            first_step: self.step,
            ..Default::default()
        };
        let per_step = self.opts.batch * self.opts.accumulate.max(1) * data.window;
        let start = Instant::now();
        if let Some(w) = eval {
            report.evals.push(self.evaluate(w)?);
        }
        while self.step < self.opts.steps {
            let (loss, act) = self.train_step(data)?;
            report.activation_bytes = report.activation_bytes.max(act);
            report.losses.push(loss);
            report.steps_done += 1;
            let secs = start.elapsed().as_secs_f64();
            let tps = (report.steps_done * per_step) as f64 / secs.max(1e-9);
            let every = self.opts.eval_every;
            let mut ev = None;
            if let Some(w) = eval {
                if (every > 0 && self.step.is_multiple_of(every)) || self.step == self.opts.steps {
                    let r = self.evaluate(w)?;
                    report.evals.push(r);
                    ev = Some(r);
                }
            }
            on_step(self.step, loss, tps, ev.as_ref());
            if let Some(path) = &self.opts.checkpoint_out {
                let ce = self.opts.checkpoint_every;
                if ce > 0 && self.step.is_multiple_of(ce) {
                    self.save_checkpoint(path)?;
                }
            }
            if stop.load(Ordering::SeqCst) {
                report.stopped = true;
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        report.seconds = secs;
        report.tokens_per_s = (report.steps_done * per_step) as f64 / secs.max(1e-9);
        if let Some(path) = &self.opts.checkpoint_out {
            self.save_checkpoint(path)?;
        }
        Ok(report)
    }
}
