//! Every event a user's actor may receive can be built by the user, so
//! that their handlers can be unit-tested without a child process.

mod common;

use actix::prelude::*;
use bytes::Bytes;

use actix_popen::{
    Chunk, CompletedProcess, ExitCause, Exited, Line, LineKind, OutputStream, ReaderFinished,
    ReturnCode, Started,
};

/// A user's actor: counts what it is told.
#[derive(Default)]
struct Tally {
    started: Vec<Option<u32>>,
    exited: Vec<(Option<u32>, i32, bool)>,
    bytes: usize,
    lines: Vec<(OutputStream, Bytes, LineKind)>,
    finished: Vec<bool>,
}

impl Actor for Tally {
    type Context = Context<Self>;
}

impl Handler<Started> for Tally {
    type Result = ();
    fn handle(&mut self, event: Started, _: &mut Context<Self>) {
        self.started.push(event.pid);
    }
}

impl Handler<Exited> for Tally {
    type Result = ();
    fn handle(&mut self, event: Exited, _: &mut Context<Self>) {
        self.exited
            .push((event.pid, event.returncode.code(), event.output_complete));
    }
}

impl Handler<Chunk> for Tally {
    type Result = ();
    fn handle(&mut self, chunk: Chunk, _: &mut Context<Self>) {
        self.bytes += chunk.data.len();
    }
}

impl Handler<Line> for Tally {
    type Result = ();
    fn handle(&mut self, line: Line, _: &mut Context<Self>) {
        self.lines.push((line.stream, line.data, line.kind));
    }
}

impl Handler<ReaderFinished> for Tally {
    type Result = ();
    fn handle(&mut self, event: ReaderFinished, _: &mut Context<Self>) {
        self.finished.push(event.complete);
    }
}

#[derive(Message)]
#[rtype(result = "String")]
struct Report;

impl Handler<Report> for Tally {
    type Result = String;
    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> String {
        format!(
            "{:?} {:?} {} {:?} {:?}",
            self.started, self.exited, self.bytes, self.lines, self.finished
        )
    }
}

#[test]
fn a_users_handlers_can_be_fed_events_built_by_hand() {
    common::bounded(async {
        let tally = Tally::default().start();
        tally.do_send(Started::new(Some(42)));
        tally.do_send(Chunk::new(OutputStream::Stdout, "abc"));
        tally.do_send(Line::new(OutputStream::Stderr, "oops", LineKind::Complete));
        tally.do_send(ReaderFinished::new(false));
        tally.do_send(Exited::new(
            Some(42),
            ReturnCode::from_raw(-15),
            ExitCause::Cancelled,
            false,
        ));
        let report = common::within("the report", tally.send(Report))
            .await
            .expect("the actor");
        assert_eq!(
            report,
            "[Some(42)] [(Some(42), -15, false)] 3 [(Stderr, b\"oops\", Complete)] [false]"
        );
        let done = CompletedProcess::new(ReturnCode::from_raw(0), ExitCause::Exited, "out", "");
        assert!(done.returncode.success());
        assert_eq!(&done.stdout[..], b"out");
    });
}
