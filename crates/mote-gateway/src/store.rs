//! The readings store: one SQLite table keyed by (room, metric, time), so a reading that
//! the broker delivers twice (QoS 1 is at-least-once) is stored once.
//!
//! Inserts happen in transactions; the ingest loop acknowledges a message to the broker only
//! after the transaction holding it has committed, so a crash at any point loses nothing
//! that was acknowledged (the broker redelivers the rest).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// The two quantities the sensors measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Temperature,
    Humidity,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Temperature, Metric::Humidity];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Temperature => "temperature",
            Metric::Humidity => "humidity",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Temperature => "°C",
            Metric::Humidity => "%",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One sensor reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub room: String,
    pub metric: Metric,
    /// Unix seconds.
    pub ts: i64,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database holds a metric this gateway does not know: {0:?}")]
    UnknownMetric(String),
}

/// A room and what the store holds for it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomSummary {
    pub room: String,
    pub readings: u64,
    pub first: i64,
    pub last: i64,
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`. WAL mode, so readers (the tools,
    /// a test's `sqlite3`) never block the ingest.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS readings (
                room   TEXT    NOT NULL,
                metric TEXT    NOT NULL,
                ts     INTEGER NOT NULL,
                value  REAL    NOT NULL,
                PRIMARY KEY (room, metric, ts)
             ) WITHOUT ROWID;",
        )?;
        Ok(Store { conn })
    }

    /// Stores readings in one transaction; returns how many were new (duplicates of a
    /// stored (room, metric, ts) are ignored). Returns after the commit is durable.
    pub fn insert(&mut self, readings: &[Reading]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO readings (room, metric, ts, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in readings {
                added += stmt.execute(params![r.room, r.metric.name(), r.ts, r.value])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))?)
    }

    /// Time of the newest reading: the gateway's "now".
    pub fn latest_ts(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT MAX(ts) FROM readings", [], |r| r.get(0))?)
    }

    pub fn rooms(&self) -> Result<Vec<RoomSummary>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT room, COUNT(*), MIN(ts), MAX(ts) FROM readings GROUP BY room ORDER BY room",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RoomSummary {
                room: r.get(0)?,
                readings: r.get(1)?,
                first: r.get(2)?,
                last: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Readings of one room and metric with `since <= ts < until`, oldest first.
    pub fn series(
        &self,
        room: &str,
        metric: Metric,
        since: i64,
        until: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, value FROM readings WHERE room = ?1 AND metric = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts",
        )?;
        let rows = stmt.query_map(params![room, metric.name(), since, until], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest reading of a room's metric.
    pub fn latest(&self, room: &str, metric: Metric) -> Result<Option<(i64, f64)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT ts, value FROM readings WHERE room = ?1 AND metric = ?2 ORDER BY ts DESC LIMIT 1",
                params![room, metric.name()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The metrics stored for a room.
    pub fn metrics(&self, room: &str) -> Result<Vec<Metric>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT metric FROM readings WHERE room = ?1 ORDER BY metric",
        )?;
        let names = stmt.query_map(params![room], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for name in names {
            let name = name?;
            out.push(Metric::parse(&name).ok_or(StoreError::UnknownMetric(name))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_are_idempotent() {
        let dir = std::env::temp_dir().join(format!("mote-gw-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        let mut s = Store::open(&path).unwrap();
        let r = |ts, v| Reading {
            room: "bedroom".into(),
            metric: Metric::Temperature,
            ts,
            value: v,
        };
        assert_eq!(s.insert(&[r(0, 20.0), r(300, 21.0)]).unwrap(), 2);
        assert_eq!(s.insert(&[r(300, 21.0), r(600, 22.0)]).unwrap(), 1);
        assert_eq!(s.count().unwrap(), 3);
        assert_eq!(s.latest_ts().unwrap(), Some(600));
        assert_eq!(
            s.series("bedroom", Metric::Temperature, 300, 601)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            s.latest("bedroom", Metric::Temperature).unwrap(),
            Some((600, 22.0))
        );
        assert_eq!(s.metrics("bedroom").unwrap(), vec![Metric::Temperature]);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
