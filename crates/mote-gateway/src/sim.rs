//! The sensor simulator: a seeded day of temperature and humidity readings for several
//! rooms, with faults injected on request, published to `home/<room>/<metric>` at QoS 1
//! on an accelerated clock.
//!
//! Normal rooms stay inside the anomaly thresholds (see [`crate::anomaly`]); the bathroom
//! gets a ten-minute shower spike above 70 % RH every morning, which is *not* sustained and
//! must not be reported. A fault replaces a metric's value by a level (plus sensor noise)
//! for a stretch of the day: `bedroom:temperature=31@14:00+2h`.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::clock;
use crate::store::{Metric, Reading};
use crate::GatewayError;

/// A metric held at a level for a stretch of the day.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub room: String,
    pub metric: Metric,
    pub value: f64,
    /// Seconds after midnight.
    pub start: i64,
    /// Seconds.
    pub duration: i64,
}

impl std::str::FromStr for Fault {
    type Err = GatewayError;

    /// `ROOM:METRIC=VALUE@HH:MM+DURATION`, the duration in `h` or `m` (`90m`, `2h`).
    fn from_str(s: &str) -> Result<Fault, GatewayError> {
        let bad = || GatewayError::BadFault(s.to_string());
        let (room, rest) = s.split_once(':').ok_or_else(bad)?;
        let (metric, rest) = rest.split_once('=').ok_or_else(bad)?;
        let (value, rest) = rest.split_once('@').ok_or_else(bad)?;
        let (start, duration) = rest.split_once('+').ok_or_else(bad)?;
        let metric = Metric::parse(metric).ok_or_else(bad)?;
        let value: f64 = value.parse().map_err(|_| bad())?;
        let start = clock::parse_time(&format!("1970-01-01 {start}"), 0).map_err(|_| bad())?;
        let (num, unit) = duration.split_at(duration.len().saturating_sub(1));
        let mult = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        if !room_name_ok(room) || !value.is_finite() || !n.is_finite() || n <= 0.0 {
            return Err(bad());
        }
        Ok(Fault {
            room: room.to_string(),
            metric,
            value,
            start,
            duration: (n * mult) as i64,
        })
    }
}

/// Room names are topic levels: lower-case letters, digits and `_`.
pub fn room_name_ok(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct DayPlan {
    pub rooms: Vec<String>,
    /// Midnight (Unix seconds) of the simulated day.
    pub day: i64,
    /// Seconds between two samples of one sensor.
    pub interval: i64,
    pub seed: u64,
    pub faults: Vec<Fault>,
}

/// SplitMix64: a small, seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A room's base level: stable per name, different between rooms.
fn room_offset(room: &str, spread: f64) -> f64 {
    let h = room.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ((h % 1000) as f64 / 999.0 * 2.0 - 1.0) * spread
}

/// The day's readings, in time order (all sensors at one tick, then the next tick).
pub fn generate_day(plan: &DayPlan) -> Vec<Reading> {
    let mut rng = Rng(plan.seed);
    let mut out = Vec::new();
    let mut t = 0;
    while t < 86_400 {
        let hour = t as f64 / 3600.0;
        // Warmest mid-afternoon, most humid before dawn.
        let daily = ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        for room in &plan.rooms {
            for metric in Metric::ALL {
                let (mut value, noise) = match metric {
                    Metric::Temperature => (21.5 + room_offset(room, 1.5) + 1.5 * daily, 0.2),
                    Metric::Humidity => (50.0 + room_offset(room, 5.0) - 5.0 * daily, 1.0),
                };
                // The morning shower: ten minutes above 70 %, not a sustained anomaly.
                if room == "bathroom"
                    && metric == Metric::Humidity
                    && (7 * 3600..7 * 3600 + 600).contains(&t)
                {
                    value = 76.0;
                }
                let fault = plan.faults.iter().find(|f| {
                    &f.room == room
                        && f.metric == metric
                        && (f.start..f.start + f.duration).contains(&t)
                });
                if let Some(f) = fault {
                    value = f.value;
                }
                let v = value + noise * rng.signed() * if fault.is_some() { 0.5 } else { 1.0 };
                out.push(Reading {
                    room: room.clone(),
                    metric,
                    ts: plan.day + t,
                    value: (v * 10.0).round() / 10.0,
                });
            }
        }
        t += plan.interval;
    }
    out
}

pub fn topic(r: &Reading) -> String {
    format!("home/{}/{}", r.room, r.metric.name())
}

pub fn payload(r: &Reading) -> String {
    format!("{{\"ts\":{},\"value\":{:.1}}}", r.ts, r.value)
}

/// How a publishing run ended.
#[derive(Debug)]
pub struct PublishReport {
    pub published: usize,
    /// Readings whose PUBACK arrived: the broker owns them now.
    pub acked: usize,
    pub reconnects: usize,
    pub elapsed: Duration,
}

/// Publishes `readings` at QoS 1, `speed` simulated seconds per real second (0: as fast as
/// the broker takes them), until every one is acknowledged or `timeout` passes. Survives
/// broker restarts: unacknowledged publishes are sent again after reconnecting.
pub fn publish(
    opts: MqttOptions,
    readings: &[Reading],
    speed: f64,
    timeout: Duration,
) -> Result<PublishReport, GatewayError> {
    let start = Instant::now();
    let (client, mut connection) = Client::new(opts, 64);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let total = readings.len();
    let first_ts = readings.first().map_or(0, |r| r.ts);
    let msgs: Vec<(String, String, i64)> = readings
        .iter()
        .map(|r| (topic(r), payload(r), r.ts))
        .collect();
    let publisher = client.clone();
    let handle = std::thread::spawn(move || -> Result<(), rumqttc::ClientError> {
        for (topic, payload, ts) in msgs {
            if speed > 0.0 {
                let due = Duration::from_secs_f64((ts - first_ts) as f64 / speed);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            publisher.publish(topic, QoS::AtLeastOnce, false, payload)?;
        }
        let _ = done_tx.send(());
        Ok(())
    });

    // Packet id -> index of the reading it carries, while unacknowledged.
    let mut inflight: HashMap<u16, usize> = HashMap::new();
    let mut acked: HashSet<usize> = HashSet::new();
    let mut next_new = 0usize;
    let mut all_sent = false;
    let mut reconnects = 0;
    let mut down_since: Option<Instant> = None;
    while acked.len() < total || !all_sent {
        if start.elapsed() > timeout {
            break;
        }
        all_sent = all_sent || done_rx.try_recv().is_ok();
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                // A packet id already in flight is a resend after a reconnect.
                if let std::collections::hash_map::Entry::Vacant(e) = inflight.entry(pkid) {
                    e.insert(next_new);
                    next_new += 1;
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(i) = inflight.remove(&ack.pkid) {
                    acked.insert(i);
                }
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                if let Some(t) = down_since.take() {
                    reconnects += 1;
                    eprintln!(
                        "mote gateway simulate: reconnected after {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if down_since.is_none() {
                    tracing::warn!("simulator: broker connection lost ({e}); retrying");
                    down_since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {}
            Err(rumqttc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = client.disconnect();
    // Let the DISCONNECT go out.
    for _ in 0..10 {
        match connection.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Err(_) | Ok(Err(_)) => break,
            _ => {}
        }
    }
    drop(connection);
    let _ = handle.join();
    Ok(PublishReport {
        published: next_new.min(total),
        acked: acked.len(),
        reconnects,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{find_anomalies, Thresholds};

    fn plan(faults: Vec<Fault>) -> DayPlan {
        DayPlan {
            rooms: ["living_room", "bedroom", "bathroom", "kitchen", "office"]
                .map(String::from)
                .to_vec(),
            day: clock::days_from_civil(2026, 12, 1) * 86_400,
            interval: 300,
            seed: 7,
            faults,
        }
    }

    #[test]
    fn parses_faults() {
        let f: Fault = "bedroom:temperature=31@14:00+2h".parse().unwrap();
        assert_eq!((f.start, f.duration, f.value), (14 * 3600, 7200, 31.0));
        let f: Fault = "bathroom:humidity=85.5@06:30+90m".parse().unwrap();
        assert_eq!((f.start, f.duration), (6 * 3600 + 1800, 5400));
        for bad in [
            "bedroom",
            "Bed:temperature=1@1:00+1h",
            "b:co2=1@01:00+1h",
            "b:humidity=1@25:00+1h",
            "b:humidity=x@01:00+1h",
            "b:humidity=1@01:00+0h",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_normal_day_has_no_anomalies_and_faults_are_found() {
        let p = plan(vec![]);
        let day = generate_day(&p);
        assert_eq!(day.len(), 288 * 5 * 2);
        assert_eq!(day, generate_day(&p), "seeded");
        let th = Thresholds::default();
        assert!(find_anomalies(&day, &th).is_empty());
        let p = plan(vec![
            "bedroom:temperature=31@14:00+2h".parse().unwrap(),
            "bathroom:humidity=85@06:00+3h".parse().unwrap(),
        ]);
        let found = find_anomalies(&generate_day(&p), &th);
        let rooms: Vec<_> = found
            .iter()
            .map(|a| (a.room.as_str(), a.metric, a.duration_minutes()))
            .collect();
        assert_eq!(
            rooms,
            [
                ("bathroom", Metric::Humidity, 180),
                ("bedroom", Metric::Temperature, 120)
            ]
        );
    }
}
