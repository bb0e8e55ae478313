//! A part of the protocol that holds a connection, opened again after any failure: Redis
//! may restart (its AOF keeps the queue), and both ends carry on once it is back.

use crate::Result;

type Opener<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;

pub struct Reconnecting<T> {
    open: Opener<T>,
    part: Option<T>,
}

impl<T> Reconnecting<T> {
    /// Nothing is opened until first used.
    pub fn new(open: impl Fn() -> Result<T> + Send + Sync + 'static) -> Self {
        Self {
            open: Box::new(open),
            part: None,
        }
    }

    /// Runs `f` on the part, opening it first when it is closed. After an error the part
    /// is dropped, so the next call starts on a fresh connection.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let part = match self.part.as_mut() {
            Some(part) => part,
            None => self.part.insert((self.open)()?),
        };
        let result = f(part);
        if result.is_err() {
            self.part = None;
        }
        result
    }
}
