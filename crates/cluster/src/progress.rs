//! One job's progress, from the worker that runs it to the server that shows it: a short
//! stream per job, read from where the reader left off so that nothing is missed across a
//! reconnect, and kept a while after the job ends for late readers.

use std::time::Duration;

use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use serde::Serialize;

use crate::keys::Keys;
use crate::{ClusterError, Result};

/// Updates kept per job: far more than a reader falls behind by.
const KEPT: usize = 1000;
/// How long a job's updates outlive its last one.
const KEPT_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEntry {
    /// Where a reader carries on from.
    pub id: String,
    pub update: serde_json::Value,
}

pub struct Progress {
    con: redis::Connection,
    keys: Keys,
}

impl Progress {
    pub fn open(con: redis::Connection, namespace: &str) -> Self {
        Self {
            con,
            keys: Keys::new(namespace),
        }
    }

    pub fn publish(&mut self, job: u64, update: &impl Serialize) -> Result<String> {
        let key = self.keys.progress(job);
        let json = serde_json::to_string(update).expect("an update is JSON");
        let (id,): (String,) = redis::pipe()
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(KEPT)
            .arg("*")
            .arg("update")
            .arg(json)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(KEPT_SECS)
            .ignore()
            .query(&mut self.con)?;
        Ok(id)
    }

    /// Updates after `after` (`"0"` for all), waiting up to `wait` when there are none.
    pub fn read(&mut self, job: u64, after: &str, wait: Duration) -> Result<Vec<ProgressEntry>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.keys.progress(job))
            .arg(after)
            .query(&mut self.con)?;
        reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(entry)
            .collect()
    }

    /// Updates of many jobs, each after its own cursor, waiting up to `wait` when none of
    /// them has any; as (job, entry).
    pub fn read_many(
        &mut self,
        cursors: &[(u64, String)],
        wait: Duration,
    ) -> Result<Vec<(u64, ProgressEntry)>> {
        if cursors.is_empty() {
            std::thread::sleep(wait);
            return Ok(Vec::new());
        }
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        for (job, _) in cursors {
            read.arg(self.keys.progress(*job));
        }
        for (_, after) in cursors {
            read.arg(after);
        }
        let reply: Option<StreamReadReply> = read.query(&mut self.con)?;
        let mut entries = Vec::new();
        for stream in reply.into_iter().flat_map(|r| r.keys) {
            let Some(&(job, _)) = cursors
                .iter()
                .find(|(job, _)| self.keys.progress(*job) == stream.key)
            else {
                continue;
            };
            for id in stream.ids {
                entries.push((job, entry(id)?));
            }
        }
        Ok(entries)
    }

    /// The job's last update, if it has any.
    pub fn latest(&mut self, job: u64) -> Result<Option<ProgressEntry>> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys.progress(job))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)?;
        reply.ids.into_iter().next().map(entry).transpose()
    }
}

fn entry(id: StreamId) -> Result<ProgressEntry> {
    let json: String = id
        .get("update")
        .ok_or_else(|| ClusterError::damaged("progress", format!("entry {} has none", id.id)))?;
    Ok(ProgressEntry {
        update: serde_json::from_str(&json).map_err(|e| ClusterError::damaged("progress", e))?,
        id: id.id,
    })
}
