//! Who is working: each worker refreshes an expiring record of itself; one that stops
//! refreshing (killed, cut off) drops out of the list when its record expires.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::keys::Keys;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    /// Where it separates: "cpu", "cuda", "metal".
    pub device: String,
    /// The job it runs now.
    pub job: Option<u64>,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
}

pub struct Workers {
    con: redis::Connection,
    keys: Keys,
    ttl: Duration,
}

impl Workers {
    /// A worker not heard from for `ttl` is gone.
    pub fn open(con: redis::Connection, namespace: &str, ttl: Duration) -> Self {
        Self {
            con,
            keys: Keys::new(namespace),
            ttl,
        }
    }

    pub fn beat(&mut self, info: &WorkerInfo) -> Result<()> {
        let json = serde_json::to_string(info).expect("a worker is JSON");
        redis::pipe()
            .cmd("SET")
            .arg(self.keys.worker(&info.id))
            .arg(json)
            .arg("PX")
            .arg(self.ttl.as_millis().max(1) as u64)
            .ignore()
            .cmd("SADD")
            .arg(self.keys.workers())
            .arg(&info.id)
            .ignore()
            .query::<()>(&mut self.con)?;
        Ok(())
    }

    /// A worker that stops on purpose leaves the list at once.
    pub fn leave(&mut self, id: &str) -> Result<()> {
        redis::pipe()
            .cmd("DEL")
            .arg(self.keys.worker(id))
            .ignore()
            .cmd("SREM")
            .arg(self.keys.workers())
            .arg(id)
            .ignore()
            .query::<()>(&mut self.con)?;
        Ok(())
    }

    /// The workers heard from within their time, by id.
    pub fn list(&mut self) -> Result<Vec<WorkerInfo>> {
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.workers())
            .query(&mut self.con)?;
        ids.sort();
        let mut live = Vec::new();
        for id in ids {
            let record: Option<String> = redis::cmd("GET")
                .arg(self.keys.worker(&id))
                .query(&mut self.con)?;
            match record.and_then(|json| serde_json::from_str(&json).ok()) {
                Some(info) => live.push(info),
                None => {
                    redis::cmd("SREM")
                        .arg(self.keys.workers())
                        .arg(&id)
                        .query::<()>(&mut self.con)?;
                }
            }
        }
        Ok(live)
    }
}
