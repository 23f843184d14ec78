//! A small persistent thread pool for splitting one matrix product over cores.
//!
//! A 135M-parameter model does a couple of hundred small matrix products per token, so
//! what matters is the cost of handing out one job, not throughput of many: workers
//! spin for a short while after each job (the next one usually follows within
//! microseconds), then park on a condition variable. A job is a `Fn(task)` borrowed
//! from the caller's stack plus a task count; the caller works on the tasks too and
//! returns when all are finished, so no allocation or `'static` bound is needed.
//!
//! On wasm32, or with one thread, jobs run inline.

use std::sync::{Arc, Mutex};

/// Runs jobs on `threads` threads: the caller plus `threads - 1` parked workers.
pub struct Pool {
    threads: usize,
    #[cfg(not(target_arch = "wasm32"))]
    workers: Option<workers::Workers>,
}

impl Pool {
    /// A pool of `threads` threads (at least 1). If the OS refuses to start a worker the
    /// pool keeps the ones it has.
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool { threads: 1 }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            if threads == 1 {
                return Pool {
                    threads: 1,
                    workers: None,
                };
            }
            let workers = workers::Workers::start(threads - 1);
            Pool {
                threads: workers.count() + 1,
                workers: Some(workers),
            }
        }
    }

    /// Threads a job may run on, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(t)` once for every `t in 0..tasks`, spread over the pool's threads, and
    /// returns when all calls have returned. Tasks are claimed in order, one at a time,
    /// so giving more tasks than threads balances uneven progress.
    ///
    /// If the pool is already running a job (another thread's, or a nested call from
    /// inside a task), this job runs inline on the calling thread instead of waiting.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        #[cfg(not(target_arch = "wasm32"))]
        if tasks > 1 {
            if let Some(w) = &self.workers {
                if w.try_run(tasks, f) {
                    return;
                }
            }
        }
        (0..tasks).for_each(f);
    }
}

/// Default thread count: `MOTE_THREADS` if set to a positive number, else the number of
/// physical cores this process may use. llama.cpp also defaults to physical cores:
/// two hyperthreads of one core share its vector units, so the second one adds little
/// to these memory- and SIMD-bound loops.
pub fn default_threads() -> usize {
    if let Ok(v) = std::env::var("MOTE_THREADS") {
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => return n,
            _ => eprintln!("mote: ignoring MOTE_THREADS={v:?} (want a positive integer)"),
        }
    }
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    physical_cores().map_or(logical, |p| p.min(logical)).max(1)
}

/// Counts distinct cores on Linux from sysfs (CPUs listing the same hyperthread siblings
/// are one core). `None` elsewhere or if sysfs is unreadable.
fn physical_cores() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        let mut cores = std::collections::HashSet::new();
        for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with("cpu")
                || !name[3..].chars().all(|c| c.is_ascii_digit())
                || name.len() == 3
            {
                continue;
            }
            let siblings =
                std::fs::read_to_string(entry.path().join("topology/thread_siblings_list"));
            if let Ok(s) = siblings {
                cores.insert(s.trim().to_string());
            }
        }
        (!cores.is_empty()).then_some(cores.len())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Below this many values a [`for_rows`] job runs on the calling thread: waking the
/// workers costs more than they would save.
const ROWS_PARALLEL_MIN: usize = 32 * 1024;

/// Calls `f(first_row, rows)` on chunks of whole rows of `data` (`row_len` values each)
/// that together cover it, spread over `pool` when `data` is big enough. For row-wise
/// steps (normalisation, activations, RoPE) of a long prompt, which on one thread were
/// a sixth of a two-thread prefill; each row's result is the same whichever chunk it
/// falls in.
pub fn for_rows(
    pool: &Pool,
    data: &mut [f32],
    row_len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let rows = data.len() / row_len.max(1);
    if rows == 0 {
        return;
    }
    if pool.threads() == 1 || data.len() < ROWS_PARALLEL_MIN {
        f(0, data);
        return;
    }
    let per_task = rows.div_ceil(2 * pool.threads());
    let chunks: Vec<Mutex<&mut [f32]>> = data
        .chunks_mut(per_task * row_len)
        .map(Mutex::new)
        .collect();
    pool.run(chunks.len(), &|t| {
        let mut chunk = chunks[t].lock().unwrap_or_else(|e| e.into_inner());
        f(t * per_task, &mut chunk);
    });
}

static GLOBAL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);

/// The process-wide pool that [`crate::Matrix::matmul`] uses, started on first use with
/// [`default_threads`] threads.
pub fn global() -> Arc<Pool> {
    let mut slot = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(|| Arc::new(Pool::new(default_threads())))
        .clone()
}

/// Replaces the global pool with one of `threads` threads. Jobs already running keep the
/// old pool until they finish; its workers then exit.
pub fn set_threads(threads: usize) {
    let pool = Arc::new(Pool::new(threads));
    *GLOBAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool);
}

#[cfg(not(target_arch = "wasm32"))]
mod workers {
    use std::any::Any;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// How long an idle worker spins before parking. Long enough to bridge the gap
    /// between consecutive matmuls of one token, short enough not to burn a core when
    /// the model is idle.
    const SPIN: Duration = Duration::from_micros(200);

    /// A job as workers see it: the caller's closure and task count, on the caller's
    /// stack.
    struct Job<'a> {
        f: &'a (dyn Fn(usize) + Sync),
        tasks: usize,
    }

    struct Shared {
        /// Bumped once per job (and on shutdown) to wake spinning workers.
        epoch: AtomicU64,
        /// The running job, or null between jobs.
        job: AtomicPtr<()>,
        /// Next task index to claim.
        next: AtomicUsize,
        /// Tasks finished in the running job.
        finished: AtomicUsize,
        /// Workers currently holding a reference to the job.
        active: AtomicUsize,
        /// Workers parked (or about to park) on `wake`.
        parked: AtomicUsize,
        lock: Mutex<()>,
        wake: Condvar,
        shutdown: AtomicBool,
        panic: Mutex<Option<Box<dyn Any + Send>>>,
    }

    pub(super) struct Workers {
        shared: Arc<Shared>,
        handles: Vec<JoinHandle<()>>,
        /// Held by the thread whose job is running: one job at a time.
        busy: Mutex<()>,
    }

    impl Workers {
        pub(super) fn start(count: usize) -> Workers {
            let shared = Arc::new(Shared {
                epoch: AtomicU64::new(0),
                job: AtomicPtr::new(std::ptr::null_mut()),
                next: AtomicUsize::new(0),
                finished: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                parked: AtomicUsize::new(0),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                shutdown: AtomicBool::new(false),
                panic: Mutex::new(None),
            });
            let handles = (0..count)
                .map_while(|i| {
                    let s = shared.clone();
                    std::thread::Builder::new()
                        .name(format!("mote-worker-{i}"))
                        .spawn(move || worker_loop(&s))
                        .ok()
                })
                .collect();
            Workers {
                shared,
                handles,
                busy: Mutex::new(()),
            }
        }

        pub(super) fn count(&self) -> usize {
            self.handles.len()
        }

        /// Runs the job on the workers and the calling thread; `false` (having run
        /// nothing) if another job holds the pool.
        pub(super) fn try_run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
            let Ok(_busy) = self.busy.try_lock() else {
                return false;
            };
            let s = &*self.shared;
            let job = Job { f, tasks };
            s.next.store(0, SeqCst);
            s.finished.store(0, SeqCst);
            s.job.store(&job as *const Job<'_> as *mut (), SeqCst);
            s.epoch.fetch_add(1, SeqCst);
            if s.parked.load(SeqCst) > 0 {
                let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.wake.notify_all();
            }
            run_tasks(s, &job);
            // Wait for tasks claimed by workers, then make sure no worker still holds
            // `job` before it goes out of scope: unpublish it, then wait for `active`
            // to drain. A worker increments `active` before loading the pointer, so it
            // either sees null or is counted here.
            spin_until(|| s.finished.load(SeqCst) >= tasks);
            s.job.store(std::ptr::null_mut(), SeqCst);
            spin_until(|| s.active.load(SeqCst) == 0);
            let payload = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(payload) = payload {
                panic::resume_unwind(payload);
            }
            true
        }
    }

    impl Drop for Workers {
        fn drop(&mut self) {
            let s = &*self.shared;
            s.shutdown.store(true, SeqCst);
            s.epoch.fetch_add(1, SeqCst);
            {
                let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.wake.notify_all();
            }
            for h in self.handles.drain(..) {
                // A worker cannot panic outside `catch_unwind`; nothing to report.
                let _ = h.join();
            }
        }
    }

    fn spin_until(done: impl Fn() -> bool) {
        let mut spins = 0u32;
        while !done() {
            spins += 1;
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // A descheduled worker (the CPU is shared) should get to run.
                std::thread::yield_now();
            }
        }
    }

    /// Claims and runs tasks until none are left; a panicking task is recorded for the
    /// caller to rethrow, and still counts as finished so the caller does not hang.
    fn run_tasks(s: &Shared, job: &Job<'_>) {
        loop {
            let t = s.next.fetch_add(1, SeqCst);
            if t >= job.tasks {
                return;
            }
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| (job.f)(t))) {
                s.panic
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(payload);
            }
            s.finished.fetch_add(1, SeqCst);
        }
    }

    fn worker_loop(s: &Shared) {
        let mut seen = 0u64;
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            loop {
                let epoch = s.epoch.load(SeqCst);
                if epoch != seen {
                    seen = epoch;
                    break;
                }
                spins = spins.wrapping_add(1);
                if spins & 63 != 0 || start.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                // Park. `parked` is raised before re-reading `epoch` under the lock, and
                // the caller bumps `epoch` before reading `parked`, so a new job either
                // is seen here or finds us counted and notifies under the lock.
                let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.parked.fetch_add(1, SeqCst);
                while s.epoch.load(SeqCst) == seen {
                    guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                s.parked.fetch_sub(1, SeqCst);
            }
            if s.shutdown.load(SeqCst) {
                return;
            }
            s.active.fetch_add(1, SeqCst);
            let ptr = s.job.load(SeqCst) as *const Job<'static>;
            if !ptr.is_null() {
                // SAFETY: the caller keeps the job alive until `active` is zero, and we
                // incremented `active` before loading a non-null pointer (see `try_run`).
                let job = unsafe { &*ptr };
                run_tasks(s, job);
            }
            s.active.fetch_sub(1, SeqCst);
        }
    }
}
