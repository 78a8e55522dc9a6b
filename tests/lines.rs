//! [`LineFramer`] on the output of real children: lines at, over and under
//! the limit with both [`Overflow`] policies, lines cut across chunks by a
//! tiny `bufsize`, stdout and stderr framed apart, and every line delivered
//! before the forwarded [`Exited`].

mod common;

use common::SOON;

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Exited, Line, LineFramer, LineKind, OutputStream, Overflow, Popen, ReturnCode,
};
use futures::channel::oneshot;

use common::procs::Leftovers;
use LineKind::{Complete, Partial, Truncated, Unterminated};
use OutputStream::{Stderr as E, Stdout as O};

/// Lines as the tests compare them.
type Lines = Vec<(OutputStream, String, LineKind)>;

/// Keeps every line (its bytes only: the credit goes back at once) and
/// reports, at the forwarded exit, the lines that came before it.
struct Sink {
    lines: Lines,
    at_exit: Option<oneshot::Sender<(Lines, Exited)>>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Line> for Sink {
    type Result = ();

    fn handle(&mut self, line: Line, _ctx: &mut Context<Self>) {
        let text = String::from_utf8(line.data.to_vec()).expect("a line is not UTF-8");
        self.lines.push((line.stream, text, line.kind));
    }
}

impl Handler<Exited> for Sink {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.at_exit.take() {
            let _ = tx.send((self.lines.clone(), exited));
        }
    }
}

/// How many lines the sink has now.
#[derive(Message)]
#[rtype(result = "usize")]
struct Count;

impl Handler<Count> for Sink {
    type Result = usize;

    fn handle(&mut self, _msg: Count, _ctx: &mut Context<Self>) -> usize {
        self.lines.len()
    }
}

/// Runs `popen` through a framer of `max` bytes with `overflow`; returns
/// the lines the sink had when the exit reached it.
async fn frame(popen: Popen, max: usize, overflow: Overflow) -> (Lines, Exited) {
    let (tx, at_exit) = oneshot::channel();
    let sink = Sink {
        lines: Vec::new(),
        at_exit: Some(tx),
    }
    .start();
    let framer = LineFramer::new(max, overflow, sink.clone().recipient())
        .exit_to(sink.clone().recipient())
        .start();
    let handle = popen
        .subscribe(framer.clone().recipient())
        .exit_listener(framer.recipient())
        .start()
        .expect("cannot start the child");
    // Kills the child's group on drop if the test fails half-way.
    let _guard = Leftovers::of(&handle);
    let (lines, exited) = tokio::time::timeout(SOON, at_exit)
        .await
        .expect("no exit reached the sink in time")
        .expect("the sink is gone");
    let code = handle
        .send(AsyncWait)
        .await
        .expect("actor gone")
        .expect("AsyncWait failed");
    assert_eq!(exited.returncode, code);
    // Nothing came after the exit either.
    assert_eq!(sink.send(Count).await.expect("sink gone"), lines.len());
    (lines, exited)
}

fn lines(expected: &[(OutputStream, &str, LineKind)]) -> Lines {
    expected
        .iter()
        .map(|&(stream, text, kind)| (stream, text.to_owned(), kind))
        .collect()
}

/// Prints, on stdout: a short line, one of exactly 8 bytes, one of 9, an
/// empty one, one of 20, a normal one and an unterminated end; on stderr
/// a line and an unterminated end.
const SCRIPT: &str = r"printf 'short\n12345678\n123456789\n\nabcdefghijklmnopqrst\nok\ntail';
printf 'err1\nerr2' >&2";

#[test]
fn real_child_lines_with_split_policy() {
    common::bounded(async {
        for bufsize in [3, 4096] {
            let popen = Popen::new("sh").args(["-c", SCRIPT]).bufsize(bufsize);
            let (got, exited) = frame(popen, 8, Overflow::Split).await;
            assert_eq!(exited.returncode, ReturnCode::from_raw(0));
            assert!(exited.output_complete);
            let stdout: Lines = got
                .iter()
                .filter(|l| l.0 == OutputStream::Stdout)
                .cloned()
                .collect();
            let stderr: Lines = got
                .iter()
                .filter(|l| l.0 == OutputStream::Stderr)
                .cloned()
                .collect();
            use OutputStream::{Stderr as E, Stdout as O};
            assert_eq!(
                stdout,
                lines(&[
                    (O, "short", Complete),
                    (O, "12345678", Complete),
                    (O, "12345678", Partial),
                    (O, "9", Complete),
                    (O, "", Complete),
                    (O, "abcdefgh", Partial),
                    (O, "ijklmnop", Partial),
                    (O, "qrst", Complete),
                    (O, "ok", Complete),
                    (O, "tail", Unterminated),
                ]),
                "bufsize {bufsize}"
            );
            assert_eq!(
                stderr,
                lines(&[(E, "err1", Complete), (E, "err2", Unterminated)]),
                "bufsize {bufsize}"
            );
        }
    });
}

#[test]
fn real_child_lines_with_error_policy() {
    common::bounded(async {
        for bufsize in [3, 4096] {
            let popen = Popen::new("sh").args(["-c", SCRIPT]).bufsize(bufsize);
            let (got, exited) = frame(popen, 8, Overflow::Truncate).await;
            assert_eq!(exited.returncode, ReturnCode::from_raw(0));
            let stdout: Lines = got
                .iter()
                .filter(|l| l.0 == OutputStream::Stdout)
                .cloned()
                .collect();
            use OutputStream::Stdout as O;
            assert_eq!(
                stdout,
                lines(&[
                    (O, "short", Complete),
                    (O, "12345678", Complete),
                    (O, "12345678", Truncated),
                    (O, "", Complete),
                    (O, "abcdefgh", Truncated),
                    (O, "ok", Complete),
                    (O, "tail", Unterminated),
                ]),
                "bufsize {bufsize}"
            );
        }
    });
}

#[test]
fn a_hundred_thousand_lines_cut_across_chunks() {
    common::bounded(async {
        // Chunks of 7 bytes cut nearly every line; "100000" is over the limit.
        for overflow in [Overflow::Split, Overflow::Truncate] {
            let popen = Popen::new("seq").args(["1", "100000"]).bufsize(7);
            let (got, exited) = frame(popen, 5, overflow).await;
            assert_eq!(exited.returncode, ReturnCode::from_raw(0));
            let mut expected: Lines = (1..100000)
                .map(|n| (OutputStream::Stdout, n.to_string(), Complete))
                .collect();
            match overflow {
                Overflow::Split => {
                    expected.push((OutputStream::Stdout, "10000".to_owned(), Partial));
                    expected.push((OutputStream::Stdout, "0".to_owned(), Complete));
                }
                Overflow::Truncate => {
                    expected.push((OutputStream::Stdout, "10000".to_owned(), Truncated));
                }
            }
            assert_eq!(got.len(), expected.len(), "{overflow:?}");
            assert!(got == expected, "{overflow:?}: the lines differ");
        }
    });
}

/// Collects lines until it has `want` of them, then hands them over.
struct Want {
    want: usize,
    lines: Lines,
    done: Option<oneshot::Sender<Lines>>,
}

impl Actor for Want {
    type Context = Context<Self>;
}

impl Handler<Line> for Want {
    type Result = ();

    fn handle(&mut self, line: Line, _ctx: &mut Context<Self>) {
        let text = String::from_utf8(line.data.to_vec()).expect("a line is not UTF-8");
        self.lines.push((line.stream, text, line.kind));
        if self.lines.len() == self.want {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.lines.clone());
            }
        }
    }
}

/// Runs `popen` with `Popen::lines` to a [`Want`] of `want` lines.
async fn lines_of(popen: Popen, want: usize) -> (Lines, Addr<Want>) {
    let (done, lines) = oneshot::channel();
    let sink = Want {
        want,
        lines: Vec::new(),
        done: Some(done),
    }
    .start();
    let completed = common::within("the run", popen.lines(sink.clone().recipient()).status())
        .await
        .expect("the child runs");
    assert!(completed.success(), "{completed:?}");
    let lines = common::within("the lines", lines).await.expect("the sink");
    (lines, sink)
}

/// One call gives lines: `\r\n` ends a line as `\n` does (a `\r` inside
/// a line stays), and the last, unterminated line comes too.
#[test]
fn popen_lines_strips_crlf_and_delivers_the_unterminated_end() {
    common::bounded(async {
        let popen = Popen::new("sh").args([
            "-c",
            r"printf 'one\r\ntw\ro\n\r\nthree\r'; printf 'err\r\n' >&2",
        ]);
        let (mut got, _sink) = lines_of(popen, 5).await;
        got.sort_by_key(|(stream, _, _)| *stream == OutputStream::Stderr);
        assert_eq!(
            got,
            lines(&[
                (O, "one", Complete),
                (O, "tw\ro", Complete),
                (O, "", Complete),
                (O, "three\r", Unterminated),
                (E, "err", Complete),
            ])
        );
    });
}

/// Every line a pty writes ends in `\r\n`: the lines come without it.
#[test]
fn popen_lines_of_a_pty_have_no_cr() {
    common::bounded(async {
        let popen = Popen::new("printf").arg("a\nb\n").pty();
        let (got, _sink) = lines_of(popen, 2).await;
        assert_eq!(got, lines(&[(O, "a", Complete), (O, "b", Complete)]));
    });
}

/// `keep_cr(true)` keeps the `\r` of a `\r\n`.
#[test]
fn a_framer_can_keep_the_cr() {
    common::bounded(async {
        let (tx, at_exit) = oneshot::channel();
        let sink = Sink {
            lines: Vec::new(),
            at_exit: Some(tx),
        }
        .start();
        let framer = LineFramer::new(64, Overflow::Split, sink.clone().recipient())
            .keep_cr(true)
            .exit_to(sink.recipient())
            .start();
        Popen::new("printf")
            .arg("a\r\nb\n")
            .subscribe(framer.clone().recipient())
            .exit_listener(framer.recipient())
            .start()
            .expect("printf starts");
        let (got, _) = common::within("the exit", at_exit).await.expect("the sink");
        assert_eq!(got, lines(&[(O, "a\r", Complete), (O, "b", Complete)]));
    });
}
