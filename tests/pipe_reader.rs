//! The pipe reader: portage's `PipeReaderTestCase` (`test_pipe`,
//! `test_pty_device`, `test_domain_socket`, `test_named_pipe`) on each kind
//! of fd, the `bufsize` cap, the hang-up of portage bug #531724, and the
//! same guarantees through the process API (byte-exact output, `Exited`
//! after the last chunk, a grandchild's late output, 1 MiB whole).

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitStatus, Stdio};

use actix::prelude::*;
use actix_popen::{
    Collector, GetValue, InputFrom, OutputStream, OutputTo, PipeReader, Popen, DEFAULT_BUFSIZE,
};
use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;

use common::{assert_gone, event, Events, Waiter};

/// The sizes portage's `PipeReaderTestCase._do_test` writes.
const SIZES: [usize; 11] = [1, 2, 5, 6, 7, 8, 32, 1024, 4096, 8192, 16384];

/// A read end for the reader and a write end for the producer, all
/// close-on-exec so that no other test's child inherits them (an inherited
/// write end would hold EOF back).
struct Channel {
    read: OwnedFd,
    write: OwnedFd,
    /// Holds a FIFO's directory until the test is done.
    _dir: Option<tempfile::TempDir>,
}

/// One kind of fd, as a function making a fresh [`Channel`].
type Kind = (&'static str, fn() -> Channel);

const KINDS: [Kind; 4] = [
    ("pipe", pipe),
    ("pty", pty),
    ("domain socket", socket),
    ("named pipe", fifo),
];

/// An anonymous pipe (portage's `test_pipe`).
fn pipe() -> Channel {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    Channel {
        read,
        write,
        _dir: None,
    }
}

/// A pseudo-terminal: the reader gets the master, the producer the slave,
/// which does not become anyone's controlling terminal (portage's
/// `test_pty_device`).
fn pty() -> Channel {
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = posix_openpt(flags).expect("posix_openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname_r(&master).expect("ptsname_r");
    let slave = open(name.as_str(), flags, Mode::empty()).expect("open the pty slave");
    Channel {
        read: master.into(),
        write: slave,
        _dir: None,
    }
}

/// A connected pair of Unix stream sockets (portage's `test_domain_socket`).
fn socket() -> Channel {
    let (read, write) = UnixStream::pair().expect("socketpair");
    Channel {
        read: read.into(),
        write: write.into(),
        _dir: None,
    }
}

/// A FIFO in a temporary directory, its read end opened (non-blocking)
/// before its write end, as portage's `test_named_pipe` does.
fn fifo() -> Channel {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fifo");
    nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    let read = open(
        &path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .expect("open the FIFO for reading");
    let write = open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .expect("open the FIFO for writing");
    Channel {
        read,
        write,
        _dir: Some(dir),
    }
}

/// A child that writes `data` to `output` and exits. The test's copy of
/// `output` is closed once the child has it. Killed and reaped on drop, so
/// a failing test leaves nothing behind.
struct Producer(std::process::Child);

impl Producer {
    fn spawn(data: &str, output: OwnedFd) -> Producer {
        // `command` holds our copy of `output`; it is dropped on return.
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"printf %s "$0""#, data])
            .stdin(Stdio::null())
            .stdout(Stdio::from(output))
            .stderr(Stdio::inherit());
        Producer(command.spawn().expect("spawn the producer"))
    }

    /// Reaps the producer. Only called once it closed its output (the
    /// reader saw EOF), or when what it writes fits the kernel's buffer.
    fn wait(mut self) -> ExitStatus {
        self.0.wait().expect("wait for the producer")
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `size` bytes of `a`.
fn a_string(size: usize) -> String {
    "a".repeat(size)
}

/// Starts a reader on `read` with a collector and a waiter as finish
/// listener; returns the collector and the waiter's channels.
fn start_reader(read: OwnedFd, bufsize: usize) -> (Addr<Collector>, common::Awaited) {
    let collector = Collector::start_default();
    let (waiter, awaited) = Waiter::start_new();
    PipeReader::new()
        .input(OutputStream::Stdout, read)
        .bufsize(bufsize)
        .subscribe(collector.clone().recipient())
        .subscribe(waiter.clone().recipient())
        .on_finished(waiter.recipient())
        .start();
    (collector, awaited)
}

/// Checks what a reader delivered: finished once and complete, every
/// chunk a `Stdout` chunk of at most `bufsize` bytes, and exactly `data`
/// in the collector.
async fn check_delivery(
    what: &str,
    events: &Events,
    collector: &Addr<Collector>,
    data: &[u8],
    bufsize: usize,
) {
    assert_eq!(events.finished.len(), 1, "{what}: finished once");
    assert!(
        events.finished[0].complete,
        "{what}: reader stopped before EOF"
    );
    for (stream, chunk) in &events.chunks {
        assert_eq!(
            *stream,
            OutputStream::Stdout,
            "{what}: chunk tagged {stream:?}"
        );
        assert!(
            !chunk.is_empty() && chunk.len() <= bufsize,
            "{what}: a chunk of {} bytes with bufsize {bufsize}",
            chunk.len()
        );
    }
    assert_eq!(events.bytes(), data, "{what}: the chunks, concatenated");
    let collected = collector.send(GetValue).await.expect("collector");
    assert_eq!(
        collected.stdout.len(),
        data.len(),
        "{what}: bytes collected"
    );
    assert_eq!(&collected.stdout[..], data, "{what}: collected");
    assert!(collected.stderr.is_empty(), "{what}: nothing on stderr");
}

/// portage's `_testPipeReader`: a producer writes `size` bytes of `a` into
/// a fresh channel of `kind` while a reader reads the other end; once the
/// reader finishes at EOF it must have read exactly those bytes.
async fn read_through(kind: &Kind, size: usize) {
    let (name, make) = kind;
    let what = format!("{name}, {size} bytes");
    let Channel { read, write, _dir } = make();
    let (collector, awaited) = start_reader(read, DEFAULT_BUFSIZE);
    let data = a_string(size);
    let producer = Producer::spawn(&data, write);
    let events = event(&format!("ReaderFinished ({what})"), awaited.finished).await;
    // The reader saw EOF: the producer closed its output and is exiting.
    let status = producer.wait();
    assert!(status.success(), "{what}: producer {status}");
    check_delivery(&what, &events, &collector, data.as_bytes(), DEFAULT_BUFSIZE).await;
}

async fn read_every_size(kind: &Kind) {
    for size in SIZES {
        read_through(kind, size).await;
    }
}

#[test]
fn test_pipe() {
    common::bounded(async {
        read_every_size(&KINDS[0]).await;
    });
}

/// Bytes without a newline come through the terminal unchanged.
#[test]
fn test_pty_device() {
    common::bounded(async {
        read_every_size(&KINDS[1]).await;
    });
}

#[test]
fn test_domain_socket() {
    common::bounded(async {
        read_every_size(&KINDS[2]).await;
    });
}

#[test]
fn test_named_pipe() {
    common::bounded(async {
        read_every_size(&KINDS[3]).await;
    });
}

/// With `bufsize` 7, 100 bytes arrive as chunks of at most 7 bytes that
/// concatenate to the input, in order.
#[test]
fn bufsize_caps_every_chunk() {
    common::bounded(async {
        let data: String = (0..100u8).map(|i| char::from(b'a' + i % 26)).collect();
        let Channel { read, write, .. } = pipe();
        let (collector, awaited) = start_reader(read, 7);
        let producer = Producer::spawn(&data, write);
        let events = event("ReaderFinished", awaited.finished).await;
        assert!(producer.wait().success());
        check_delivery("bufsize 7", &events, &collector, data.as_bytes(), 7).await;
        assert!(
            events.chunks.len() >= 100usize.div_ceil(7),
            "{} chunks",
            events.chunks.len()
        );
    });
}

/// portage bug #531724: the producer writes and exits, closing its end,
/// before the reader even starts; the hang-up must not lose the data still
/// buffered in the channel.
#[test]
fn hang_up_before_the_reader_starts_loses_nothing() {
    common::bounded(async {
        // Small enough to sit in any of the kernel buffers with nobody reading.
        for size in [1, 32, 1024, 4096] {
            for kind in &KINDS {
                let (name, make) = kind;
                let what = format!("{name}, {size} bytes, hung up");
                let Channel { read, write, _dir } = make();
                let data = a_string(size);
                let status = Producer::spawn(&data, write).wait();
                assert!(status.success(), "{what}: producer {status}");
                let (collector, awaited) = start_reader(read, DEFAULT_BUFSIZE);
                let events = event(&format!("ReaderFinished ({what})"), awaited.finished).await;
                check_delivery(&what, &events, &collector, data.as_bytes(), DEFAULT_BUFSIZE).await;
            }
        }
    });
}

/// Runs `popen` with one waiter as subscriber and exit listener; returns
/// what the waiter held when `Exited` arrived.
async fn run(popen: Popen) -> Events {
    let (waiter, awaited) = Waiter::start_new();
    let process = popen
        .stdin(InputFrom::Null)
        .subscribe(waiter.clone().recipient())
        .exit_listener(waiter.recipient())
        .start()
        .expect("spawn");
    let events = event("Exited", awaited.exited).await;
    let exited = events.exited[0];
    if let Some(pid) = exited.pid {
        assert_gone(pid);
    }
    assert!(process.try_wait().is_some());
    events
}

/// Through [`Popen`]: `size` bytes of `a` written by the child arrive
/// byte-exact, in chunks of at most `bufsize`, all before `Exited`.
async fn popen_delivers(what: &str, popen: impl Fn(&str) -> Popen) {
    for size in SIZES {
        for bufsize in [size, DEFAULT_BUFSIZE] {
            let what = format!("{what}, {size} bytes, bufsize {bufsize}");
            let data = a_string(size);
            let events = run(popen(&data).bufsize(bufsize)).await;
            let exited = events.exited[0];
            assert!(exited.returncode.success(), "{what}: {}", exited.returncode);
            assert!(exited.output_complete, "{what}: output incomplete");
            for (stream, chunk) in &events.chunks {
                assert_eq!(*stream, OutputStream::Stdout, "{what}");
                assert!(chunk.len() <= bufsize, "{what}: {} bytes", chunk.len());
            }
            assert_eq!(events.bytes().len(), size, "{what}: bytes before Exited");
            assert_eq!(events.bytes(), data.as_bytes(), "{what}");
        }
    }
}

fn printf(data: &str) -> Popen {
    Popen::new("sh").args(["-c", r#"printf %s "$0""#, data])
}

#[test]
fn popen_pipe_delivers_every_size_byte_exact() {
    common::bounded(async {
        popen_delivers("pipe", |data| printf(data).stdout(OutputTo::Pipe)).await;
    });
}

#[test]
fn popen_pty_delivers_every_size_byte_exact() {
    common::bounded(async {
        popen_delivers("pty", |data| printf(data).pty()).await;
    });
}

#[test]
fn popen_stderr_merged_into_stdout_delivers_every_size_byte_exact() {
    common::bounded(async {
        popen_delivers("stderr merged", |data| {
            Popen::new("sh")
                .args(["-c", r#"printf %s "$0" >&2"#, data])
                .stderr(OutputTo::MergeIntoStdout)
        })
        .await;
    });
}

/// One actor that subscribes to the chunks and listens for the exit holds
/// every byte by the time it sees `Exited`: 1 MiB in many chunks, to give
/// the exit every chance to overtake them.
#[test]
fn exit_comes_after_every_chunk() {
    common::bounded(async {
        let events = run(Popen::new("head").args(["-c", "1048576", "/dev/zero"])).await;
        assert_eq!(events.exited.len(), 1);
        assert!(events.exited[0].returncode.success());
        assert!(events.chunks.len() > 1, "{} chunks", events.chunks.len());
        assert_eq!(events.bytes().len(), 1 << 20);
    });
}

/// A grandchild that writes after the child exited still holds the pipe:
/// its output is delivered, and before `Exited`.
#[test]
fn grandchild_output_after_the_child_exited_comes_before_exit() {
    common::bounded(async {
        let events = run(Popen::new("sh").args(["-c", "(sleep 0.2; printf late) & exit 0"])).await;
        let exited = events.exited[0];
        assert!(exited.returncode.success(), "{}", exited.returncode);
        assert!(exited.output_complete);
        assert_eq!(events.bytes(), b"late");
    });
}

/// 1 MiB of output arrives whole at a [`Collector`].
#[test]
fn one_mebibyte_arrives_whole() {
    common::bounded(async {
        let collector = Collector::start_default();
        let (waiter, awaited) = Waiter::start_new();
        let _process = Popen::new("head")
            .args(["-c", "1048576", "/dev/zero"])
            .stdin(InputFrom::Null)
            .subscribe(collector.clone().recipient())
            .exit_listener(waiter.recipient())
            .start()
            .expect("spawn head");
        let events = event("Exited", awaited.exited).await;
        assert!(events.exited[0].returncode.success());
        let collected = collector.send(GetValue).await.expect("collector");
        assert_eq!(collected.stdout.len(), 1 << 20);
        assert!(collected.stdout.iter().all(|&b| b == 0));
        assert!(collected.stderr.is_empty());
    });
}

/// With `coalesce`, reads that are ready at once share a chunk: what sits
/// in the pipe when the reader wakes arrives as one chunk (here 60,000
/// bytes written before the reader starts, read 4096 at a time), and no
/// chunk exceeds the coalesce size.
#[test]
fn coalesced_reads_share_a_chunk_under_the_limit() {
    common::bounded(async {
        use std::io::Write;
        let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        let (read, mut write) = std::io::pipe().expect("pipe");
        write.write_all(&data).expect("fits in the pipe");
        drop(write);
        let (waiter, awaited) = Waiter::start_new();
        PipeReader::new()
            .input(OutputStream::Stdout, read)
            .bufsize(4096)
            .coalesce(65536)
            .subscribe(waiter.clone().recipient())
            .on_finished(waiter.recipient())
            .start();
        let events = event("ReaderFinished", awaited.finished).await;
        let sizes: Vec<usize> = events.chunks.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(
            sizes,
            vec![60_000],
            "one chunk of everything that was ready"
        );
        assert_eq!(&events.chunks[0].1[..], &data[..]);

        // More than the limit: chunks of at most 65536, in order.
        let expected = Command::new("seq")
            .args(["1", "300000"])
            .output()
            .expect("seq")
            .stdout;
        let events = run(Popen::new("seq")
            .args(["1", "300000"])
            .bufsize(4096)
            .coalesce(65536))
        .await;
        assert!(events.chunks.iter().all(|(_, d)| d.len() <= 65536));
        let joined: Vec<u8> = events
            .chunks
            .iter()
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        assert_eq!(joined, expected);
    });
}

/// Regression: an input the reactor refuses (a regular file: epoll gives
/// EPERM) was never read, yet the reader reported `complete: true`.
#[test]
fn an_input_that_cannot_be_watched_makes_the_reader_incomplete() {
    common::bounded(async {
        let file = tempfile::tempfile().expect("a temporary file");
        let (waiter, awaited) = Waiter::start_new();
        PipeReader::new()
            .input(OutputStream::Stdout, std::os::fd::OwnedFd::from(file))
            .on_finished(waiter.recipient())
            .start();
        let events = event("ReaderFinished", awaited.finished).await;
        let completes: Vec<bool> = events.finished.iter().map(|f| f.complete).collect();
        assert_eq!(completes, vec![false]);
    });
}

/// Regression: a read that failed (not EOF) ended the input, yet the
/// reader reported `complete: true`. An eventfd refuses a read shorter
/// than its 8-byte counter with EINVAL.
#[test]
fn a_read_error_makes_the_reader_incomplete() {
    common::bounded(async {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let counter = EventFd::from_value_and_flags(1, EfdFlags::EFD_CLOEXEC).expect("an eventfd");
        let (waiter, awaited) = Waiter::start_new();
        PipeReader::new()
            .input(OutputStream::Stdout, std::os::fd::OwnedFd::from(counter))
            .bufsize(1)
            .on_finished(waiter.recipient())
            .start();
        let events = event("ReaderFinished", awaited.finished).await;
        let completes: Vec<bool> = events.finished.iter().map(|f| f.complete).collect();
        assert_eq!(completes, vec![false]);
        assert!(events.chunks.is_empty(), "nothing was read: {events:?}");
    });
}
