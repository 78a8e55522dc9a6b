//! Out of fds in the middle of a run: with tasks running, the soft
//! `RLIMIT_NOFILE` is lowered so that no spawn can get the fds it needs.
//! The spawns fail cleanly with `SpawnErrorKind::ResourceExhausted`, while the
//! running tasks, which need no new fd, deliver all their output and end
//! as usual; once they have, no fd is left behind.
//!
//! `tests/fd_exhaustion.rs` covers each step a start can run out at; this
//! covers what happens to the tasks around a failed start. The limit is
//! process-wide and the test counts this process's fds and children, so it
//! lives in a binary of its own and takes [`FDS`].

mod common;

use std::sync::Mutex;

use actix_popen::{InputFrom, IsAlive, Popen, ReturnCode, Start, WriteStdin};
use nix::sys::resource::{getrlimit, Resource};

use common::fds::{assert_out_of_fds, limit_leaving, open_fds, LoweredLimit};
use common::harness::{lock, run_system};
use common::procs::Cleanup;
use common::{assert_gone, async_wait, event, within, Waiter};

/// Held by every test here.
static FDS: Mutex<()> = Mutex::new(());

/// Tasks running when the fds run out.
const RUNNING: usize = 4;

/// Each of them prints `seq 1 SEQ_END` once released: about 290 KB.
const SEQ_END: u32 = 50_000;

/// What `up`, then `seq 1 SEQ_END`, prints.
fn expected_output() -> Vec<u8> {
    let mut expected = b"up\n".to_vec();
    for i in 1..=SEQ_END {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    expected
}

async fn body(cleanup: &Cleanup) {
    // Tasks that are running when the fds run out: each says "up", then
    // waits for a line on its stdin before printing its output.
    let (mut tasks, mut ups) = (Vec::new(), Vec::new());
    for _ in 0..RUNNING {
        let (waiter, awaited) = Waiter::start_new();
        let handle = Popen::new("sh")
            .args(["-c", &format!("echo up; read go; exec seq 1 {SEQ_END}")])
            .stdin(InputFrom::Pipe)
            .subscribe(waiter.clone().recipient())
            .exit_listener(waiter.recipient())
            .start()
            .expect("cannot start sh");
        let pid = handle.pid().expect("no pid right after the start");
        cleanup.add(&handle);
        let common::Awaited {
            first_chunk,
            exited,
            ..
        } = awaited;
        tasks.push((handle, pid, exited));
        ups.push(first_chunk);
    }
    for up in ups {
        assert_eq!(event("\"up\"", up).await, "up\n");
    }

    // Too few fds for a spawn (it needs four at once: two pipes), from
    // none left to three: each start fails, cleanly, and leaks nothing.
    for free in 0..=3 {
        let fds = open_fds();
        let limit = limit_leaving(free);
        let started = {
            let _low = LoweredLimit::to(limit);
            Popen::new("true").start()
        };
        let err = started.map(|_| ()).expect_err("started without the fds");
        assert_out_of_fds(&err, &format!("start with {free} fds free"));
        assert_eq!(open_fds(), fds, "{free} fds free: the failed start leaked");
    }

    // With none left: a prepared task fails to start and ends with 126,
    // and the running tasks, which need no new fd, run to their end.
    let limit = limit_leaving(0);
    let low = LoweredLimit::to(limit);
    let prepared = Popen::new("true").prepare().expect("prepare");
    let err = within("Start", prepared.send(Start))
        .await
        .expect("the process actor is gone")
        .expect_err("started without the fds");
    assert_out_of_fds(&err, "Start");
    assert_eq!(async_wait(&prepared).await, ReturnCode::from_raw(126));
    for (handle, pid, _) in &tasks {
        let alive = within("IsAlive", handle.send(IsAlive)).await.unwrap();
        assert!(alive, "pid {pid}'s task ended when a start failed");
        assert_eq!(handle.pid(), Some(*pid), "pid {pid} was reaped");
    }
    for (handle, _, _) in &tasks {
        within("WriteStdin", handle.send(WriteStdin("go\n".into())))
            .await
            .expect("the process actor is gone")
            .expect("cannot release the child");
    }
    let mut exits = Vec::new();
    for (handle, pid, exited) in tasks {
        let at_exit = event("Exited", exited).await;
        let exited = at_exit.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(0), "pid {pid}");
        assert!(exited.output_complete, "pid {pid}: {exited:?}");
        let output = at_exit.bytes();
        assert_eq!(
            output.len(),
            expected_output().len(),
            "pid {pid}: bytes lost"
        );
        assert!(
            output == expected_output(),
            "pid {pid}: the output is not seq's"
        );
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid);
        exits.push(exited);
    }
    drop(low);
    assert_eq!(exits.len(), RUNNING);

    // With fds again, starts work again.
    let again = Popen::new("true").start().expect("cannot start true");
    assert_eq!(async_wait(&again).await, ReturnCode::from_raw(0));
}

#[test]
fn running_out_of_fds_mid_run_fails_the_start_and_spares_the_running_tasks() {
    let _serial = lock(&FDS);
    let limit_before = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // No child of ours and no fd is left once the System's thread is gone.
    run_system(|cleanup| async move { body(&cleanup).await });
    assert_eq!(
        getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit"),
        limit_before,
        "the limit was not restored"
    );
}
