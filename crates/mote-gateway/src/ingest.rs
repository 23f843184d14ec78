//! MQTT ingest: subscribe to `home/+/+` at QoS 1 in a persistent session
//! (`clean_session = false`), store each reading, acknowledge it after the commit.
//!
//! The persistent session makes the broker keep messages for the gateway while it is down
//! (and, with broker persistence, across a broker restart); acknowledging only after the
//! commit means the broker redelivers anything the gateway had not yet stored when it died.
//! Redeliveries are harmless: the store ignores a (room, metric, time) it already holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS};

use crate::sim::room_name_ok;
use crate::store::{Metric, Reading, Store};
use crate::GatewayError;

pub const TOPIC_FILTER: &str = "home/+/+";

/// Counters, shared with `/health` and the logs.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub reconnects: AtomicU64,
    pub connected: AtomicBool,
}

impl IngestStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "received": self.received.load(Ordering::Relaxed),
            "stored": self.stored.load(Ordering::Relaxed),
            "duplicates": self.duplicates.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
        })
    }
}

/// Reads `home/<room>/<metric>` with a `{"ts": UNIX_SECONDS, "value": NUMBER}` payload.
pub fn parse_message(topic: &str, payload: &[u8]) -> Result<Reading, String> {
    let mut levels = topic.split('/');
    let (Some("home"), Some(room), Some(metric), None) =
        (levels.next(), levels.next(), levels.next(), levels.next())
    else {
        return Err(format!("topic {topic:?} is not home/<room>/<metric>"));
    };
    if !room_name_ok(room) {
        return Err(format!(
            "room {room:?}: use lower-case letters, digits and _"
        ));
    }
    let metric = Metric::parse(metric).ok_or_else(|| format!("unknown metric {metric:?}"))?;
    #[derive(serde::Deserialize)]
    struct Payload {
        ts: i64,
        value: f64,
    }
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| format!("payload on {topic}: {e}"))?;
    if !p.value.is_finite() {
        return Err(format!("payload on {topic}: value is not a finite number"));
    }
    Ok(Reading {
        room: room.to_string(),
        metric,
        ts: p.ts,
        value: p.value,
    })
}

pub struct IngestOptions {
    pub mqtt: MqttOptions,
    pub db: PathBuf,
    /// Most messages committed in one transaction.
    pub batch: usize,
}

/// Runs until `stop` is set. The MQTT event loop runs on its own thread (it must never
/// wait on the database); this thread stores batches and sends the acknowledgements.
pub fn run(
    opts: IngestOptions,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
) -> Result<(), GatewayError> {
    let mut store = Store::open(&opts.db)?;
    let mut mqtt = opts.mqtt;
    mqtt.set_clean_session(false).set_manual_acks(true);
    let (client, mut connection) = Client::new(mqtt, 1024);
    let (tx, rx) = mpsc::channel::<Event>();
    let loop_stats = stats.clone();
    let loop_stop = stop.clone();
    let sub_client = client.clone();
    std::thread::spawn(move || {
        let mut down_since: Option<Instant> = None;
        while !loop_stop.load(Ordering::Relaxed) {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(event)) => {
                    if let Event::Incoming(Packet::SubAck(_)) = &event {
                        eprintln!("mote gateway ingest: subscribed to {TOPIC_FILTER} (QoS 1, persistent session)");
                    }
                    if let Event::Incoming(Packet::ConnAck(ack)) = &event {
                        loop_stats.connected.store(true, Ordering::Relaxed);
                        if let Some(t) = down_since.take() {
                            loop_stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "mote gateway ingest: reconnected after {:.1} s (session present: {})",
                                t.elapsed().as_secs_f64(),
                                ack.session_present
                            );
                        }
                        // A new session (first start, or a broker that lost its state)
                        // needs the subscription; a resumed one keeps it.
                        if !ack.session_present {
                            if let Err(e) = sub_client.try_subscribe(TOPIC_FILTER, QoS::AtLeastOnce)
                            {
                                tracing::error!("ingest: subscribe: {e}");
                            }
                        }
                    }
                    if tx.send(event).is_err() {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    loop_stats.connected.store(false, Ordering::Relaxed);
                    if down_since.is_none() {
                        tracing::warn!("ingest: broker connection lost ({e}); retrying");
                        down_since = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });

    let mut batch: Vec<(Reading, Publish)> = Vec::new();
    let mut rejected: Vec<Publish> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let event = match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(Event::Incoming(Packet::Publish(p))) = event {
            stats.received.fetch_add(1, Ordering::Relaxed);
            match parse_message(&p.topic, &p.payload) {
                Ok(r) => batch.push((r, p)),
                Err(why) => {
                    tracing::warn!("ingest: dropped a message: {why}");
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    rejected.push(p);
                }
            }
            if batch.len() < opts.batch {
                continue;
            }
        } else if event.is_some() {
            continue;
        }
        if batch.is_empty() && rejected.is_empty() {
            continue;
        }
        let readings: Vec<Reading> = batch.iter().map(|(r, _)| r.clone()).collect();
        let added = store.insert(&readings)?;
        stats.stored.fetch_add(added as u64, Ordering::Relaxed);
        stats
            .duplicates
            .fetch_add((readings.len() - added) as u64, Ordering::Relaxed);
        // Committed: now the broker may forget them. (A malformed message is acknowledged
        // too, or it would be redelivered forever.)
        for p in batch.drain(..).map(|(_, p)| p).chain(rejected.drain(..)) {
            if client.ack(&p).is_err() {
                break;
            }
        }
    }
    let _ = client.disconnect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages() {
        let r = parse_message(
            "home/bedroom/temperature",
            br#"{"ts":1764547200,"value":21.5}"#,
        )
        .unwrap();
        assert_eq!(
            (r.room.as_str(), r.metric, r.ts, r.value),
            ("bedroom", Metric::Temperature, 1764547200, 21.5)
        );
        for (topic, payload) in [
            ("home/bedroom", &br#"{"ts":1,"value":1}"#[..]),
            ("home/Bed/temperature", br#"{"ts":1,"value":1}"#),
            ("home/bedroom/co2", br#"{"ts":1,"value":1}"#),
            ("home/bedroom/humidity", b"21.5"),
            ("home/bedroom/humidity", br#"{"ts":"x","value":1}"#),
            ("office/bedroom/humidity", br#"{"ts":1,"value":1}"#),
        ] {
            assert!(parse_message(topic, payload).is_err(), "{topic}");
        }
    }
}
