//! What counts as abnormal: a run of consecutive readings outside a comfort range that
//! lasts at least a minimum time.
//!
//! | metric | normal range | reported when outside for at least |
//! | --- | --- | --- |
//! | temperature | 16–28 °C | 15 minutes |
//! | humidity | 25–70 % RH | 30 minutes |
//!
//! A run ends at a reading back in range or at a gap longer than two sampling intervals
//! (a sensor that went silent). Its duration counts the last reading's interval, so twelve
//! five-minute readings make an hour.

use std::collections::BTreeMap;

use crate::store::{Metric, Reading};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Range {
    pub low: f64,
    pub high: f64,
    /// Shortest run reported, in minutes.
    pub min_minutes: i64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub temperature: Range,
    pub humidity: Range,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            temperature: Range {
                low: 16.0,
                high: 28.0,
                min_minutes: 15,
            },
            humidity: Range {
                low: 25.0,
                high: 70.0,
                min_minutes: 30,
            },
        }
    }
}

impl Thresholds {
    pub fn range(&self, metric: Metric) -> Range {
        match metric {
            Metric::Temperature => self.temperature,
            Metric::Humidity => self.humidity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Above,
    Below,
}

/// One sustained excursion.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub room: String,
    pub metric: Metric,
    pub side: Side,
    /// The limit crossed.
    pub limit: f64,
    /// First reading outside the range (Unix seconds).
    pub start: i64,
    /// Last reading outside the range plus one sampling interval.
    pub end: i64,
    /// The value furthest outside the range.
    pub peak: f64,
    pub mean: f64,
    pub readings: usize,
}

impl Anomaly {
    pub fn duration_minutes(&self) -> i64 {
        (self.end - self.start) / 60
    }
}

/// The typical spacing of a series (median of the gaps), 300 s when unknown.
fn interval(series: &[(i64, f64)]) -> i64 {
    let mut gaps: Vec<i64> = series
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&g| g > 0)
        .collect();
    if gaps.is_empty() {
        return 300;
    }
    gaps.sort_unstable();
    gaps[gaps.len() / 2]
}

/// Sustained excursions in one series (time-ordered `(ts, value)` pairs).
pub fn series_anomalies(
    room: &str,
    metric: Metric,
    series: &[(i64, f64)],
    range: Range,
) -> Vec<Anomaly> {
    let step = interval(series);
    let side_of = |v: f64| {
        if v > range.high {
            Some(Side::Above)
        } else if v < range.low {
            Some(Side::Below)
        } else {
            None
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < series.len() {
        let Some(side) = side_of(series[i].1) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < series.len()
            && side_of(series[j].1) == Some(side)
            && series[j].0 - series[j - 1].0 <= 2 * step
        {
            j += 1;
        }
        let run = &series[i..j];
        let end = run[run.len() - 1].0 + step;
        if (end - run[0].0) / 60 >= range.min_minutes {
            let values = run.iter().map(|p| p.1);
            let peak = match side {
                Side::Above => values.clone().fold(f64::MIN, f64::max),
                Side::Below => values.clone().fold(f64::MAX, f64::min),
            };
            out.push(Anomaly {
                room: room.to_string(),
                metric,
                side,
                limit: if side == Side::Above {
                    range.high
                } else {
                    range.low
                },
                start: run[0].0,
                end,
                peak,
                mean: round1(values.sum::<f64>() / run.len() as f64),
                readings: run.len(),
            });
        }
        i = j;
    }
    out
}

/// Sustained excursions among readings of any rooms and metrics, ordered by room, metric
/// and start.
pub fn find_anomalies(readings: &[Reading], th: &Thresholds) -> Vec<Anomaly> {
    let mut by_series: BTreeMap<(&str, Metric), Vec<(i64, f64)>> = BTreeMap::new();
    for r in readings {
        by_series
            .entry((&r.room, r.metric))
            .or_default()
            .push((r.ts, r.value));
    }
    let mut out = Vec::new();
    for ((room, metric), mut series) in by_series {
        series.sort_by_key(|p| p.0);
        out.extend(series_anomalies(room, metric, &series, th.range(metric)));
    }
    out
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_must_be_sustained() {
        let r = Thresholds::default().humidity;
        // 10 minutes above: ignored; 30 minutes above: one anomaly.
        let short: Vec<_> = [50.0, 75.0, 76.0, 50.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 300, v))
            .collect();
        assert!(series_anomalies("b", Metric::Humidity, &short, r).is_empty());
        let long: Vec<_> = [50.0, 75.0, 80.0, 72.0, 10.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 600, v))
            .collect();
        let a = series_anomalies("b", Metric::Humidity, &long, r);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].start, a[0].end, a[0].peak, a[0].mean, a[0].side),
            (600, 2400, 80.0, 75.7, Side::Above)
        );
        assert_eq!(a[0].duration_minutes(), 30);
    }

    #[test]
    fn a_gap_splits_a_run() {
        let r = Thresholds::default().temperature;
        let s = [
            (0, 30.0),
            (300, 30.0),
            (600, 30.0),
            (6000, 30.0),
            (6300, 30.0),
            (6600, 30.0),
        ];
        assert_eq!(series_anomalies("b", Metric::Temperature, &s, r).len(), 2);
        let cold = [(0, 10.0), (300, 11.0), (600, 12.0)];
        let a = series_anomalies("b", Metric::Temperature, &cold, r);
        assert_eq!(
            (a[0].side, a[0].peak, a[0].limit),
            (Side::Below, 10.0, 16.0)
        );
    }
}
