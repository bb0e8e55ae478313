//! Every key the protocol uses, under one namespace, so that two Stemdeck installations
//! (or two tests) can share one Redis.

#[derive(Debug, Clone)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
        }
    }

    /// The stream of tickets.
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.namespace)
    }

    /// The consumer group every worker reads the tickets through.
    pub fn group(&self) -> &'static str {
        "workers"
    }

    /// One job's progress and its end.
    pub fn progress(&self, job: u64) -> String {
        format!("{}:job:{job}:progress", self.namespace)
    }

    /// Set once, by the attempt that finishes the job.
    pub fn winner(&self, job: u64) -> String {
        format!("{}:job:{job}:winner", self.namespace)
    }

    pub fn cancel(&self, job: u64) -> String {
        format!("{}:job:{job}:cancel", self.namespace)
    }

    pub fn workers(&self) -> String {
        format!("{}:workers", self.namespace)
    }

    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.namespace)
    }
}
