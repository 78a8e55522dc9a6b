//! Pipelines (`a | b | c`) of real commands: byte-exact output, bash's
//! `PIPESTATUS` and `pipefail`, a middle stage that exits early (SIGPIPE
//! upstream), cancel of every stage, and a stage that cannot be spawned.
//!
//! Every test compares with what `sh`/`bash` make of the same pipeline
//! where that is meaningful, and leaves nothing running: a [`Leftovers`]
//! guard kills, on drop, every process group it was told about that still
//! has a live member.

mod common;

use common::SOON;

use std::collections::HashSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::SpawnErrorKind;
use actix_popen::{
    AsyncWait, Cancel, Chunk, CloseStdin, Collector, ExitCause, GetValue, InputFrom, OutputStream,
    PipeStatus, Pipeline, PipelineError, PipelineHandle, Popen, ReturnCode, WriteStdin,
};
use futures::channel::oneshot;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::actors::{await_output, ChunkSink};
use common::procs::{all_pids, named_sleep, proc_comm, proc_stat, Leftovers, Stat};

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// A stage running `sh -c script`.
fn sh(script: &str) -> Popen {
    Popen::new("sh").args(["-c", script])
}

/// Runs `script` with `shell -c` and returns its stdout and exit code.
fn shell_output(shell: &str, script: &str) -> (Vec<u8>, i32) {
    let output = Command::new(shell)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {shell}: {err}"));
    let code = output.status.code().expect("the shell was killed");
    (output.stdout, code)
}

/// Waits, with a bound, for the pipeline's return code.
async fn wait(pipeline: &PipelineHandle) -> ReturnCode {
    tokio::time::timeout(SOON, pipeline.send(AsyncWait))
        .await
        .unwrap_or_else(|_| panic!("the pipeline did not end within {SOON:?}"))
        .expect("the pipeline actor is gone")
        .expect("AsyncWait failed")
}

/// Every stage's return code, which must all be known.
async fn pipestatus(pipeline: &PipelineHandle) -> Vec<ReturnCode> {
    pipeline
        .send(PipeStatus)
        .await
        .expect("the pipeline actor is gone")
        .into_iter()
        .enumerate()
        .map(|(stage, code)| code.unwrap_or_else(|| panic!("stage {stage} has no return code")))
        .collect()
}

/// Both ways two stages are joined: by one kernel pipe (nobody observes
/// the first one's stdout) or relayed by this process (a subscriber
/// observes it, here one that discards what it gets).
const LINKS: [Link; 2] = [Link::Kernel, Link::Relayed];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Kernel,
    Relayed,
}

impl Link {
    /// `stage` as a stage that is not the last, joined to the next so.
    fn apply(self, stage: Popen) -> Popen {
        match self {
            Link::Kernel => stage,
            Link::Relayed => {
                let (sink, _discarded) = ChunkSink::start_new();
                stage.subscribe_stream(OutputStream::Stdout, sink.recipient())
            }
        }
    }
}

/// Starts `stages` with a collector on the last one's stdout, once joined
/// by kernel pipes and once relayed, and checks both ran alike; returns the
/// collected stdout, the pipeline's code and every stage's.
async fn run(stages: Vec<Popen>, pipefail: bool) -> (Vec<u8>, ReturnCode, Vec<ReturnCode>) {
    let kernel = run_linked(stages.clone(), pipefail, Link::Kernel).await;
    let relayed = run_linked(stages, pipefail, Link::Relayed).await;
    assert_eq!(kernel.0.len(), relayed.0.len(), "output lengths differ");
    assert!(kernel.0 == relayed.0, "the outputs differ");
    assert_eq!(kernel.1, relayed.1, "the return codes differ");
    assert_eq!(kernel.2, relayed.2, "the PIPESTATUS differ");
    kernel
}

async fn run_linked(
    stages: Vec<Popen>,
    pipefail: bool,
    link: Link,
) -> (Vec<u8>, ReturnCode, Vec<ReturnCode>) {
    let collector = Collector::start_default();
    let mut pipeline = Pipeline::new().pipefail(pipefail);
    let last = stages.len() - 1;
    for (index, stage) in stages.into_iter().enumerate() {
        pipeline = pipeline.stage(if index == last {
            stage.subscribe(collector.clone().recipient())
        } else {
            link.apply(stage)
        });
    }
    let pipeline = pipeline.start().expect("cannot start the pipeline");
    let _leftovers = Leftovers::pipeline(&pipeline);
    let code = wait(&pipeline).await;
    let statuses = pipestatus(&pipeline).await;
    let output = collector.send(GetValue).await.expect("collector gone");
    (output.stdout.to_vec(), code, statuses)
}

fn codes(raw: &[i32]) -> Vec<ReturnCode> {
    raw.iter().copied().map(ReturnCode::from_raw).collect()
}

/// bash's `$?` and `${PIPESTATUS[@]}` for `a | b | c` (output discarded), as
/// shell statuses.
fn bash_pipestatus(stages: &[&str], pipefail: bool) -> (i32, Vec<i32>) {
    let pipeline: Vec<String> = stages.iter().map(|s| format!("sh -c '{s}'")).collect();
    let script = format!(
        "{}{} >/dev/null; echo \"$? ${{PIPESTATUS[*]}}\"",
        if pipefail { "set -o pipefail; " } else { "" },
        pipeline.join(" | ")
    );
    let (stdout, _) = shell_output("bash", &script);
    let numbers: Vec<i32> = String::from_utf8(stdout)
        .expect("bash printed no text")
        .split_whitespace()
        .map(|n| n.parse().expect("bash printed no number"))
        .collect();
    (numbers[0], numbers[1..].to_vec())
}

/// Pids of the processes (live or zombie) whose command name is one of
/// `names` or whose command line holds one of them.
fn processes_named(names: &HashSet<String>) -> Vec<(i32, Option<Stat>)> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let comm = proc_comm(pid).unwrap_or_default();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            names
                .iter()
                .any(|name| comm == *name || cmdline.contains(name.as_str()))
        })
        .map(|pid| (pid, proc_stat(pid)))
        .collect()
}

/// Kills on drop every process named as [`processes_named`] finds it.
struct KillNamed(HashSet<String>);

impl Drop for KillNamed {
    fn drop(&mut self) {
        for (pid, _) in processes_named(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------

#[test]
fn three_stage_text_pipeline_matches_sh_byte_for_byte() {
    common::bounded(async {
        let (output, code, statuses) = run(
            vec![
                Popen::new("seq").args(["1", "200000"]),
                Popen::new("grep").arg("7"),
                Popen::new("tr").args(["1", "X"]),
            ],
            false,
        )
        .await;
        let (expected, expected_code) = shell_output("sh", "seq 1 200000 | grep 7 | tr 1 X");

        assert_eq!(expected_code, 0);
        assert_eq!(output.len(), expected.len(), "output lengths differ");
        assert!(output == expected, "the output differs from sh's");
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(statuses, codes(&[0, 0, 0]));
    });
}

#[test]
fn three_stage_binary_pipeline_is_byte_exact() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("no temp dir");
        let file = dir.path().join("random");
        let mut data = vec![0u8; 5_000_000];
        std::io::Read::read_exact(
            &mut fs::File::open("/dev/urandom").expect("no /dev/urandom"),
            &mut data,
        )
        .expect("cannot read /dev/urandom");
        fs::write(&file, &data).expect("cannot write the temp file");

        // Compressed and back: every byte passes through two pipes as chunks.
        let (output, code, statuses) = run(
            vec![
                Popen::new("cat").arg(&file),
                Popen::new("gzip").args(["-c", "-n", "-1"]),
                Popen::new("gzip").args(["-d", "-c"]),
            ],
            false,
        )
        .await;
        assert_eq!(output.len(), data.len(), "output lengths differ");
        assert!(output == data, "the data came back changed");
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(statuses, codes(&[0, 0, 0]));

        // The compressed stream itself, as sh's pipeline makes it.
        let (output, code, _) = run(
            vec![
                Popen::new("cat").arg(&file),
                Popen::new("gzip").args(["-c", "-n", "-1"]),
                Popen::new("cat"),
            ],
            false,
        )
        .await;
        let script = format!("cat '{}' | gzip -c -n -1 | cat", file.display());
        let (expected, expected_code) = shell_output("sh", &script);
        assert_eq!(expected_code, 0);
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(output.len(), expected.len(), "compressed lengths differ");
        assert!(
            output == expected,
            "the compressed stream differs from sh's"
        );
    });
}

// ---------------------------------------------------------------------
// PIPESTATUS and pipefail
// ---------------------------------------------------------------------

#[test]
fn pipestatus_and_pipefail_follow_bash() {
    common::bounded(async {
        // (stages, PIPESTATUS, code without pipefail, code with pipefail)
        let cases: [([&str; 3], [i32; 3], i32, i32); 4] = [
            (["exit 3", "cat", "exit 0"], [3, 0, 0], 0, 3),
            (["exit 3", "cat; exit 4", "cat; exit 0"], [3, 4, 0], 0, 4),
            (["exit 0", "cat", "exit 5"], [0, 0, 5], 5, 5),
            (["exit 2", "cat", "cat >/dev/null; exit 7"], [2, 0, 7], 7, 7),
        ];
        for (scripts, statuses, plain, failing) in cases {
            for (pipefail, expected_code) in [(false, plain), (true, failing)] {
                let (bash_code, bash_statuses) = bash_pipestatus(&scripts, pipefail);
                assert_eq!(
                    (bash_code, &bash_statuses[..]),
                    (expected_code, &statuses[..]),
                    "bash disagrees with the table for {scripts:?}, pipefail {pipefail}"
                );
                let (_, code, got) = run(scripts.iter().map(|s| sh(s)).collect(), pipefail).await;
                assert_eq!(
                    got,
                    codes(&statuses),
                    "PIPESTATUS of {scripts:?}, pipefail {pipefail}"
                );
                assert_eq!(
                    code,
                    ReturnCode::from_raw(expected_code),
                    "return code of {scripts:?}, pipefail {pipefail}"
                );
            }
        }
    });
}

// ---------------------------------------------------------------------
// A stage that ends early
// ---------------------------------------------------------------------

#[test]
fn middle_stage_exit_ends_the_pipeline_and_sigpipes_the_first() {
    common::bounded(async {
        let started = Instant::now();
        let (output, code, statuses) = run(
            vec![
                Popen::new("yes"),
                Popen::new("head").args(["-n", "5"]),
                Popen::new("cat"),
            ],
            false,
        )
        .await;
        eprintln!("yes | head -n 5 | cat ended after {:?}", started.elapsed());

        assert_eq!(output, b"y\ny\ny\ny\ny\n");
        assert_eq!(code, ReturnCode::from_raw(0));
        // `yes` died of SIGPIPE once head's output ended, as in bash (141).
        assert_eq!(statuses, codes(&[-13, 0, 0]));
        let (_, bash) = bash_pipestatus(&["yes", "head -n 5", "cat"], false);
        let ours: Vec<i32> = statuses
            .iter()
            .map(|c| i32::from(c.shell_status()))
            .collect();
        assert_eq!(ours, bash);
    });
}

#[test]
fn last_stage_exit_cascades_sigpipe_upstream() {
    common::bounded(async {
        // head ends; cat's output is closed, so cat dies of SIGPIPE; then
        // yes's output is closed, and yes dies of SIGPIPE too.
        let (output, code, statuses) = run(
            vec![
                Popen::new("yes"),
                Popen::new("cat"),
                Popen::new("head").args(["-c", "1"]),
            ],
            false,
        )
        .await;
        assert_eq!(output, b"y");
        assert_eq!(code, ReturnCode::from_raw(0));
        assert_eq!(statuses, codes(&[-13, -13, 0]));
        let (_, bash) = bash_pipestatus(&["yes", "cat", "head -c 1"], false);
        let ours: Vec<i32> = statuses
            .iter()
            .map(|c| i32::from(c.shell_status()))
            .collect();
        assert_eq!(ours, bash);
    });
}

// ---------------------------------------------------------------------
// Messages into a pipeline
// ---------------------------------------------------------------------

#[test]
fn writes_to_the_first_stage_flow_through_the_pipeline() {
    common::bounded(async {
        let collector = Collector::start_default();
        let pipeline = Pipeline::new()
            .stage(Popen::new("cat").stdin(InputFrom::Pipe))
            .stage(Popen::new("tr").args(["a-z", "A-Z"]))
            .stage(Popen::new("cat").subscribe(collector.clone().recipient()))
            .start()
            .expect("cannot start the pipeline");
        let _leftovers = Leftovers::pipeline(&pipeline);
        let first = &pipeline.stages()[0];

        let mut expected = Vec::new();
        for i in 0..100 {
            let line = format!("line {i} of the input\n");
            expected.extend_from_slice(line.to_uppercase().as_bytes());
            first
                .send(WriteStdin(line.into()))
                .await
                .expect("actor gone")
                .expect("a write to the first stage failed");
        }
        // Upstream chunks can be fed by hand too.
        first
            .send(Chunk::new(
                actix_popen::TaskId::new(),
                OutputStream::Stdout,
                &b"fed as a chunk\n"[..],
            ))
            .await
            .expect("actor gone");
        expected.extend_from_slice(b"FED AS A CHUNK\n");
        first.do_send(CloseStdin);

        assert_eq!(wait(&pipeline).await, ReturnCode::from_raw(0));
        assert_eq!(pipestatus(&pipeline).await, codes(&[0, 0, 0]));
        let output = collector.send(GetValue).await.expect("collector gone");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&expected)
        );
    });
}

// ---------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------

#[test]
fn cancel_ends_every_stage_and_leaves_nothing() {
    common::bounded(async {
        for link in LINKS {
            let (sink, mut chunks) = ChunkSink::start_new();
            let pipeline = Pipeline::new()
                .stage(link.apply(sh("echo started; exec sleep 1000")))
                .stage(link.apply(Popen::new("cat")))
                .stage(Popen::new("cat").subscribe(sink.recipient()))
                .start()
                .expect("cannot start the pipeline");
            let leftovers = Leftovers::pipeline(&pipeline);
            let stages: Vec<(i32, u64)> = leftovers.groups().to_vec();

            // The line went through both cats: every stage runs.
            let seen = await_output(&mut chunks, b"started\n", SOON).await;
            assert_eq!(seen, b"started\n");
            assert_eq!(
                pipeline.send(PipeStatus).await.expect("actor gone"),
                vec![None, None, None]
            );

            pipeline.do_send(Cancel);
            let code = wait(&pipeline).await;

            assert_eq!(code, ReturnCode::from_raw(-15));
            assert_eq!(pipestatus(&pipeline).await, codes(&[-15, -15, -15]));
            for (stage, handle) in pipeline.stages().iter().enumerate() {
                assert_eq!(handle.pid(), None, "stage {stage} was not reaped");
            }
            // Reaped (a moment after the exit event, once the supervisor saw each
            // group empty): not alive, not a zombie.
            for &(pid, _) in &stages {
                common::await_gone(pid as u32).await;
            }
            for (stage, &(pid, starttime)) in stages.iter().enumerate() {
                if let Some(stat) = proc_stat(pid) {
                    assert_ne!(
                        stat.starttime, starttime,
                        "stage {stage} (pid {pid}) is still there: {stat:?}"
                    );
                }
            }
            assert_eq!(leftovers.live(), Vec::<i32>::new());
        }
    });
}

// ---------------------------------------------------------------------
// A stage that cannot be spawned
// ---------------------------------------------------------------------

#[test]
fn failed_stage_spawn_names_the_stage_and_cancels_the_others() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("no temp dir");
        let missing = dir.path().join("no-such-program");
        for failing in 0..3 {
            // Stages are spawned last first: those after the failing one run
            // when it fails, those before it never start.
            let names: Vec<String> = (0..3)
                .map(|stage| format!("zz{}f{failing}s{stage}", std::process::id()))
                .collect();
            let watched: HashSet<String> = names.iter().cloned().collect();
            let _cleanup = KillNamed(watched.clone());
            let mut pipeline = Pipeline::new();
            for (stage, name) in names.iter().enumerate() {
                pipeline = pipeline.stage(if stage == failing {
                    Popen::new(&missing)
                } else {
                    // A distinct argument too, for the command-line scan.
                    Popen::new(named_sleep(dir.path(), name)).arg(format!("1000.{stage}{failing}1"))
                });
            }

            let err = pipeline.start().expect_err("a stage cannot be spawned");
            match &err {
                PipelineError::Spawn { stage, source }
                    if matches!(source.kind(), SpawnErrorKind::NotFound { .. }) =>
                {
                    assert_eq!(*stage, failing, "{err}");
                    assert!(source.program().contains("no-such-program"), "{err}");
                }
                other => {
                    panic!("expected a NotFound spawn error of stage {failing}, got {other:?}")
                }
            }

            // Nothing runs on this thread until we yield, so nothing has been
            // cancelled yet: the stages after the failing one are running
            // (which also shows the scan finds them), those before it never
            // ran. A child just spawned may still be inside exec(), with its
            // new name not yet set: wait for the names without yielding.
            let running: HashSet<String> = names[failing + 1..].iter().cloned().collect();
            let deadline = Instant::now() + SOON;
            loop {
                let found: HashSet<String> = processes_named(&watched)
                    .into_iter()
                    .filter(|(_, stat)| stat.is_some_and(|stat| stat.state != 'Z'))
                    .filter_map(|(pid, _)| proc_comm(pid))
                    .collect();
                assert!(
                found.is_subset(&running),
                "after the failed start of stage {failing}: {found:?} run, only {running:?} may"
            );
                if found == running {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "after the failed start of stage {failing}: {found:?} run, {running:?} should"
                );
                std::thread::sleep(Duration::from_millis(1));
            }

            // Those are cancelled and reaped by their actors: neither alive
            // nor zombies once done.
            let deadline = Instant::now() + SOON;
            loop {
                let left = processes_named(&watched);
                if left.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "stages left behind after the failed start of stage {failing}: {left:?}"
                );
                actix::clock::sleep(Duration::from_millis(10)).await;
            }
        }
    });
}

#[test]
fn empty_pipeline_is_an_error() {
    common::bounded(async {
        assert!(matches!(Pipeline::new().start(), Err(PipelineError::Empty)));
    });
}

// ---------------------------------------------------------------------
// EOF and EPIPE cross a stage boundary as through a kernel pipe
// ---------------------------------------------------------------------

#[test]
fn a_stage_closing_its_stdout_gives_the_next_eof_at_once() {
    common::bounded(async {
        // The first stage closes its stdout and goes on running; `cat` ends
        // only once it reads EOF, which `sh -c 'a | cat'` gives it at once.
        for link in LINKS {
            let collector = Collector::start_default();
            let pipeline = Pipeline::new()
                .stage(link.apply(sh("echo hi; exec >&-; exec sleep 1000")))
                .stage(Popen::new("cat").subscribe(collector.clone().recipient()))
                .start()
                .expect("start");
            let _leftovers = Leftovers::pipeline(&pipeline);
            let cat = pipeline.stages()[1].clone();
            let code = common::wait(&cat, SOON).await;
            assert_eq!(code, ReturnCode::from_raw(0));
            assert_eq!(&collector.send(GetValue).await.unwrap().stdout[..], b"hi\n");
            assert_eq!(
                pipeline.stages()[0].try_wait(),
                None,
                "the first stage still runs: the EOF came from its close, not its exit ({link:?})"
            );
            pipeline.do_send(Cancel);
            wait(&pipeline).await;
        }
    });
}

#[test]
fn a_stage_closing_its_stdin_gets_its_upstream_epipe_at_once() {
    common::bounded(async {
        // The second stage closes its stdin and goes on running; `yes` must
        // die of SIGPIPE on its next write, as in `sh -c 'yes | ...'`, rather
        // than write into the void until the second stage exits.
        for link in LINKS {
            let (sink, mut chunks) = ChunkSink::start_new();
            let pipeline = Pipeline::new()
                .stage(link.apply(Popen::new("yes")))
                .stage(sh("exec <&-; echo closed; exec sleep 1000").subscribe(sink.recipient()))
                .start()
                .expect("start");
            let _leftovers = Leftovers::pipeline(&pipeline);
            await_output(&mut chunks, b"closed\n", SOON).await;
            let yes = pipeline.stages()[0].clone();
            let code = common::wait(&yes, SOON).await;
            assert_eq!(
                code,
                ReturnCode::from_raw(-13),
                "yes died of SIGPIPE ({link:?})"
            );
            assert_eq!(
                pipeline.stages()[1].try_wait(),
                None,
                "the reader still runs"
            );
            pipeline.do_send(Cancel);
            wait(&pipeline).await;
        }
    });
}

#[test]
fn dropping_the_pipeline_handle_closes_the_first_stage_stdin() {
    common::bounded(async {
        // Nobody can write to the first stage any more: its stdin closes, the
        // EOF flows down, and every stage ends, as in `printf x | cat | cat`.
        let collector = Collector::start_default();
        let (waiter, awaited) = common::Waiter::start_new();
        let pipeline = Pipeline::new()
            .stage(Popen::new("cat").stdin(InputFrom::Pipe))
            .stage(
                Popen::new("cat")
                    .subscribe(collector.clone().recipient())
                    .exit_listener(waiter.recipient()),
            )
            .start()
            .expect("start");
        let _leftovers = Leftovers::pipeline(&pipeline);
        common::within(
            "the write",
            pipeline.stages()[0].send(WriteStdin(bytes::Bytes::from_static(b"x\n"))),
        )
        .await
        .expect("the first stage's actor is gone")
        .expect("the write failed");
        drop(pipeline);
        let events = common::event("the last stage's exit", awaited.exited).await;
        assert_eq!(events.exited[0].returncode, ReturnCode::from_raw(0));
        assert_eq!(&collector.send(GetValue).await.unwrap().stdout[..], b"x\n");
    });
}

#[test]
fn a_closed_downstream_closes_only_the_upstream_stdout() {
    common::bounded(async {
        // `yes`-like writer that survives EPIPE and then writes to stderr: in
        // `sh`, its stderr goes on after its stdout broke.
        for link in LINKS {
            let collector = Collector::start_default();
            let pipeline = Pipeline::new()
                .stage(
                    link.apply(
                        sh("trap '' PIPE; while echo y; do :; done; echo 'EPIPE seen' >&2; exit 4")
                            .subscribe_stream(OutputStream::Stderr, collector.clone().recipient()),
                    ),
                )
                .stage(
                    Popen::new("head")
                        .arg("-n1")
                        .stdout(actix_popen::OutputTo::Null),
                )
                .start()
                .expect("start");
            let _leftovers = Leftovers::pipeline(&pipeline);
            wait(&pipeline).await;
            assert_eq!(pipestatus(&pipeline).await, codes(&[4, 0]));
            let stderr = collector.send(GetValue).await.unwrap().stderr;
            assert!(
                stderr.ends_with(b"EPIPE seen\n"),
                "the upstream's stderr was closed with its stdout ({link:?}): {:?}",
                String::from_utf8_lossy(&stderr)
            );
        }
    });
}

#[test]
fn a_stage_ending_while_its_child_still_reads_loses_no_byte() {
    common::bounded(async {
        // The stage exits at once; a background `cat` it started keeps reading
        // its stdin. As through a kernel pipe, every byte reaches it.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("out");
        // (A background job's stdin is /dev/null unless redirected: fd 3
        // carries the pipe to it.)
        let script = format!(
            "exec 3<&0; cat <&3 > {} 2>/dev/null 3<&- & exit 0",
            file.display()
        );
        let (expected, _) = shell_output("sh", "seq 1 300000");
        for link in LINKS {
            let _ = fs::remove_file(&file);
            // The first stage writes only once told to, after the second ended.
            let pipeline = Pipeline::new()
                .stage(link.apply(sh("read go; exec seq 1 300000").stdin(InputFrom::Pipe)))
                .stage(sh(&script))
                .start()
                .expect("start");
            let _leftovers = Leftovers::pipeline(&pipeline);
            let second = pipeline.stages()[1].clone();
            assert_eq!(common::wait(&second, SOON).await, ReturnCode::from_raw(0));
            let first = &pipeline.stages()[0];
            common::within(
                "the go",
                first.send(WriteStdin(bytes::Bytes::from_static(b"go\n"))),
            )
            .await
            .expect("actor")
            .expect("write");
            first.do_send(CloseStdin);
            assert_eq!(wait(&pipeline).await, ReturnCode::from_raw(0));
            assert_eq!(pipestatus(&pipeline).await, codes(&[0, 0]));
            // The background cat ends at the EOF; nothing tells us when.
            common::procs::poll_until("the whole file", SOON, || {
                fs::read(&file).is_ok_and(|got| got.len() == expected.len())
            })
            .await;
            assert!(fs::read(&file).expect("read") == expected, "{link:?}");
        }
    });
}

/// Hands over the first `PipelineExited` it gets.
struct PipelineWaiter(Option<oneshot::Sender<actix_popen::PipelineExited>>);

impl Actor for PipelineWaiter {
    type Context = Context<Self>;
}

impl Handler<actix_popen::PipelineExited> for PipelineWaiter {
    type Result = ();
    fn handle(&mut self, event: actix_popen::PipelineExited, _: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(event);
        }
    }
}

/// The pipeline's exit event has every stage's status and cause.
#[test]
fn the_pipeline_exit_event_has_every_stage() {
    common::bounded(async {
        let (tx, rx) = oneshot::channel();
        let waiter = PipelineWaiter(Some(tx)).start();
        let _pipeline = Pipeline::new()
            .stage(sh("exit 3"))
            .stage(Popen::new("cat"))
            .exit_listener(waiter.recipient())
            .start()
            .expect("the pipeline starts");
        let exited = common::within("PipelineExited", rx)
            .await
            .expect("the waiter");
        assert_eq!(exited.returncode, ReturnCode::from_raw(0));
        assert_eq!(exited.statuses, codes(&[3, 0]));
        assert_eq!(exited.causes, vec![ExitCause::Exited, ExitCause::Exited]);
    });
}

/// A pipeline timeout ends the stages still running, as timed out; a
/// stage that had ended keeps its own status.
#[test]
fn a_pipeline_timeout_ends_the_stages_still_running() {
    common::bounded(async {
        let (tx, rx) = oneshot::channel();
        let waiter = PipelineWaiter(Some(tx)).start();
        let _pipeline = Pipeline::new()
            .stage(Popen::new("true"))
            .stage(Popen::new("sleep").arg("60"))
            .timeout(Duration::from_millis(200))
            .exit_listener(waiter.recipient())
            .start()
            .expect("the pipeline starts");
        let exited = common::within("PipelineExited", rx)
            .await
            .expect("the waiter");
        assert_eq!(exited.statuses, codes(&[0, -15]));
        assert_eq!(exited.causes, vec![ExitCause::Exited, ExitCause::TimedOut]);
        assert_eq!(exited.returncode, ReturnCode::from_raw(-15));
    });
}

/// An observed stage's drain timeout does not cut what a slow next stage
/// has yet to take: waiting for room in the pipe to it counts as the
/// consumer's slowness, as with slow subscribers (it cut the next stage's
/// input at 64 KiB, with every status 0).
#[test]
fn a_slow_next_stage_is_not_cut_by_an_observed_stages_drain_timeout() {
    common::bounded(async {
        let collector = Collector::start_default();
        let (sink, _seen) = ChunkSink::start_new();
        let pipeline = Pipeline::new()
            .stage(
                // Less than the two pipes hold: `head` exits at once, and
                // the rest waits for room in the pipe to the next stage.
                Popen::new("head")
                    .args(["-c", "120000", "/dev/zero"])
                    .drain_timeout(std::time::Duration::from_millis(100))
                    .subscribe(sink.recipient()),
            )
            .stage(sh("sleep 1; wc -c").subscribe(collector.clone().recipient()))
            .start()
            .expect("start");
        let _leftovers = Leftovers::pipeline(&pipeline);
        assert_eq!(wait(&pipeline).await, ReturnCode::from_raw(0));
        let out = collector.send(GetValue).await.expect("collector").stdout;
        assert_eq!(String::from_utf8_lossy(&out).trim(), "120000");
    });
}
