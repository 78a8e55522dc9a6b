//! The two consumers portage has: one keeps the output in memory
//! (`PipeReader.getvalue()`), up to a limit, one appends it to a log file
//! (`PipeLogger`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use actix::prelude::*;
use bytes::{Buf, Bytes, BytesMut};

use crate::messages::{Chunk, Collected, Flush, GetValue, OutputStream, TakeValue};

/// How many bytes of each stream a [`Collector`] keeps unless told
/// otherwise: 64 MiB.
///
/// portage's `getvalue()` keeps everything, and so would a host that
/// collects the output of a runaway child until it is killed for its
/// memory. 64 MiB is far more than the output anyone collects on purpose
/// (a large build log is a few MiB), so no one hits it by accident, yet
/// small enough that a host under a memory limit survives a child that
/// writes for ever. A host collecting from many children at once should
/// set a smaller limit with [`Collector::with_limit`].
pub const DEFAULT_COLLECTOR_LIMIT: usize = 64 * 1024 * 1024;

/// What a [`Collector`] keeps of a stream longer than its limit. Either
/// way the bytes dropped are counted in
/// [`Collected::stdout_dropped`]/[`Collected::stderr_dropped`], and a
/// warning is logged when a stream first goes over the limit.
///
/// (Node's `maxBuffer` also kills the child. A collector cannot: it is
/// created, and subscribed, before the task it would cancel exists; send
/// [`Cancel`](crate::Cancel) yourself when `Collected` reports drops.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectorOverflow {
    /// Keep the first `limit` bytes and drop what follows, as `head -c`.
    /// The default: what is kept is a prefix of what the child wrote, and
    /// [`GetValue`] keeps handing out the buffer without a copy.
    #[default]
    KeepHead,
    /// Keep the last `limit` bytes, dropping the oldest as new ones come,
    /// as `tail -c`: for a log, where the end says why it failed. The
    /// buffer of a stream rolling this way takes up to about twice the
    /// limit and a chunk.
    KeepTail,
}

/// An actor that keeps the chunks it is sent, one growing buffer per
/// stream, up to a limit (portage's `PipeReader.getvalue()`, which has
/// none).
///
/// Subscribe it with [`Popen::subscribe`](crate::Popen::subscribe), then
/// ask with [`GetValue`] or [`TakeValue`] after the task's
/// [`Exited`](crate::Exited): every chunk is in its mailbox before that
/// event is sent. Each byte is copied once, from the chunk into the
/// buffer; [`GetValue`] then hands out the buffer itself (a shared
/// [`Bytes`]), not a copy, unless chunks arrived since the last
/// [`GetValue`] and must be joined to it.
///
/// [`Collector::start_default`](Actor::start_default) (or
/// [`Default`]) keeps at most [`DEFAULT_COLLECTOR_LIMIT`] bytes of each
/// stream, the first ones ([`CollectorOverflow::KeepHead`]);
/// [`Collector::with_limit`] sets another limit and policy.
///
/// ```
/// use actix::Actor;
/// use actix_popen::{AsyncWait, Collector, CollectorOverflow, GetValue, Popen};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = Collector::with_limit(4, CollectorOverflow::KeepTail).start();
/// let process = Popen::new("echo")
///     .arg("hello")
///     .subscribe(collector.clone().recipient())
///     .start()?;
/// process.send(AsyncWait).await??;
/// let output = collector.send(GetValue).await?;
/// assert_eq!(&output.stdout[..], b"llo\n");
/// assert_eq!(output.stdout_dropped, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Collector {
    stdout: Part,
    stderr: Part,
    limit: usize,
    overflow: CollectorOverflow,
}

impl Default for Collector {
    /// Keeps the first [`DEFAULT_COLLECTOR_LIMIT`] bytes of each stream.
    fn default() -> Collector {
        Collector::with_limit(DEFAULT_COLLECTOR_LIMIT, CollectorOverflow::KeepHead)
    }
}

impl Collector {
    /// A collector (to [`start`](Actor::start)) that keeps at most `limit`
    /// bytes of each stream, which ones as `overflow` says. A limit of 0
    /// keeps nothing (and counts everything); `usize::MAX` keeps
    /// everything, as portage does.
    pub fn with_limit(limit: usize, overflow: CollectorOverflow) -> Collector {
        Collector {
            stdout: Part::default(),
            stderr: Part::default(),
            limit,
            overflow,
        }
    }
}

/// What was collected of one stream: a frozen part already handed out,
/// and the bytes that arrived since.
#[derive(Debug, Default)]
struct Part {
    frozen: Bytes,
    open: BytesMut,
    /// Bytes dropped over the limit since the last [`TakeValue`].
    dropped: u64,
    /// Whether the warning about the limit was logged.
    warned: bool,
}

impl Part {
    fn len(&self) -> usize {
        self.frozen.len() + self.open.len()
    }

    /// Keeps what `overflow` keeps of `data` within `limit`; returns how
    /// many bytes were dropped.
    fn collect(&mut self, data: &[u8], limit: usize, overflow: CollectorOverflow) -> usize {
        match overflow {
            CollectorOverflow::KeepHead => {
                let kept = data.len().min(limit.saturating_sub(self.len()));
                self.open.extend_from_slice(&data[..kept]);
                data.len() - kept
            }
            CollectorOverflow::KeepTail => {
                // Of the chunk itself, at most its last `limit` bytes stay.
                let tail = &data[data.len().saturating_sub(limit)..];
                let mut dropped = data.len() - tail.len();
                // Then make room by dropping the oldest bytes: those handed
                // out already (a slice, no copy), then the newer ones.
                let excess = (self.len() + tail.len()).saturating_sub(limit);
                let from_frozen = excess.min(self.frozen.len());
                self.frozen.advance(from_frozen);
                self.open.advance(excess - from_frozen);
                dropped += excess;
                self.open.extend_from_slice(tail);
                dropped
            }
        }
    }

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

    fn take(&mut self) -> (Bytes, u64) {
        let value = self.value();
        self.frozen = Bytes::new();
        (value, std::mem::take(&mut self.dropped))
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Collector {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let part = match chunk.stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        let dropped = part.collect(&chunk.data, self.limit, self.overflow);
        if dropped > 0 {
            part.dropped += dropped as u64;
            if !part.warned {
                part.warned = true;
                let kept = match self.overflow {
                    CollectorOverflow::KeepHead => "first",
                    CollectorOverflow::KeepTail => "last",
                };
                log::warn!(
                    "collector: the {:?} output is longer than {} bytes; keeping the {kept} {}, counting the rest as dropped",
                    chunk.stream,
                    self.limit,
                    self.limit
                );
            }
        }
    }
}

impl Handler<GetValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: GetValue, _ctx: &mut Context<Self>) -> Collected {
        Collected {
            stdout: self.stdout.value(),
            stderr: self.stderr.value(),
            stdout_dropped: self.stdout.dropped,
            stderr_dropped: self.stderr.dropped,
        }
    }
}

impl Handler<TakeValue> for Collector {
    type Result = Collected;

    fn handle(&mut self, _msg: TakeValue, _ctx: &mut Context<Self>) -> Collected {
        let (stdout, stdout_dropped) = self.stdout.take();
        let (stderr, stderr_dropped) = self.stderr.take();
        Collected {
            stdout,
            stderr,
            stdout_dropped,
            stderr_dropped,
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

    #[test]
    fn get_value_shares_the_buffer_and_joins_later_chunks() {
        crate::test_support::bounded(async {
            let collector = Collector::start_default();
            collector
                .send(Chunk::new(
                    crate::TaskId::new(),
                    OutputStream::Stdout,
                    &b"ab"[..],
                ))
                .await
                .unwrap();
            collector
                .send(Chunk::new(
                    crate::TaskId::new(),
                    OutputStream::Stderr,
                    &b"e"[..],
                ))
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
                .send(Chunk::new(
                    crate::TaskId::new(),
                    OutputStream::Stdout,
                    &b"cd"[..],
                ))
                .await
                .unwrap();
            assert_eq!(&collector.send(GetValue).await.unwrap().stdout[..], b"abcd");
            assert_eq!(
                &collector.send(TakeValue).await.unwrap().stdout[..],
                b"abcd"
            );
            assert!(collector.send(GetValue).await.unwrap().stdout.is_empty());
        });
    }

    async fn feed(collector: &Addr<Collector>, stream: OutputStream, data: &'static [u8]) {
        collector
            .send(Chunk::new(crate::TaskId::new(), stream, data))
            .await
            .unwrap();
    }

    #[test]
    fn the_default_keeps_the_first_64_mib() {
        let collector = Collector::default();
        assert_eq!(collector.limit, 64 << 20);
        assert_eq!(collector.overflow, CollectorOverflow::KeepHead);
    }

    #[test]
    fn keep_head_keeps_the_first_bytes_and_counts_the_rest() {
        crate::test_support::bounded(async {
            let collector = Collector::with_limit(5, CollectorOverflow::KeepHead).start();
            feed(&collector, OutputStream::Stdout, b"abc").await;
            let first = collector.send(GetValue).await.unwrap();
            feed(&collector, OutputStream::Stdout, b"defg").await;
            feed(&collector, OutputStream::Stdout, b"hij").await;
            feed(&collector, OutputStream::Stderr, b"12").await;
            let value = collector.send(GetValue).await.unwrap();
            assert_eq!(&value.stdout[..], b"abcde");
            assert_eq!(value.stdout_dropped, 5);
            assert_eq!(&value.stderr[..], b"12", "each stream has its own limit");
            assert_eq!(value.stderr_dropped, 0);
            assert_eq!(&first.stdout[..], b"abc", "what was handed out stays");
            // TakeValue empties the collector and its counts.
            assert_eq!(collector.send(TakeValue).await.unwrap(), value);
            feed(&collector, OutputStream::Stdout, b"klmnopq").await;
            let value = collector.send(GetValue).await.unwrap();
            assert_eq!(
                (&value.stdout[..], value.stdout_dropped),
                (&b"klmno"[..], 2)
            );
        });
    }

    #[test]
    fn keep_tail_keeps_the_last_bytes_and_counts_the_rest() {
        crate::test_support::bounded(async {
            let collector = Collector::with_limit(5, CollectorOverflow::KeepTail).start();
            feed(&collector, OutputStream::Stdout, b"abc").await;
            let first = collector.send(GetValue).await.unwrap();
            feed(&collector, OutputStream::Stdout, b"defg").await;
            let value = collector.send(GetValue).await.unwrap();
            assert_eq!(
                (&value.stdout[..], value.stdout_dropped),
                (&b"cdefg"[..], 2)
            );
            // A chunk longer than the limit: only its end stays.
            feed(&collector, OutputStream::Stdout, b"0123456789").await;
            let value = collector.send(GetValue).await.unwrap();
            assert_eq!(
                (&value.stdout[..], value.stdout_dropped),
                (&b"56789"[..], 12)
            );
            assert_eq!(&first.stdout[..], b"abc", "what was handed out stays");
            assert_eq!(value.stderr_dropped, 0);
        });
    }

    #[test]
    fn keep_tail_rolling_for_long_stays_within_about_twice_the_limit_and_a_chunk() {
        let mut part = Part::default();
        let limit = 1000;
        let chunk = [7u8; 333];
        let mut dropped = 0;
        for round in 0..10_000 {
            dropped += part.collect(&chunk, limit, CollectorOverflow::KeepTail);
            if round % 100 == 0 {
                // Now and then handed out, as GetValue does.
                drop(part.value());
            }
            assert!(part.len() <= limit);
            // Right after the buffer moves or grows this is its whole size,
            // so a buffer that kept growing would show here.
            assert!(
                part.open.capacity() <= 2 * (limit + chunk.len()),
                "capacity {} after {round} rounds",
                part.open.capacity()
            );
        }
        assert_eq!(dropped, 10_000 * chunk.len() - limit);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing_and_counts_everything() {
        crate::test_support::bounded(async {
            for overflow in [CollectorOverflow::KeepHead, CollectorOverflow::KeepTail] {
                let collector = Collector::with_limit(0, overflow).start();
                feed(&collector, OutputStream::Stderr, b"abc").await;
                let value = collector.send(GetValue).await.unwrap();
                assert_eq!((value.stderr.len(), value.stderr_dropped), (0, 3));
            }
        });
    }
}
