//! Backpressure by credit: each chunk carries a credit of its reader's
//! window, returned when every subscriber dropped it; with the window used
//! up the reader stops reading, the pipe fills and the child blocks in
//! `write()`. Nothing is dropped, and memory stays flat however slow the
//! subscriber.
//!
//! Every test leaves nothing running: a [`Leftovers`] guard kills, on drop,
//! every live member of the process groups it was told about.

mod common;

use common::EVENT_TIMEOUT;

use std::fs;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{AsyncWait, Chunk, Exited, OutputTo, PipeStatus, Pipeline, Popen, ReturnCode};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use common::procs::Leftovers;
use common::usage::rss;

/// How long nothing may arrive while the subscriber holds the window: the
/// very point of the stall tests, so kept short.
const QUIET: Duration = Duration::from_millis(300);

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------
// A slow subscriber
// ---------------------------------------------------------------------

/// What a [`Slow`] subscriber saw by the exit.
#[derive(Debug)]
struct Report {
    bytes: u64,
    chunks: u64,
    all_zero: bool,
    peak_rss: u64,
    exited: Exited,
}

/// Takes 1 ms over each chunk (blocking its own arbiter's thread, as a
/// subscriber doing real work would), sampling our RSS as it goes.
struct Slow {
    bytes: u64,
    chunks: u64,
    all_zero: bool,
    peak_rss: u64,
    done: Option<oneshot::Sender<Report>>,
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Slow {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(1));
        self.bytes += chunk.data.len() as u64;
        self.chunks += 1;
        self.all_zero &= chunk.data.iter().all(|&b| b == 0);
        self.peak_rss = self.peak_rss.max(rss());
    }
}

impl Handler<Exited> for Slow {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Report {
                bytes: self.bytes,
                chunks: self.chunks,
                all_zero: self.all_zero,
                peak_rss: self.peak_rss.max(rss()),
                exited,
            });
        }
    }
}

#[test]
fn slow_subscriber_keeps_memory_flat_and_gets_every_byte() {
    common::bounded(async {
        const TOTAL: u64 = 64 * MIB;
        // The subscriber runs on an arbiter of its own: the reader is free to
        // run ahead of it as fast as the child writes, but for the window.
        let arbiter = Arbiter::new();
        let (done, report) = oneshot::channel();
        let slow = Slow::start_in_arbiter(&arbiter.handle(), move |_| Slow {
            bytes: 0,
            chunks: 0,
            all_zero: true,
            peak_rss: 0,
            done: Some(done),
        });
        let baseline = rss();
        let started = Instant::now();
        let handle = Popen::new("head")
            .args(["-c", &TOTAL.to_string(), "/dev/zero"])
            .stderr(OutputTo::Null)
            .bufsize(65536)
            .window(4)
            .subscribe(slow.clone().recipient())
            .exit_listener(slow.recipient())
            .start()
            .expect("cannot start head");
        let _leftovers = Leftovers::of(&handle);

        let report = tokio::time::timeout(EVENT_TIMEOUT, report)
            .await
            .expect("64 MiB did not arrive in time")
            .expect("the subscriber is gone");
        let elapsed = started.elapsed();
        arbiter.stop();

        let growth = report.peak_rss.saturating_sub(baseline);
        eprintln!(
        "64 MiB in {} chunks in {elapsed:?}; RSS {:.1} MiB at the start, peak {:.1} MiB, growth {:.1} MiB",
        report.chunks,
        baseline as f64 / MIB as f64,
        report.peak_rss as f64 / MIB as f64,
        growth as f64 / MIB as f64,
    );
        assert_eq!(report.bytes, TOTAL, "bytes lost or added");
        assert!(report.all_zero, "the bytes are not those of /dev/zero");
        assert!(report.exited.output_complete);
        assert_eq!(report.exited.returncode, ReturnCode::from_raw(0));
        assert!(
            growth < 32 * MIB,
            "RSS grew by {growth} bytes while a slow subscriber read 64 MiB"
        );
    });
}

// ---------------------------------------------------------------------
// A subscriber that holds its chunks
// ---------------------------------------------------------------------

/// Keeps whole chunks (and so their credit) while holding; after
/// [`Release`] it drops them and every later chunk at once. Reports each
/// arrival on a channel.
struct Holder {
    held: Vec<Chunk>,
    holding: bool,
    bytes: u64,
    arrivals: mpsc::UnboundedSender<usize>,
}

impl Holder {
    fn start(arrivals: mpsc::UnboundedSender<usize>) -> Addr<Holder> {
        Holder {
            held: Vec::new(),
            holding: true,
            bytes: 0,
            arrivals,
        }
        .start()
    }
}

impl Actor for Holder {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Holder {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        self.bytes += chunk.data.len() as u64;
        let _ = self.arrivals.unbounded_send(chunk.data.len());
        if self.holding {
            self.held.push(chunk);
        }
    }
}

/// Drops the held chunks (their credit returns) and stops holding.
#[derive(Message)]
#[rtype(result = "()")]
struct Release;

impl Handler<Release> for Holder {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Context<Self>) {
        self.holding = false;
        self.held.clear();
    }
}

/// The bytes received so far.
#[derive(Message)]
#[rtype(result = "u64")]
struct Received;

impl Handler<Received> for Holder {
    type Result = u64;

    fn handle(&mut self, _msg: Received, _ctx: &mut Context<Self>) -> u64 {
        self.bytes
    }
}

/// Waits for `count` arrivals.
async fn await_arrivals(arrivals: &mut mpsc::UnboundedReceiver<usize>, count: usize) {
    for _ in 0..count {
        tokio::time::timeout(EVENT_TIMEOUT, arrivals.next())
            .await
            .expect("no chunk arrived in time")
            .expect("the holder is gone");
    }
}

/// Checks that nothing arrives for [`QUIET`].
async fn assert_quiet(arrivals: &mut mpsc::UnboundedReceiver<usize>) {
    if let Ok(arrival) = tokio::time::timeout(QUIET, arrivals.next()).await {
        panic!("a chunk arrived while the window was used up: {arrival:?}");
    }
}

/// Where the kernel says `pid` sleeps (`/proc/<pid>/wchan`), if it says.
fn wchan(pid: i32) -> Option<String> {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    (!wchan.is_empty() && wchan != "0").then_some(wchan)
}

#[test]
fn held_chunks_stop_the_reader_and_block_the_child() {
    common::bounded(async {
        const TOTAL: u64 = MIB;
        let (tx, mut arrivals) = mpsc::unbounded();
        let holder = Holder::start(tx);
        // 1 MiB does not fit in the pipe (64 KiB) plus the window: the child
        // cannot finish while the window is held.
        let handle = Popen::new("head")
            .args(["-c", &TOTAL.to_string(), "/dev/zero"])
            .stderr(OutputTo::Null)
            .bufsize(4096)
            .window(2)
            .subscribe(holder.clone().recipient())
            .start()
            .expect("cannot start head");
        let _leftovers = Leftovers::of(&handle);
        let pid = handle.pid().expect("no pid") as i32;

        await_arrivals(&mut arrivals, 2).await;
        assert_quiet(&mut arrivals).await;
        assert_eq!(holder.send(Received).await.expect("holder gone"), 8192);
        assert_eq!(
            handle.try_wait(),
            None,
            "the child finished with 8 KiB read"
        );
        assert!(handle.pid().is_some(), "the child exited with 8 KiB read");
        // Where the kernel shows it: the child sleeps in the pipe's write.
        if let Some(wchan) = wchan(pid) {
            eprintln!("the child waits in {wchan}");
            assert!(wchan.contains("pipe_write"), "the child waits in {wchan}");
        }

        holder.do_send(Release);
        let code = tokio::time::timeout(EVENT_TIMEOUT, handle.send(AsyncWait))
            .await
            .expect("the rest did not arrive in time")
            .expect("actor gone")
            .expect("AsyncWait failed");
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(holder.send(Received).await.expect("holder gone"), TOTAL);
    });
}

#[test]
fn held_chunks_at_the_end_of_a_pipeline_block_its_first_stage() {
    common::bounded(async {
        const TOTAL: u64 = 16 * MIB;
        let (tx, mut arrivals) = mpsc::unbounded();
        let holder = Holder::start(tx);
        // Far more than every pipe, every window and both cats' buffers hold.
        let stage = |popen: Popen| popen.stderr(OutputTo::Null).bufsize(4096).window(2);
        let pipeline = Pipeline::new()
            .stage(stage(Popen::new("head").args([
                "-c",
                &TOTAL.to_string(),
                "/dev/zero",
            ])))
            .stage(stage(Popen::new("cat")))
            .stage(stage(Popen::new("cat")).subscribe(holder.clone().recipient()))
            .start()
            .expect("cannot start the pipeline");
        let _leftovers = Leftovers::pipeline(&pipeline);

        await_arrivals(&mut arrivals, 2).await;
        assert_quiet(&mut arrivals).await;
        assert_eq!(
            pipeline.send(PipeStatus).await.expect("actor gone"),
            vec![None, None, None],
            "a stage ended while the end of the pipeline was held"
        );
        let first = pipeline.stages()[0].pid().expect("the first stage exited") as i32;
        if let Some(wchan) = wchan(first) {
            eprintln!("the first stage waits in {wchan}");
            assert!(
                wchan.contains("pipe_write"),
                "the first stage waits in {wchan}"
            );
        }

        holder.do_send(Release);
        let code = tokio::time::timeout(EVENT_TIMEOUT, pipeline.send(AsyncWait))
            .await
            .expect("the rest did not arrive in time")
            .expect("actor gone")
            .expect("AsyncWait failed");
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(holder.send(Received).await.expect("holder gone"), TOTAL);
        let statuses = pipeline.send(PipeStatus).await.expect("actor gone");
        assert_eq!(statuses, vec![Some(ReturnCode::from_raw(0)); 3]);
    });
}
