//! Every event a user's actor may receive can be built by the user, so
//! that their handlers can be unit-tested without a child process.

mod common;

use actix::prelude::*;
use bytes::Bytes;

use actix_popen::{
    Chunk, CompletedProcess, ExitCause, Exited, Line, LineKind, OutputStream, ReaderFinished,
    ReturnCode, Started, TaskId,
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
        let task = TaskId::new();
        tally.do_send(Started::new(task, Some(42)));
        tally.do_send(Chunk::new(task, OutputStream::Stdout, "abc"));
        tally.do_send(Line::new(
            task,
            OutputStream::Stderr,
            "oops",
            LineKind::Complete,
        ));
        tally.do_send(ReaderFinished::new(false));
        tally.do_send(Exited::new(
            task,
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

/// Gathers, by task, the output and the exit of several tasks.
#[derive(Default)]
struct ByTask {
    output: std::collections::BTreeMap<TaskId, Vec<u8>>,
    exited: Vec<(TaskId, i32)>,
    started: Vec<TaskId>,
    done: Option<futures::channel::oneshot::Sender<()>>,
    want: usize,
}

impl Actor for ByTask {
    type Context = Context<Self>;
}

impl Handler<Chunk> for ByTask {
    type Result = ();
    fn handle(&mut self, chunk: Chunk, _: &mut Context<Self>) {
        self.output
            .entry(chunk.task)
            .or_default()
            .extend_from_slice(&chunk.data);
    }
}

impl Handler<Started> for ByTask {
    type Result = ();
    fn handle(&mut self, event: Started, _: &mut Context<Self>) {
        self.started.push(event.task);
    }
}

impl Handler<Exited> for ByTask {
    type Result = ();
    fn handle(&mut self, event: Exited, _: &mut Context<Self>) {
        self.exited.push((event.task, event.returncode.code()));
        if self.exited.len() == self.want {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "(Vec<TaskId>, Vec<(TaskId, i32)>, Vec<(TaskId, Vec<u8>)>)")]
struct Take;

impl Handler<Take> for ByTask {
    type Result = MessageResult<Take>;
    fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Self::Result {
        MessageResult((
            self.started.clone(),
            self.exited.clone(),
            std::mem::take(&mut self.output).into_iter().collect(),
        ))
    }
}

/// One actor serves two tasks and tells their events apart by id, with no
/// relay actor in between.
#[test]
fn events_carry_the_id_of_their_task() {
    common::bounded(async {
        let (done, all_exited) = futures::channel::oneshot::channel();
        let actor = ByTask {
            done: Some(done),
            want: 2,
            ..ByTask::default()
        }
        .start();
        let run = |word: &str, code: i32| {
            actix_popen::Popen::new("sh")
                .args(["-c", &format!("echo {word}; exit {code}")])
                .subscribe(actor.clone().recipient())
                .start_listener(actor.clone().recipient())
                .exit_listener(actor.clone().recipient())
                .start()
                .expect("sh starts")
        };
        let (one, two) = (run("one", 1), run("two", 2));
        assert_ne!(one.id(), two.id());
        common::within("both exits", all_exited)
            .await
            .expect("the actor");
        let (mut started, mut exited, output) = common::within("the events", actor.send(Take))
            .await
            .expect("the actor");
        started.sort();
        exited.sort();
        let mut ids = vec![one.id(), two.id()];
        ids.sort();
        assert_eq!(started, ids);
        assert_eq!(exited, vec![(one.id(), 1), (two.id(), 2)]);
        assert_eq!(
            output,
            vec![(one.id(), b"one\n".to_vec()), (two.id(), b"two\n".to_vec())]
        );
    });
}
