//! Counters and gauges exposed at `GET /metrics` in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token histogram buckets.
const TTFT_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
pub struct Metrics {
    /// (endpoint, status) -> count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens served from a slot's cache instead of being recomputed.
    pub prompt_tokens_cached: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub queue_depth: AtomicU64,
    pub active_slots: AtomicU64,
    /// f64 bits: generated tokens per second over the last scheduler window.
    tokens_per_second: AtomicU64,
    /// Seconds spent in decode steps, as f64 bits (for `rate()` of tokens per second).
    decode_seconds: AtomicU64,
    ttft: Mutex<Histogram>,
    pub rejected_queue_full: AtomicU64,
    pub cancelled: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; TTFT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

impl Metrics {
    pub fn record_request(&self, endpoint: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint.to_string(), status)).or_default() += 1;
        }
    }

    pub fn record_ttft(&self, seconds: f64) {
        if let Ok(mut h) = self.ttft.lock() {
            for (i, &le) in TTFT_BUCKETS.iter().enumerate() {
                if seconds <= le {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    pub fn record_decode(&self, seconds: f64) {
        add_f64(&self.decode_seconds, seconds);
    }

    pub fn set_tokens_per_second(&self, v: f64) {
        self.tokens_per_second.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP mote_requests_total HTTP requests by endpoint and status.\n# TYPE mote_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "mote_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "mote_prompt_tokens_total",
                "Prompt tokens received.",
                g(&self.prompt_tokens),
            ),
            (
                "mote_prompt_tokens_cached_total",
                "Prompt tokens reused from a slot's cache.",
                g(&self.prompt_tokens_cached),
            ),
            (
                "mote_generated_tokens_total",
                "Tokens generated.",
                g(&self.generated_tokens),
            ),
            (
                "mote_rejected_queue_full_total",
                "Requests turned away because the queue was full.",
                g(&self.rejected_queue_full),
            ),
            (
                "mote_cancelled_total",
                "Generations cancelled by a client disconnect or shutdown.",
                g(&self.cancelled),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP mote_decode_seconds_total Time spent in decode steps.\n# TYPE mote_decode_seconds_total counter\nmote_decode_seconds_total {}",
            f64::from_bits(g(&self.decode_seconds))
        );
        let gauges = [
            (
                "mote_queue_depth",
                "Requests waiting for a slot.",
                g(&self.queue_depth) as f64,
            ),
            (
                "mote_active_slots",
                "Slots generating now.",
                g(&self.active_slots) as f64,
            ),
            (
                "mote_tokens_per_second",
                "Generated tokens per second, recent window.",
                f64::from_bits(g(&self.tokens_per_second)),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Ok(h) = self.ttft.lock() {
            let name = "mote_time_to_first_token_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Time from request arrival to the first generated token.\n# TYPE {name} histogram"
            );
            for (i, le) in TTFT_BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
        }
        out
    }
}
