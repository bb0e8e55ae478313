//! The job queue: one Redis stream of tickets read through one consumer group, so that
//! each ticket goes to one worker at a time, stays pending until that worker acknowledges
//! it, and passes to another worker when its own goes quiet.

use std::time::Duration;

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::{ClusterError, Result};

/// One job to run, as the server hands it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The server's job id.
    pub job: u64,
    /// What to separate and how, as the server describes it (its input, settings, model).
    pub work: serde_json::Value,
}

/// A ticket a worker holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub ticket: Ticket,
    /// The ticket's stream entry.
    pub entry: String,
    /// True when the ticket was taken over from a worker that went quiet: the job starts
    /// again from the beginning.
    pub reclaimed: bool,
}

/// A claim stays with its worker only while the worker keeps it fresh and nobody has
/// finished the job; otherwise it reports 0 and the worker stops.
const KEEP: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// The first attempt to ask wins the job, for good; asking again after winning still wins.
const WIN: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
";

/// How long the record of a finished job (its winner, its cancel flag) is kept.
const RECORD_SECS: u64 = 7 * 24 * 3600;

pub struct JobStream {
    con: redis::Connection,
    keys: Keys,
    idle_limit: Duration,
    keep: redis::Script,
    win: redis::Script,
}

impl JobStream {
    /// The queue under `namespace`, created when it is new. A ticket whose worker has not
    /// kept its claim for `idle_limit` goes to the next worker that asks.
    pub fn open(mut con: redis::Connection, namespace: &str, idle_limit: Duration) -> Result<Self> {
        let keys = Keys::new(namespace);
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.jobs())
            .arg(keys.group())
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut con);
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self {
            con,
            keys,
            idle_limit,
            keep: redis::Script::new(KEEP),
            win: redis::Script::new(WIN),
        })
    }

    pub fn submit(&mut self, ticket: &Ticket) -> Result<String> {
        let json = serde_json::to_string(ticket).expect("a ticket is JSON");
        Ok(redis::cmd("XADD")
            .arg(self.keys.jobs())
            .arg("*")
            .arg("ticket")
            .arg(json)
            .query(&mut self.con)?)
    }

    /// The next ticket for `worker`: first one a quiet worker left behind, else a new one,
    /// waiting up to `wait` for it.
    pub fn next(&mut self, worker: &str, wait: Duration) -> Result<Option<Claim>> {
        let abandoned: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.jobs())
            .arg(self.keys.group())
            .arg(worker)
            .arg(millis(self.idle_limit))
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)?;
        if let Some(entry) = abandoned.claimed.into_iter().next() {
            return Ok(Some(claim(entry, true)?));
        }
        let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.keys.group())
            .arg(worker)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(wait).max(1))
            .arg("STREAMS")
            .arg(self.keys.jobs())
            .arg(">")
            .query(&mut self.con)?;
        let entry = fresh
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .next();
        entry.map(|e| claim(e, false)).transpose()
    }

    /// Tells the queue `worker` is still at it. False when the claim is gone (another
    /// worker took it over, or the job was finished elsewhere): the worker should stop
    /// and keep nothing.
    pub fn keep(&mut self, worker: &str, claim: &Claim) -> Result<bool> {
        let kept: i64 = self
            .keep
            .key(self.keys.jobs())
            .key(self.keys.winner(claim.ticket.job))
            .arg(self.keys.group())
            .arg(worker)
            .arg(&claim.entry)
            .invoke(&mut self.con)?;
        Ok(kept == 1)
    }

    /// Claims the right to finish the job: true for exactly one attempt, which then
    /// publishes its files; every other attempt discards its own.
    pub fn win(&mut self, worker: &str, claim: &Claim) -> Result<bool> {
        let won: i64 = self
            .win
            .key(self.keys.winner(claim.ticket.job))
            .arg(format!("{worker} {}", claim.entry))
            .arg(RECORD_SECS)
            .invoke(&mut self.con)?;
        Ok(won == 1)
    }

    /// Who finished the job, once someone has: `"<worker> <entry>"`.
    pub fn winner(&mut self, job: u64) -> Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.keys.winner(job))
            .query(&mut self.con)?)
    }

    /// Takes the ticket off the queue for good: the job ended (done, failed or
    /// cancelled) and nobody should run it again.
    pub fn done(&mut self, claim: &Claim) -> Result<()> {
        let mut pipe = redis::pipe();
        self.retire(&mut pipe, claim);
        pipe.query::<()>(&mut self.con)?;
        Ok(())
    }

    /// Adds to `pipe` what takes the claim's entry off the stream.
    fn retire(&self, pipe: &mut redis::Pipeline, claim: &Claim) {
        pipe.cmd("XACK")
            .arg(self.keys.jobs())
            .arg(self.keys.group())
            .arg(&claim.entry)
            .ignore()
            .cmd("XDEL")
            .arg(self.keys.jobs())
            .arg(&claim.entry)
            .ignore();
    }

    /// Puts a held ticket back at the end of the queue for another worker, at once rather
    /// than after the idle limit: its worker is stopping.
    pub fn hand_back(&mut self, claim: &Claim) -> Result<()> {
        let json = serde_json::to_string(&claim.ticket).expect("a ticket is JSON");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(self.keys.jobs())
            .arg("*")
            .arg("ticket")
            .arg(json)
            .ignore();
        self.retire(&mut pipe, claim);
        pipe.query::<()>(&mut self.con)?;
        Ok(())
    }

    /// Asks whoever runs (or will run) the job to stop.
    pub fn cancel(&mut self, job: u64) -> Result<()> {
        redis::cmd("SET")
            .arg(self.keys.cancel(job))
            .arg(1)
            .arg("EX")
            .arg(RECORD_SECS)
            .query::<()>(&mut self.con)?;
        Ok(())
    }

    pub fn is_cancelled(&mut self, job: u64) -> Result<bool> {
        Ok(redis::cmd("EXISTS")
            .arg(self.keys.cancel(job))
            .query(&mut self.con)?)
    }

    /// Tickets not yet read by any worker, and tickets a worker holds.
    pub fn depth(&mut self) -> Result<(u64, u64)> {
        let length: u64 = redis::cmd("XLEN")
            .arg(self.keys.jobs())
            .query(&mut self.con)?;
        let summary: Value = redis::cmd("XPENDING")
            .arg(self.keys.jobs())
            .arg(self.keys.group())
            .query(&mut self.con)?;
        let held = match summary {
            Value::Array(fields) => match fields.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        Ok((length.saturating_sub(held), held))
    }
}

fn claim(entry: StreamId, reclaimed: bool) -> Result<Claim> {
    let json: String = entry
        .get("ticket")
        .ok_or_else(|| ClusterError::damaged("ticket", format!("entry {} has none", entry.id)))?;
    let ticket = serde_json::from_str(&json).map_err(|e| ClusterError::damaged("ticket", e))?;
    Ok(Claim {
        ticket,
        entry: entry.id,
        reclaimed,
    })
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
