//! The child's stdin, stdout and stderr to and from files and fds
//! ([`InputFrom::File`], [`InputFrom::Fd`], [`OutputTo::File`],
//! [`OutputTo::Fd`]), and fds passed at chosen numbers
//! ([`Popen::pass_fd`]).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use actix_popen::{InputFrom, OutputTo, Popen, ReturnCode, SpawnErrorKind};

/// A directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("actix-popen-stdio-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read the file")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads `reader` to its end on a thread of its own, so that the test fails
/// within its bound, rather than hangs, should a copy of the write end stay
/// open somewhere.
async fn read_to_eof(mut reader: impl Read + Send + 'static) -> String {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = tx.send(reader.read_to_string(&mut text).map(|_| text));
    });
    common::event("EOF on the pipe", rx)
        .await
        .expect("the pipe reads")
}

#[test]
fn stdin_from_a_file_is_read_by_the_child() {
    let dir = TempDir::new("stdin-file");
    std::fs::write(dir.path("words"), "b\na\n").expect("write");
    common::bounded(async move {
        let done = Popen::new("sort")
            .stdin(InputFrom::file(dir.path("words")))
            .output()
            .await
            .expect("sort runs");
        assert_eq!(&done.stdout[..], b"a\nb\n");
    });
}

#[test]
fn stdin_from_an_fd_is_read_by_the_child() {
    common::bounded(async {
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        writer.write_all(b"through the fd\n").expect("write");
        drop(writer);
        let done = Popen::new("cat")
            .stdin(InputFrom::fd(reader))
            .output()
            .await
            .expect("cat runs");
        assert_eq!(&done.stdout[..], b"through the fd\n");
    });
}

#[test]
fn stdout_to_a_file_empties_it_first_and_append_writes_at_its_end() {
    let dir = TempDir::new("stdout-file");
    let log = dir.path("log");
    std::fs::write(&log, "an older and longer content\n").expect("write");
    common::bounded(async move {
        let first = Popen::new("echo")
            .arg("one")
            .stdout(OutputTo::file(&log))
            .status()
            .await
            .expect("echo runs");
        assert!(first.success());
        assert_eq!(dir.read("log"), "one\n", "> empties the file");
        let second = Popen::new("sh")
            .args(["-c", "echo two >&2"])
            .stderr(OutputTo::append(&log))
            .status()
            .await
            .expect("sh runs");
        assert!(second.success());
        assert_eq!(dir.read("log"), "one\ntwo\n", ">> appends");
        // A missing file is created.
        Popen::new("echo")
            .arg("new")
            .stdout(OutputTo::append(dir.path("new")))
            .status()
            .await
            .expect("echo runs");
        assert_eq!(dir.read("new"), "new\n");
    });
}

#[test]
fn stderr_merged_into_a_file_keeps_the_order_of_both_streams() {
    let dir = TempDir::new("merged-file");
    common::bounded(async move {
        let done = Popen::new("sh")
            .args(["-c", "echo 1; echo 2 >&2; echo 3"])
            .stdout(OutputTo::file(dir.path("both")))
            .stderr(OutputTo::MergeIntoStdout)
            .output()
            .await
            .expect("sh runs");
        assert!(done.returncode.success());
        assert!(done.stdout.is_empty() && done.stderr.is_empty());
        assert_eq!(dir.read("both"), "1\n2\n3\n");
    });
}

#[test]
fn a_relative_path_is_taken_from_the_childs_working_directory() {
    let dir = TempDir::new("relative");
    std::fs::write(dir.path("in"), "from the working directory\n").expect("write");
    common::bounded(async move {
        let code = Popen::new("cat")
            .current_dir(&dir.0)
            .stdin(InputFrom::file("in"))
            .stdout(OutputTo::file("out"))
            .status()
            .await
            .expect("cat runs");
        assert!(code.success());
        assert_eq!(dir.read("out"), "from the working directory\n");
    });
}

#[test]
fn the_task_keeps_no_copy_of_an_output_fd_once_the_child_is_spawned() {
    common::bounded(async {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let task = Popen::new("echo")
            .arg("hello")
            .stdout(OutputTo::fd(writer))
            .start()
            .expect("echo starts");
        // The handle, and so the task's actor, lives on: EOF must come
        // from the child's exit alone.
        assert_eq!(read_to_eof(reader).await, "hello\n");
        assert!(common::async_wait(&task).await.success());
    });
}

#[test]
fn a_task_that_never_ran_closes_its_copy_of_the_fds_too() {
    common::bounded(async {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let task = Popen::new("echo")
            .stdout(OutputTo::fd(writer))
            .prepare()
            .expect("prepared");
        task.send(actix_popen::Cancel)
            .await
            .expect("the actor runs");
        assert_eq!(common::async_wait(&task).await, ReturnCode::CANCELLED);
        assert_eq!(read_to_eof(reader).await, "");
    });
}

#[test]
fn a_file_that_cannot_be_opened_fails_the_spawn_and_nothing_runs() {
    let dir = TempDir::new("cannot-open");
    let marker = dir.path("marker");
    common::bounded(async move {
        let missing = dir.path("no-such-dir").join("out");
        let err = Popen::new("touch")
            .arg(&marker)
            .stdout(OutputTo::file(&missing))
            .start()
            .expect_err("the file's directory is missing");
        match err.kind() {
            SpawnErrorKind::File { fd, path, source } => {
                assert_eq!(*fd, 1);
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("not a File error: {other:?}"),
        }
        assert_eq!(err.shell_status(), 1, "as a shell's failed redirection");
        assert!(err.to_string().contains("for the child's stdout"), "{err}");
        let err = Popen::new("touch")
            .arg(&marker)
            .stdin(InputFrom::file(dir.path("missing")))
            .start()
            .expect_err("the input is missing");
        assert!(
            matches!(err.kind(), SpawnErrorKind::File { fd: 0, .. }),
            "{err:?}"
        );
        // A directory cannot be written to.
        let err = Popen::new("touch")
            .arg(&marker)
            .stderr(OutputTo::file(&dir.0))
            .start()
            .expect_err("a directory");
        assert!(
            matches!(err.kind(), SpawnErrorKind::File { fd: 2, .. }),
            "{err:?}"
        );
        assert!(!marker.exists(), "the child never ran");
    });
}

#[test]
fn a_submitted_task_whose_file_cannot_be_opened_ends_with_status_1() {
    let dir = TempDir::new("submitted");
    common::bounded(async move {
        let task = Popen::new("true")
            .stdout(OutputTo::file(dir.path("missing").join("out")))
            .submit()
            .expect("queued");
        assert_eq!(common::async_wait(&task).await.code(), 1);
        let err = task.spawn_error().expect("the spawn error is kept");
        assert!(
            matches!(err.kind(), SpawnErrorKind::File { fd: 1, .. }),
            "{err:?}"
        );
    });
}

#[test]
fn a_fifo_with_no_reader_fails_the_spawn_rather_than_block_the_host() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    common::bounded(async move {
        let err = Popen::new("true")
            .stdout(OutputTo::file(&fifo))
            .start()
            .expect_err("no reader");
        match err.kind() {
            SpawnErrorKind::File { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(nix::libc::ENXIO));
            }
            other => panic!("not a File error: {other:?}"),
        }
        // Read from a FIFO, the open would wait for a writer (or, without
        // waiting, give the child EOF at once): refused, with the way out.
        let err = Popen::new("cat")
            .stdin(InputFrom::file(&fifo))
            .start()
            .expect_err("a FIFO to read");
        match err.kind() {
            SpawnErrorKind::File { fd: 0, source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
                assert!(source.to_string().contains("InputFrom::fd"), "{source}");
            }
            other => panic!("not a File error: {other:?}"),
        }
    });
}

#[test]
fn a_created_file_gets_the_childs_umask_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TempDir::new("created");
    common::bounded(async move {
        let code = Popen::new("true")
            .umask(0o077)
            .stdout(OutputTo::file(dir.path("private")))
            .status()
            .await
            .expect("true runs");
        assert!(code.success());
        let mode = std::fs::metadata(dir.path("private"))
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // An existing file keeps its mode.
        std::fs::set_permissions(dir.path("private"), std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
        Popen::new("true")
            .umask(0o077)
            .stdout(OutputTo::append(dir.path("private")))
            .status()
            .await
            .expect("true runs");
        let mode = std::fs::metadata(dir.path("private"))
            .expect("kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{mode:o}");
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a file owned by another user needs root");
            return;
        }
        Popen::new("true")
            .uid(65534)
            .gid(65534)
            .stdout(OutputTo::file(dir.path("owned")))
            .status()
            .await
            .expect("true runs");
        let meta = std::fs::metadata(dir.path("owned")).expect("created");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    });
}

#[test]
fn a_relative_file_in_a_missing_working_directory_names_the_directory() {
    let dir = TempDir::new("missing-cwd");
    common::bounded(async move {
        let missing = dir.path("no-such-dir");
        let err = Popen::new("true")
            .current_dir(&missing)
            .stdout(OutputTo::file("out"))
            .start()
            .expect_err("no working directory");
        match err.kind() {
            SpawnErrorKind::WorkingDirectory { dir, .. } => assert_eq!(dir, &missing),
            other => panic!("not a WorkingDirectory error: {other:?}"),
        }
        assert_eq!(err.shell_status(), 126);
    });
}

#[test]
fn pass_fd_gives_each_fd_at_its_number_even_when_the_numbers_cross() {
    common::bounded(async {
        let (reader_a, writer_a) = std::io::pipe().expect("pipe");
        let (reader_b, writer_b) = std::io::pipe().expect("pipe");
        let (writer_a, writer_b) = (OwnedFd::from(writer_a), OwnedFd::from(writer_b));
        // A goes where B is in the host, and B where A is: moving A first
        // would overwrite B before it is moved.
        let (to_a, to_b) = (writer_b.as_raw_fd(), writer_a.as_raw_fd());
        // (dash's `>&N` takes one digit only: the pipes are opened again
        // through /proc instead.)
        let script = format!("echo to-a >/proc/self/fd/{to_a}; echo to-b >/proc/self/fd/{to_b}");
        let code = Popen::new("sh")
            .args(["-c", &script])
            .pass_fd(to_a, writer_a)
            .pass_fd(to_b, writer_b)
            .status()
            .await
            .expect("sh runs");
        assert!(code.success());
        assert_eq!(read_to_eof(reader_a).await, "to-a\n");
        assert_eq!(read_to_eof(reader_b).await, "to-b\n");
    });
}

#[test]
fn a_passed_fd_survives_close_fds_and_other_fds_do_not() {
    common::bounded(async {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // Not close-on-exec in the host: close_fds alone keeps it from the child.
        let leaked = std::fs::File::open("/dev/null").expect("open");
        nix::fcntl::fcntl(
            &leaked,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .expect("clear FD_CLOEXEC");
        let leaked_raw = leaked.as_raw_fd();
        let script = format!(
            "echo passed >&7; if [ -e /proc/self/fd/{leaked_raw} ]; then echo leaked >&7; fi"
        );
        let code = Popen::new("sh")
            .args(["-c", &script])
            .close_fds(true)
            .pass_fd(7, writer)
            .status()
            .await
            .expect("sh runs");
        assert!(code.success());
        assert_eq!(read_to_eof(reader).await, "passed\n");
        drop(leaked);
    });
}

#[test]
fn pass_fd_refuses_the_stdio_numbers_negative_numbers_duplicates_and_the_limit() {
    common::bounded(async {
        let fd = || OwnedFd::from(std::fs::File::open("/dev/null").expect("open"));
        let refused = |popen: Popen, expected: &str| {
            let err = popen.start().expect_err("refused");
            match err.kind() {
                SpawnErrorKind::InvalidConfig { reason } => {
                    assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
                }
                other => panic!("not InvalidConfig: {other:?}"),
            }
        };
        refused(Popen::new("true").pass_fd(1, fd()), "stdout");
        refused(Popen::new("true").pass_fd(0, fd()), "stdin");
        refused(Popen::new("true").pass_fd(-1, fd()), "negative");
        refused(
            Popen::new("true").pass_fd(5, fd()).pass_fd(5, fd()),
            "passed twice",
        );
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let beyond = i32::try_from(soft).unwrap_or(i32::MAX);
        refused(Popen::new("true").pass_fd(beyond, fd()), "RLIMIT_NOFILE");
    });
}

#[test]
fn pass_fd_never_lands_on_the_pipe_that_reports_a_failed_exec() {
    // In a process of its own, where the numbers the spawn takes are the
    // same each time: this test binary runs the check again alone.
    common::cli::run_test_alone(&[], "pass_fd_collisions");
}

/// Run alone by the test above; ignored otherwise.
#[test]
#[ignore = "run in a process of its own by pass_fd_never_lands_on_the_pipe_that_reports_a_failed_exec"]
fn pass_fd_collisions() {
    common::bounded(async {
        // Every low number, one at a time: one of them is where std's pipe
        // that reports a failed exec (or a failed step) would be made.
        for number in 3..64 {
            let (reader, writer) = std::io::pipe().expect("pipe");
            let err = Popen::new("/no/such/program")
                .stdin(InputFrom::Null)
                .stdout(OutputTo::Null)
                .stderr(OutputTo::Null)
                .pass_fd(number, writer)
                .start()
                .expect_err("the program is missing");
            assert!(
                matches!(err.kind(), SpawnErrorKind::NotFound { .. }),
                "fd {number}: {err:?}"
            );
            assert_eq!(read_to_eof(reader).await, "", "written into fd {number}");

            let (reader, writer) = std::io::pipe().expect("pipe");
            // SAFETY: the hook makes no call.
            let popen = unsafe {
                Popen::new("true")
                    .stdin(InputFrom::Null)
                    .stdout(OutputTo::Null)
                    .stderr(OutputTo::Null)
                    .pass_fd(number, writer)
                    .pre_exec(|| Err(std::io::Error::from_raw_os_error(nix::libc::ENOENT)))
            };
            let err = popen.start().expect_err("the hook fails");
            match err.kind() {
                SpawnErrorKind::ChildSetup { step, source } => {
                    assert_eq!(step, "pre_exec hook 1");
                    assert_eq!(source.raw_os_error(), Some(nix::libc::ENOENT));
                }
                other => panic!("fd {number}: not ChildSetup: {other:?}"),
            }
            assert_eq!(read_to_eof(reader).await, "", "written into fd {number}");
        }
    });
}

#[test]
fn pass_fd_takes_the_highest_number_the_limit_allows() {
    common::bounded(async {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let highest = i32::try_from(soft.min(1 << 20) - 1).expect("a number");
        let (reader, writer) = std::io::pipe().expect("pipe");
        let script = format!("echo at-the-limit >/proc/self/fd/{highest}");
        let code = Popen::new("sh")
            .args(["-c", &script])
            .pass_fd(highest, writer)
            .status()
            .await
            .expect("sh runs");
        assert!(code.success());
        assert_eq!(read_to_eof(reader).await, "at-the-limit\n");
    });
}
