use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("“{url}” is not a Redis address (redis://HOST:PORT/DB): {source}")]
    Address {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the job queue at {url} cannot be reached: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the job queue stopped answering: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a message on the job queue is damaged ({what}): {detail}")]
    Damaged { what: &'static str, detail: String },
}

impl ClusterError {
    pub(crate) fn damaged(what: &'static str, detail: impl ToString) -> Self {
        Self::Damaged {
            what,
            detail: detail.to_string(),
        }
    }
}
