//! The two consumers portage has: one keeps everything in memory
//! (`PipeReader.getvalue()`), one appends it to a log file (`PipeLogger`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use actix::prelude::*;
use bytes::BytesMut;

use crate::messages::{Chunk, Collected, Flush, GetValue, Stream, TakeValue};

/// An actor that keeps every chunk it is sent, one growing buffer per
/// stream (portage's `PipeReader.getvalue()`).
///
/// Subscribe it with [`Popen::subscribe`](crate::Popen::subscribe), then
/// ask with [`GetValue`] (a copy) or [`TakeValue`] (no copy) after the
/// task's [`Exited`](crate::Exited): every chunk is in its mailbox before
/// that event is sent.
#[derive(Debug, Default)]
pub struct Collector {
    stdout: BytesMut,
    stderr: BytesMut,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Collector {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        match chunk.stream {
            Stream::Stdout => self.stdout.extend_from_slice(&chunk.data),
            Stream::Stderr => self.stderr.extend_from_slice(&chunk.data),
        }
    }
}

impl Handler<GetValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: GetValue, _ctx: &mut Context<Self>) -> Collected {
        Collected {
            stdout: bytes::Bytes::copy_from_slice(&self.stdout),
            stderr: bytes::Bytes::copy_from_slice(&self.stderr),
        }
    }
}

impl Handler<TakeValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: TakeValue, _ctx: &mut Context<Self>) -> Collected {
        Collected {
            stdout: self.stdout.split().freeze(),
            stderr: self.stderr.split().freeze(),
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
