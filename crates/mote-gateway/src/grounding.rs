//! Keeping answers to the data: checks on a model's answer, and the answer written from
//! the tool results when the model's fails them.
//!
//! Checks:
//! - every number in the answer (digits, optionally with a decimal part) equals a number
//!   that appears in some tool result (dates and times count: `14:00` is 14 and 0);
//! - when `find_anomalies` ran, the rooms the answer names (by id, with spaces for `_`, or
//!   by their common Chinese names) are exactly the rooms it reported, and an answer to a
//!   day without anomalies says so ("none", "no ", 没有, 无);
//! - otherwise the rooms named are among those the tools were asked about or returned.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::ask::CallRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    English,
    Chinese,
}

impl Language {
    /// Chinese when the question holds CJK characters.
    pub fn of(text: &str) -> Language {
        if text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) {
            Language::Chinese
        } else {
            Language::English
        }
    }
}

/// The numbers written in a text, as (text, value).
pub fn numbers(text: &str) -> Vec<(String, f64)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let t = &text[s..i];
        if let Ok(v) = t.parse::<f64>() {
            out.push((t.to_string(), v));
        }
    }
    out
}

/// Names a room goes by in answers: its id, the id with spaces, and Chinese names for the
/// usual rooms.
fn room_aliases(room: &str) -> Vec<String> {
    let mut names = vec![room.to_string(), room.replace('_', " ")];
    let zh: &[&str] = match room {
        "living_room" => &["客厅"],
        "bedroom" => &["卧室", "主卧"],
        "bathroom" => &["浴室", "卫生间", "洗手间"],
        "kitchen" => &["厨房"],
        "office" => &["书房", "办公室"],
        _ => &[],
    };
    names.extend(zh.iter().map(|s| s.to_string()));
    names
}

/// The known rooms a text names.
pub fn rooms_named(text: &str, rooms: &[String]) -> BTreeSet<String> {
    let lower = text.to_lowercase();
    rooms
        .iter()
        .filter(|room| {
            room_aliases(room).iter().any(|alias| {
                // Whole words only, so "bedroom" is not found inside "bedrooms2" and
                // "office" not inside "officer".
                lower.match_indices(alias.as_str()).any(|(i, m)| {
                    let before = lower[..i].chars().next_back();
                    let after = lower[i + m.len()..].chars().next();
                    let word =
                        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                    !word(before) && !word(after)
                })
            })
        })
        .cloned()
        .collect()
}

#[derive(Clone, Debug, Default)]
pub struct Checks {
    pub answered: bool,
    /// Numbers in the answer found in no tool result.
    pub unknown_numbers: Vec<String>,
    pub rooms_named: BTreeSet<String>,
    /// Rooms the answer had to name exactly (when `find_anomalies` ran).
    pub rooms_expected: Option<BTreeSet<String>>,
    /// Rooms it may name otherwise.
    pub rooms_allowed: BTreeSet<String>,
    pub says_none: bool,
}

impl Checks {
    pub fn ok(&self) -> bool {
        let rooms_ok = match &self.rooms_expected {
            Some(expected) => {
                &self.rooms_named == expected && (!expected.is_empty() || self.says_none)
            }
            None => self.rooms_named.is_subset(&self.rooms_allowed),
        };
        self.answered && self.unknown_numbers.is_empty() && rooms_ok
    }

    pub fn to_json(&self) -> Value {
        json!({"passed": self.ok(), "answered": self.answered, "unknown_numbers": self.unknown_numbers,
            "rooms_named": self.rooms_named, "rooms_expected": self.rooms_expected,
            "rooms_allowed": self.rooms_allowed, "says_none": self.says_none})
    }
}

fn abnormal_rooms(calls: &[CallRecord]) -> Option<BTreeSet<String>> {
    let mut ran = false;
    let mut set = BTreeSet::new();
    for c in calls.iter().filter(|c| c.name == "find_anomalies") {
        if let Some(rooms) = c.result.get("abnormal_rooms").and_then(Value::as_array) {
            ran = true;
            set.extend(rooms.iter().filter_map(Value::as_str).map(String::from));
        }
    }
    ran.then_some(set)
}

pub fn check_answer(
    answer: &str,
    calls: &[CallRecord],
    rooms: &[String],
    lang: Language,
) -> Checks {
    let known: Vec<f64> = calls
        .iter()
        .flat_map(|c| numbers(&c.result.to_string()))
        .map(|(_, v)| v)
        .collect();
    let unknown_numbers = numbers(answer)
        .into_iter()
        .filter(|(_, v)| !known.iter().any(|k| (k - v).abs() < 1e-9))
        .map(|(t, _)| t)
        .collect();
    let context: String = calls
        .iter()
        .map(|c| format!("{} {}", c.arguments, c.result))
        .collect();
    let lower = answer.to_lowercase();
    let says_none = match lang {
        Language::English => [
            "none",
            "no room",
            "no anomal",
            "no abnormal",
            "not abnormal",
        ]
        .iter()
        .any(|w| lower.contains(w)),
        Language::Chinese => ["没有", "无", "none"].iter().any(|w| lower.contains(w)),
    };
    Checks {
        // An answer needs data behind it, and must not be a (broken) call itself.
        answered: !answer.trim().is_empty()
            && calls.iter().any(|c| c.result.get("error").is_none())
            && !["<tool_call>", "</tool_call>", "\"name\"", "\"arguments\""]
                .iter()
                .any(|m| answer.contains(m)),
        unknown_numbers,
        rooms_named: rooms_named(answer, rooms),
        rooms_expected: abnormal_rooms(calls),
        rooms_allowed: rooms_named(&context, rooms),
        says_none,
    }
}

fn short_time(t: &Value) -> String {
    let s = t.as_str().unwrap_or("");
    s.split_once(' ').map_or(s, |(_, hm)| hm).to_string()
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "?".into(),
    }
}

fn anomalies_answer(result: &Value, lang: Language) -> String {
    let list = result["anomalies"].as_array().cloned().unwrap_or_default();
    let (since, until) = (
        result["since"].as_str().unwrap_or(""),
        result["until"].as_str().unwrap_or(""),
    );
    if list.is_empty() {
        let ranges: Vec<String> = result["thresholds"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, r)| format!("{k} {}–{}", num(&r["low"]), num(&r["high"])))
                    .collect()
            })
            .unwrap_or_default();
        return match lang {
            Language::English => format!(
                "None: no room was abnormal between {since} and {until} (normal: {}).",
                ranges.join(", ")
            ),
            Language::Chinese => format!(
                "none：{since} 至 {until} 没有房间异常（正常范围：{}）。",
                ranges.join("，")
            ),
        };
    }
    let items: Vec<String> = list
        .iter()
        .map(|a| {
            let (room, metric, unit) = (a["room"].as_str().unwrap_or("?"), a["metric"].as_str().unwrap_or("?"), a["unit"].as_str().unwrap_or(""));
            let (start, end) = (short_time(&a["start"]), short_time(&a["end"]));
            let above = a["side"] == "above";
            match lang {
                Language::English => format!(
                    "{room}: {metric} {} {} {unit} from {start} to {end} ({} minutes, peak {} {unit})",
                    if above { "above" } else { "below" }, num(&a["limit"]), num(&a["duration_minutes"]), num(&a["peak"])
                ),
                Language::Chinese => format!(
                    "{room}：{metric} {} {} {unit}，{start} 至 {end}（{} 分钟，峰值 {} {unit}）",
                    if above { "高于" } else { "低于" }, num(&a["limit"]), num(&a["duration_minutes"]), num(&a["peak"])
                ),
            }
        })
        .collect();
    match lang {
        Language::English => format!("Abnormal: {}.", items.join("; ")),
        Language::Chinese => format!("异常：{}。", items.join("；")),
    }
}

fn call_summary(c: &CallRecord) -> String {
    let r = &c.result;
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        return format!("{}: {e}", c.name);
    }
    match c.name.as_str() {
        "list_rooms" => {
            let rooms: Vec<&str> = r["rooms"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["room"].as_str()).collect())
                .unwrap_or_default();
            format!("rooms: {}", rooms.join(", "))
        }
        "get_latest" => {
            let parts: Vec<String> = ["temperature", "humidity"]
                .iter()
                .filter(|m| r[**m].is_object())
                .map(|m| {
                    format!(
                        "{m} {} {} at {}",
                        num(&r[*m]["value"]),
                        r[*m]["unit"].as_str().unwrap_or(""),
                        short_time(&r[*m]["time"])
                    )
                })
                .collect();
            format!(
                "{}: {}",
                r["room"].as_str().unwrap_or("?"),
                parts.join(", ")
            )
        }
        "get_stats" if r["count"] != 0 => format!(
            "{} {} from {} to {}: min {}, max {}, mean {} {}",
            r["room"].as_str().unwrap_or("?"),
            r["metric"].as_str().unwrap_or("?"),
            short_time(&r["since"]),
            short_time(&r["until"]),
            num(&r["min"]),
            num(&r["max"]),
            num(&r["mean"]),
            r["unit"].as_str().unwrap_or("")
        ),
        _ => format!("{}: {}", c.name, r),
    }
}

/// An answer written from the tool results: the anomalies when `find_anomalies` ran,
/// otherwise a line per call.
pub fn template_answer(calls: &[CallRecord], lang: Language) -> String {
    if let Some(c) = calls
        .iter()
        .rev()
        .find(|c| c.name == "find_anomalies" && c.result.get("anomalies").is_some())
    {
        return anomalies_answer(&c.result, lang);
    }
    if calls.is_empty() {
        return match lang {
            Language::English => "No tool returned data for this question.".into(),
            Language::Chinese => "没有工具返回数据。".into(),
        };
    }
    calls
        .iter()
        .map(call_summary)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Vec<String> {
        ["living_room", "bedroom", "bathroom", "kitchen", "office"]
            .map(String::from)
            .to_vec()
    }

    fn anomalies_call(found: &[(&str, &str, f64)]) -> CallRecord {
        let list: Vec<Value> = found
            .iter()
            .map(|(room, metric, peak)| json!({"room": room, "metric": metric, "unit": "°C", "side": "above", "limit": 28.0,
                "start": "2026-12-01 14:00", "end": "2026-12-01 16:00", "duration_minutes": 120, "peak": peak, "mean": 31.0}))
            .collect();
        let mut names: Vec<&str> = found.iter().map(|f| f.0).collect();
        names.dedup();
        CallRecord {
            name: "find_anomalies".into(),
            arguments: json!({}),
            result: json!({"since": "2026-12-01 00:00", "until": "2026-12-01 23:56", "abnormal_rooms": names, "anomalies": list,
                "thresholds": {"temperature": {"low": 16.0, "high": 28.0, "min_minutes": 15}}}),
        }
    }

    #[test]
    fn finds_numbers_and_rooms() {
        let n: Vec<f64> = numbers("31.2 °C at 14:00, 85%; v1.")
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(n, [31.2, 14.0, 0.0, 85.0, 1.0]);
        let r = rooms();
        assert_eq!(
            rooms_named("The Bedroom and the living room; not bedrooms", &r).len(),
            2
        );
        assert_eq!(
            rooms_named("卧室和卫生间", &r),
            ["bathroom", "bedroom"].map(String::from).into()
        );
        assert!(rooms_named("officer", &r).is_empty());
    }

    #[test]
    fn checks_answers() {
        let calls = [anomalies_call(&[
            ("bathroom", "humidity", 85.4),
            ("bedroom", "temperature", 31.2),
        ])];
        let good = check_answer(
            "bedroom peaked at 31.2 °C from 14:00; bathroom at 85.4 %.",
            &calls,
            &rooms(),
            Language::English,
        );
        assert!(good.ok(), "{:?}", good);
        let invented = check_answer(
            "bedroom 32 °C, bathroom 85.4",
            &calls,
            &rooms(),
            Language::English,
        );
        assert_eq!(invented.unknown_numbers, ["32"]);
        assert!(!invented.ok());
        assert!(!check_answer(
            "bedroom and kitchen and bathroom",
            &calls,
            &rooms(),
            Language::English
        )
        .ok());
        assert!(!check_answer("bedroom", &calls, &rooms(), Language::English).ok());
        let t = template_answer(&calls, Language::English);
        assert!(
            check_answer(&t, &calls, &rooms(), Language::English).ok(),
            "{t}"
        );
        let t = template_answer(&calls, Language::Chinese);
        assert!(
            check_answer(&t, &calls, &rooms(), Language::Chinese).ok(),
            "{t}"
        );
    }

    #[test]
    fn a_quiet_day_is_none() {
        let calls = [anomalies_call(&[])];
        assert!(check_answer(
            "None of the rooms were abnormal.",
            &calls,
            &rooms(),
            Language::English
        )
        .ok());
        assert!(!check_answer("The kitchen was fine.", &calls, &rooms(), Language::English).ok());
        assert!(!check_answer("Everything is OK.", &calls, &rooms(), Language::English).ok());
        for lang in [Language::English, Language::Chinese] {
            let t = template_answer(&calls, lang);
            assert!(t.starts_with("None") || t.starts_with("none"), "{t}");
            assert!(check_answer(&t, &calls, &rooms(), lang).ok(), "{t}");
        }
    }
}
