//! The two consumers portage has: one keeps everything in memory
//! (`PipeReader.getvalue()`), one appends it to a log file (`PipeLogger`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::messages::{Chunk, Collected, Flush, GetValue, Stream, TakeValue};

/// An actor that keeps every chunk it is sent, one growing buffer per
/// stream (portage's `PipeReader.getvalue()`).
///
/// Subscribe it with [`Popen::subscribe`](crate::Popen::subscribe), then
/// ask with [`GetValue`] or [`TakeValue`] after the task's
/// [`Exited`](crate::Exited): every chunk is in its mailbox before that
/// event is sent. Each byte is copied once, from the chunk into the
/// buffer; [`GetValue`] then hands out the buffer itself (a shared
/// [`Bytes`]), not a copy, unless chunks arrived since the last
/// [`GetValue`] and must be joined to it.
#[derive(Debug, Default)]
pub struct Collector {
    stdout: Part,
    stderr: Part,
}

/// What was collected of one stream: a frozen part already handed out,
/// and the bytes that arrived since.
#[derive(Debug, Default)]
struct Part {
    frozen: Bytes,
    open: BytesMut,
}

impl Part {
    fn value(&mut self) -> Bytes {
        if !self.open.is_empty() {
            self.frozen = if self.frozen.is_empty() {
                self.open.split().freeze()
            } else {
                let mut joined = BytesMut::with_capacity(self.frozen.len() + self.open.len());
                joined.extend_from_slice(&self.frozen);
                joined.extend_from_slice(&self.open.split());
                joined.freeze()
            };
        }
        self.frozen.clone()
    }

    fn take(&mut self) -> Bytes {
        let value = self.value();
        self.frozen = Bytes::new();
        value
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Collector {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let part = match chunk.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        part.open.extend_from_slice(&chunk.data);
    }
}

impl Handler<GetValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: GetValue, _ctx: &mut Context<Self>) -> Collected {
        Collected {
            stdout: self.stdout.value(),
            stderr: self.stderr.value(),
        }
    }
}

impl Handler<TakeValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: TakeValue, _ctx: &mut Context<Self>) -> Collected {
        Collected {
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
        }
    }
}

/// An actor that appends every chunk it is sent to a log file (portage's
/// `PipeLogger`), stdout and stderr interleaved in arrival order.
///
/// Writes are buffered; [`Flush`] writes them out and reports the first
/// error, if any. The file is flushed when the actor stops.
#[derive(Debug)]
pub struct PipeLogger {
    file: BufWriter<File>,
    logged: u64,
    error: Option<io::Error>,
}

impl PipeLogger {
    /// Opens `path` for appending, creating it if needed, and starts the
    /// logger on the current arbiter.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Addr<PipeLogger>> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(PipeLogger {
            file: BufWriter::with_capacity(64 * 1024, file),
            logged: 0,
            error: None,
        }
        .start())
    }

    fn record(&mut self, result: io::Result<()>) {
        if let Err(err) = result {
            log::error!("pipe logger: {err}");
            self.error.get_or_insert(err);
        }
    }
}

impl Actor for PipeLogger {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let result = self.file.flush();
        self.record(result);
    }
}

impl Handler<Chunk> for PipeLogger {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        if self.error.is_some() {
            return;
        }
        let result = self.file.write_all(&chunk.data);
        if result.is_ok() {
            self.logged += chunk.data.len() as u64;
        }
        self.record(result);
    }
}

impl Handler<Flush> for PipeLogger {
    type Result = io::Result<u64>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Context<Self>) -> io::Result<u64> {
        if self.error.is_none() {
            let result = self.file.flush();
            self.record(result);
        }
        match &self.error {
            Some(err) => Err(io::Error::new(err.kind(), err.to_string())),
            None => Ok(self.logged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn get_value_shares_the_buffer_and_joins_later_chunks() {
        let collector = Collector::start_default();
        collector
            .send(Chunk::new(Stream::Stdout, &b"ab"[..]))
            .await
            .unwrap();
        collector
            .send(Chunk::new(Stream::Stderr, &b"e"[..]))
            .await
            .unwrap();
        let first = collector.send(GetValue).await.unwrap();
        assert_eq!(
            (&first.stdout[..], &first.stderr[..]),
            (&b"ab"[..], &b"e"[..])
        );
        let again = collector.send(GetValue).await.unwrap();
        assert_eq!(again.stdout.as_ptr(), first.stdout.as_ptr(), "no copy");
        collector
            .send(Chunk::new(Stream::Stdout, &b"cd"[..]))
            .await
            .unwrap();
        assert_eq!(&collector.send(GetValue).await.unwrap().stdout[..], b"abcd");
        assert_eq!(
            &collector.send(TakeValue).await.unwrap().stdout[..],
            b"abcd"
        );
        assert!(collector.send(GetValue).await.unwrap().stdout.is_empty());
    }
}
