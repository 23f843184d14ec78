//! The tools the model (or any client) can call, each with a JSON Schema for its
//! arguments, in the OpenAI `tools` shape. Results are JSON; every number an answer may
//! quote comes from here.
//!
//! | tool | arguments | returns |
//! | --- | --- | --- |
//! | `list_rooms` | – | rooms, their metrics, reading counts and time spans |
//! | `get_latest` | `room` | the newest temperature and humidity of a room |
//! | `get_stats` | `room`, `metric`, `since`?, `until`? | count, min, max, mean (and when) |
//! | `find_anomalies` | `metric`?, `since`?, `until`? | sustained excursions outside the thresholds |
//! | `get_readings` | `room`, `metric`, `since`?, `until`? | hourly averages |
//!
//! Times are `YYYY-MM-DD HH:MM` (UTC), a date, `today`, `yesterday` or `now`; `since`
//! defaults to the start of today (the day of the newest reading), `until` to now.

use serde_json::{json, Value};

use crate::anomaly::{round1, series_anomalies, Thresholds};
use crate::clock::{format_ts, parse_time, start_of_day};
use crate::store::{Metric, Store};
use crate::GatewayError;

/// A tool's name, description and argument schema.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

impl ToolSpec {
    /// `{"type": "function", "function": {...}}`, as OpenAI's `tools` array holds it.
    pub fn to_openai(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}})
    }
}

fn time_prop(what: &str) -> Value {
    json!({"type": "string", "description": format!("{what}: YYYY-MM-DD HH:MM, YYYY-MM-DD, today, yesterday or now"),
           "pattern": "^(today|yesterday|now|[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?)$"})
}

/// The tools, their schemas listing the rooms currently known.
pub fn specs(rooms: &[String]) -> Vec<ToolSpec> {
    let room = json!({"type": "string", "enum": rooms, "description": "room id, as list_rooms returns it"});
    let metric = json!({"type": "string", "enum": ["temperature", "humidity"]});
    let since = time_prop("start (default: start of today)");
    let until = time_prop("end, exclusive (default: now)");
    vec![
        ToolSpec {
            name: "list_rooms",
            description: "List the rooms with sensors, their metrics and how many readings are stored.",
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        },
        ToolSpec {
            name: "get_latest",
            description: "The newest temperature (°C) and humidity (% RH) reading of one room.",
            parameters: json!({"type": "object", "properties": {"room": room}, "required": ["room"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "get_stats",
            description: "Minimum, maximum and mean of one room's temperature or humidity over a time span.",
            parameters: json!({"type": "object", "properties": {"room": room, "metric": metric, "since": since, "until": until},
                "required": ["room", "metric"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "find_anomalies",
            description: "Find rooms whose temperature or humidity was abnormal: outside 16-28 °C for 15 minutes or more, or humidity outside 25-70 % for 30 minutes or more. Leave out metric to check both.",
            parameters: json!({"type": "object", "properties": {"metric": metric, "since": since, "until": until},
                "additionalProperties": false}),
        },
        ToolSpec {
            name: "get_readings",
            description: "Hourly averages of one room's temperature or humidity over a time span.",
            parameters: json!({"type": "object", "properties": {"room": room, "metric": metric, "since": since, "until": until},
                "required": ["room", "metric"], "additionalProperties": false}),
        },
    ]
}

/// Runs tools against a store.
pub struct Tools<'a> {
    pub store: &'a Store,
    pub thresholds: Thresholds,
}

impl Tools<'_> {
    pub fn room_names(&self) -> Result<Vec<String>, GatewayError> {
        Ok(self.store.rooms()?.into_iter().map(|r| r.room).collect())
    }

    /// Calls a tool by name. Bad arguments are errors naming what is wrong (the caller
    /// turns them into a tool result the model can read).
    pub fn call(&self, name: &str, args: &Value) -> Result<Value, GatewayError> {
        let args = match args {
            Value::Null => &json!({}),
            Value::Object(_) => args,
            _ => {
                return Err(GatewayError::Tool(format!(
                    "{name}: arguments must be a JSON object"
                )))
            }
        };
        let now = self.store.latest_ts()?.unwrap_or(0);
        let str_arg = |key: &str| args.get(key).and_then(Value::as_str);
        let span = || -> Result<(i64, i64), GatewayError> {
            let since = str_arg("since")
                .map(|s| parse_time(s, now))
                .transpose()?
                .unwrap_or(start_of_day(now));
            // `until` is exclusive; "now" includes the newest reading.
            let until = str_arg("until")
                .map(|s| parse_time(s, now))
                .transpose()?
                .unwrap_or(now);
            let until = if until == now { now + 1 } else { until };
            if until <= since {
                return Err(GatewayError::Tool(format!(
                    "{name}: until ({}) must be later than since ({}); leave both out to mean today",
                    format_ts(until),
                    format_ts(since)
                )));
            }
            Ok((since, until))
        };
        let room = || -> Result<String, GatewayError> {
            let room = str_arg("room")
                .ok_or_else(|| GatewayError::Tool(format!("{name}: missing \"room\"")))?;
            let rooms = self.room_names()?;
            if rooms.iter().any(|r| r == room) {
                Ok(room.to_string())
            } else {
                Err(GatewayError::Tool(format!(
                    "unknown room {room:?}; rooms: {}",
                    rooms.join(", ")
                )))
            }
        };
        let metric = |required: bool| -> Result<Option<Metric>, GatewayError> {
            match str_arg("metric") {
                Some(m) => Metric::parse(m).map(Some).ok_or_else(|| {
                    GatewayError::Tool(format!("unknown metric {m:?}; use temperature or humidity"))
                }),
                None if required => Err(GatewayError::Tool(format!("{name}: missing \"metric\""))),
                None => Ok(None),
            }
        };
        match name {
            "list_rooms" => self.list_rooms(),
            "get_latest" => self.get_latest(&room()?),
            "get_stats" => self.get_stats(&room()?, metric(true)?.unwrap_or(Metric::Temperature), span()?),
            "find_anomalies" => self.find_anomalies(metric(false)?, span()?),
            "get_readings" => self.get_readings(&room()?, metric(true)?.unwrap_or(Metric::Temperature), span()?),
            _ => Err(GatewayError::Tool(format!(
                "no tool named {name:?}; tools: list_rooms, get_latest, get_stats, find_anomalies, get_readings"
            ))),
        }
    }

    fn list_rooms(&self) -> Result<Value, GatewayError> {
        let mut rooms = Vec::new();
        for r in self.store.rooms()? {
            let metrics: Vec<&str> = self
                .store
                .metrics(&r.room)?
                .iter()
                .map(|m| m.name())
                .collect();
            rooms.push(
                json!({"room": r.room, "metrics": metrics, "readings": r.readings,
                "first": format_ts(r.first), "last": format_ts(r.last)}),
            );
        }
        Ok(json!({"rooms": rooms}))
    }

    fn get_latest(&self, room: &str) -> Result<Value, GatewayError> {
        let mut out = json!({"room": room});
        for m in Metric::ALL {
            if let Some((ts, v)) = self.store.latest(room, m)? {
                out[m.name()] = json!({"value": v, "unit": m.unit(), "time": format_ts(ts)});
            }
        }
        Ok(out)
    }

    fn get_stats(
        &self,
        room: &str,
        metric: Metric,
        (since, until): (i64, i64),
    ) -> Result<Value, GatewayError> {
        let s = self.store.series(room, metric, since, until)?;
        let mut out = json!({"room": room, "metric": metric.name(), "unit": metric.unit(),
            "since": format_ts(since), "until": format_ts(until), "count": s.len()});
        if let (Some(min), Some(max)) = (
            s.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
            s.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
        ) {
            let mean = s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
            out["min"] = json!(min.1);
            out["min_time"] = json!(format_ts(min.0));
            out["max"] = json!(max.1);
            out["max_time"] = json!(format_ts(max.0));
            out["mean"] = json!(round1(mean));
        }
        Ok(out)
    }

    fn find_anomalies(
        &self,
        metric: Option<Metric>,
        (since, until): (i64, i64),
    ) -> Result<Value, GatewayError> {
        let metrics = metric.map_or(Metric::ALL.to_vec(), |m| vec![m]);
        let mut found = Vec::new();
        for room in self.room_names()? {
            for &m in &metrics {
                let s = self.store.series(&room, m, since, until)?;
                found.extend(series_anomalies(&room, m, &s, self.thresholds.range(m)));
            }
        }
        let mut rooms: Vec<&str> = found.iter().map(|a| a.room.as_str()).collect();
        rooms.dedup();
        let anomalies: Vec<Value> = found
            .iter()
            .map(|a| {
                json!({"room": a.room, "metric": a.metric.name(), "unit": a.metric.unit(),
                    "side": a.side, "limit": a.limit, "start": format_ts(a.start), "end": format_ts(a.end),
                    "duration_minutes": a.duration_minutes(), "peak": a.peak, "mean": a.mean})
            })
            .collect();
        let thresholds: serde_json::Map<String, Value> = metrics
            .iter()
            .map(|&m| (m.name().to_string(), json!(self.thresholds.range(m))))
            .collect();
        Ok(
            json!({"since": format_ts(since), "until": format_ts(until), "thresholds": thresholds,
            "abnormal_rooms": rooms, "anomalies": anomalies}),
        )
    }

    fn get_readings(
        &self,
        room: &str,
        metric: Metric,
        (since, until): (i64, i64),
    ) -> Result<Value, GatewayError> {
        let s = self.store.series(room, metric, since, until)?;
        let mut hours: Vec<Value> = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let hour = s[i].0.div_euclid(3600) * 3600;
            let j = i + s[i..].iter().take_while(|p| p.0 < hour + 3600).count();
            let mean = s[i..j].iter().map(|p| p.1).sum::<f64>() / (j - i) as f64;
            hours.push(json!({"hour": format_ts(hour), "mean": round1(mean)}));
            i = j;
        }
        Ok(json!({"room": room, "metric": metric.name(), "unit": metric.unit(), "hourly": hours}))
    }
}
