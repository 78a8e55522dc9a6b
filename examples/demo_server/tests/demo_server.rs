//! The demo server (`demo-server`): its HTTP API through actix-web's test
//! service, its Ctrl-C shutdown as a real process, and its page in headless
//! Chromium driven over WebDriver.
//!
//! The API tests include the server's own modules (`#[path]` below: the
//! package is a binary, with no library to import), so they test the code
//! the server runs, on a jobs file of their own with short timeouts. The
//! tests from "The server as a process" on run its binary, which cargo
//! builds for them.

#[path = "../src/api.rs"]
#[allow(dead_code)]
mod api;
#[path = "../src/assets.rs"]
mod assets;
#[path = "../src/connections.rs"]
#[allow(dead_code)]
mod connections;
#[path = "../src/definitions.rs"]
#[allow(dead_code)]
mod definitions;
#[path = "../src/registry.rs"]
#[allow(dead_code)]
mod registry;

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use base64::Engine;
use serde_json::{json, Value};

use actix_popen::{GetJobPool, ProcessSupervisor};
use api::{AllowedHosts, Api};
use definitions::{Definitions, LoadError};
use registry::{Jobs, Limits, Shutdown};

/// How long anything awaited may take before the test fails rather than
/// hangs: generous, since the machine may be busy compiling.
const PATIENCE: Duration = Duration::from_secs(60);

/// The cancel timeout of the test jobs that ignore SIGTERM.
const CANCEL_TIMEOUT: Duration = Duration::from_millis(500);

/// The test jobs; `{dir}` becomes a temporary directory holding `data.bin`.
const TEST_JOBS: &str = r#"
[jobs.echo]
description = "prints a word"
program = "printf"
args = ["%s\n", { param = "word" }]
timeout = 10
cancel_timeout = 0.5

[jobs.echo.params.word]
pattern = '[A-Za-z0-9]{1,20}'

# A shell job with a permissive pattern: the value reaches the script as
# "$1" and is printed, never run.
[jobs.say]
program = "sh"
shell = true
args = ["-c", 'printf "%s\n" "$1"', "say", { param = "text" }]
timeout = 10
cancel_timeout = 0.5

[jobs.say.params.text]
pattern = '[ -~]{1,100}'

[jobs.count]
program = "sh"
shell = true
args = ["-c", 'for i in $(seq 1 "$1"); do echo "line $i"; sleep 0.05; done', "count", { param = "n" }]
timeout = 60
cancel_timeout = 0.5

[jobs.count.params.n]
range = [1, 2000]

[jobs.bytes]
description = "writes data.bin: every byte value, lines, invalid UTF-8"
program = "cat"
args = ["data.bin"]
dir = "{dir}"
timeout = 10
cancel_timeout = 0.5

[jobs.stubborn]
program = "sh"
shell = true
args = ["-c", 'trap "" TERM; echo ready; while :; do sleep 0.1; done', "stubborn"]
timeout = 60
cancel_timeout = 0.5

[jobs.fail]
program = "sh"
shell = true
args = ["-c", 'echo "something went wrong" >&2; exit 3', "fail"]
timeout = 10
cancel_timeout = 0.5

[jobs.sleepy]
program = "sleep"
args = ["30"]
timeout = 0.5
cancel_timeout = 0.5

[jobs.missing]
program = "/nonexistent/demo-server-program"
timeout = 10
cancel_timeout = 0.5

[jobs.ls]
program = "ls"
args = ["--", { param = "name" }]
dir = "{dir}"
timeout = 10
cancel_timeout = 0.5

[jobs.ls.params.name]
pattern = '[A-Za-z0-9_][A-Za-z0-9._-]{0,63}'

# Notes its start and end in {dir}/marks: two runs that overlap show.
[jobs.mark]
program = "sh"
shell = true
args = ["-c", 'echo "start $1" >> marks; sleep 0.2; echo "end $1" >> marks', "mark", { param = "name" }]
dir = "{dir}"
timeout = 10
cancel_timeout = 0.5

[jobs.mark.params.name]
pattern = '[a-z]{1,8}'

# Runs 0.3 s of its 1 s timeout.
[jobs.nap]
program = "sleep"
args = ["0.3"]
timeout = 1
cancel_timeout = 0.5

# 1 MiB of output at once.
[jobs.mebibyte]
program = "head"
args = ["-c", "1048576", "/dev/zero"]
timeout = 10
cancel_timeout = 0.5

# What CI and build tools print, for the page's terminal: 256-colour and
# truecolor SGR with bold, an OSC 8 link ended by ESC \, `\r` progress, a
# 3,000-character line.
[jobs.sgr]
program = "sh"
shell = true
args = ["-c", '''printf '\033[38;5;196mred256\033[0m \033[1;38;2;10;200;30mgreenbold\033[0m\n'; echo plain''', "sgr"]
timeout = 10
cancel_timeout = 0.5

[jobs.osc8]
program = "sh"
shell = true
args = ["-c", '''printf '\033]8;;https://example.com/\033\134link\033]8;;\033\134 text\n'; for i in 1 2 3 4 5; do echo "after $i"; done''', "osc8"]
timeout = 10
cancel_timeout = 0.5

[jobs.progress]
program = "sh"
shell = true
args = ["-c", '''for p in 10 50 100; do printf '\rprogress %3d%%' "$p"; sleep 0.1; done; printf '\ndone\n'''', "progress"]
timeout = 10
cancel_timeout = 0.5

# A line, a quiet while, another line.
[jobs.quiet]
program = "sh"
shell = true
args = ["-c", 'echo before; sleep "$1"; echo after', "quiet", { param = "secs" }]
timeout = 60
cancel_timeout = 0.5

[jobs.quiet.params.secs]
range = [1, 60]
default = "3"

[jobs.longline]
program = "sh"
shell = true
args = ["-c", '''head -c 3000 /dev/zero | tr '\0' x; echo; echo end''', "longline"]
timeout = 10
cancel_timeout = 0.5
"#;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// What `data.bin` holds: every byte value, many lines, `\r\n`, invalid
/// UTF-8 and NULs, over many reads' worth.
fn data_bin() -> Vec<u8> {
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..200_000u32).map(|i| (i * 31 % 251) as u8));
    data.extend_from_slice("é\r\nend\n".as_bytes());
    data
}

/// A temporary directory with `data.bin` and `jobs.toml`.
struct Fixture {
    dir: tempfile::TempDir,
    definitions: Arc<Definitions>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("data.bin"), data_bin()).expect("write data.bin");
    let jobs = TEST_JOBS.replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, &jobs).expect("write jobs.toml");
    let definitions = Definitions::load(&path).unwrap_or_else(|err| panic!("{err}"));
    Fixture {
        dir,
        definitions: Arc::new(definitions),
    }
}

/// The API on a fresh registry with `limits`, as served on 127.0.0.1.
fn api(fixture: &Fixture, limits: Limits) -> Api {
    Api {
        jobs: Jobs::new(limits).start(),
        definitions: fixture.definitions.clone(),
        max_body: 1024,
        body_timeout: PATIENCE,
        idle_stream: Duration::from_secs(300),
        hosts: Arc::new(AllowedHosts::new(LOOPBACK, &[]).expect("no extra names")),
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// Sends `req` and returns the status and the JSON body.
async fn send<S, B>(app: &S, req: TestRequest) -> (StatusCode, Value)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status();
    let body = test::read_body(response).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {:?}", String::from_utf8_lossy(&body)));
    (status, json)
}

fn post(body: Value) -> TestRequest {
    TestRequest::post().uri("/jobs").set_json(body)
}

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri)
}

fn delete(uri: &str) -> TestRequest {
    TestRequest::delete().uri(uri)
}

/// Starts `job` with `params`, expecting 201; returns its id.
async fn start<S, B>(app: &S, job: &str, params: Value) -> u64
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (status, body) = send(app, post(json!({ "job": job, "params": params }))).await;
    assert_eq!(status, StatusCode::CREATED, "starting {job}: {body}");
    body["id"].as_u64().expect("an id")
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// Reads server-sent events from a response body as they come.
struct EventReader<B> {
    body: B,
    buffer: String,
    comments: usize,
    /// The last `retry:` field's value (the reconnection time asked).
    retry: Option<String>,
}

impl<B> EventReader<B>
where
    B: MessageBody + Unpin,
    B::Error: std::fmt::Debug,
{
    fn new(body: B) -> EventReader<B> {
        EventReader {
            body,
            buffer: String::new(),
            comments: 0,
            retry: None,
        }
    }

    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<SseEvent> {
        self.next_block(false).await
    }

    /// Waits for the next comment (a keep-alive); fails if an event or the
    /// end of the stream comes first.
    async fn next_comment(&mut self) {
        if let Some(event) = self.next_block(true).await {
            panic!("an event before a keep-alive: {event:?}");
        }
    }

    /// The next event; with `comment`, `None` after a comment-only block.
    async fn next_block(&mut self, comment: bool) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".to_owned(),
                    id: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(value) = line.strip_prefix("retry: ") {
                        self.retry = Some(value.to_owned());
                    } else if let Some((name, value)) = line.split_once(": ") {
                        fields += 1;
                        match name {
                            "event" => event.event = value.to_owned(),
                            "id" => event.id = Some(value.to_owned()),
                            "data" => event.data.push_str(value),
                            other => panic!("unexpected SSE field {other:?}"),
                        }
                    }
                }
                if fields > 0 {
                    return Some(event);
                }
                if comment {
                    return None;
                }
            }
            let body = &mut self.body;
            let chunk = within(
                "the next server-sent event",
                std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx)),
            )
            .await;
            let Some(chunk) = chunk else {
                assert!(!comment, "the stream ended before a keep-alive");
                return None;
            };
            let chunk = chunk.expect("the event stream failed");
            // Output is base64 in JSON: the stream itself is ASCII.
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("the stream is ASCII"));
        }
    }

    /// Every event until the stream ends.
    async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// Opens `GET /jobs/{id}/output`, resuming at `from` if given.
async fn watch<S>(app: &S, id: u64, from: Option<u64>) -> EventReader<actix_web::body::BoxBody>
where
    S: Service<
        Request,
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
    >,
{
    let mut req = get(&format!("/jobs/{id}/output"));
    if let Some(from) = from {
        req = req.insert_header(("Last-Event-ID", from.to_string()));
    }
    let response = test::call_service(app, req.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    EventReader::new(response.into_body())
}

/// The output bytes of `events` and the job of their `exit` event. Checks
/// that the offsets follow each other (from the first one), that every
/// `id` is the offset after its event, and that `exit` comes last.
fn decode(events: &[SseEvent]) -> (u64, Vec<u8>, Option<Value>) {
    let mut first = None;
    let mut bytes = Vec::new();
    let mut exit = None;
    for event in events {
        assert!(exit.is_none(), "an event after the exit: {event:?}");
        match event.event.as_str() {
            "output" => {
                let data: Value = serde_json::from_str(&event.data).expect("output is JSON");
                let offset = data["offset"].as_u64().expect("an offset");
                let start = *first.get_or_insert(offset);
                assert_eq!(offset, start + bytes.len() as u64, "a gap in the output");
                let piece = base64::engine::general_purpose::STANDARD
                    .decode(data["data"].as_str().expect("data"))
                    .expect("base64");
                bytes.extend_from_slice(&piece);
                assert_eq!(
                    event.id.as_deref(),
                    Some((start + bytes.len() as u64).to_string().as_str())
                );
            }
            "exit" => exit = Some(serde_json::from_str(&event.data).expect("exit is JSON")),
            other => panic!("unexpected event {other:?}"),
        }
    }
    (first.unwrap_or(0), bytes, exit)
}

/// Waits until `GET /jobs/{id}` satisfies `done`; returns the job.
async fn wait_for_job<S>(app: &S, id: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value
where
    S: Service<
        Request,
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
    >,
{
    within(what, async {
        loop {
            let (status, job) = send(app, get(&format!("/jobs/{id}"))).await;
            assert_eq!(status, StatusCode::OK);
            if done(&job) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The state letter and parent of `pid`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Fails unless our former child `pid` is gone (not even a zombie) within
/// a bound: a cancelled job's child is reaped a moment after its exit,
/// once the library has seen its process group empty.
async fn assert_child_gone(pid: u32) {
    let ours = || proc_stat(pid).is_some_and(|(_, parent)| parent == std::process::id());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ours() {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} is still our child: {:?}",
            proc_stat(pid)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------
// The jobs file
// ---------------------------------------------------------------------

#[test]
fn the_shipped_jobs_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.toml");
    let definitions = Definitions::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let names: Vec<String> = definitions.jobs().map(|job| job.view().name).collect();
    for name in ["count", "colors", "stubborn", "fail", "ls"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
}

#[test]
fn jobs_files_that_break_the_rules_are_refused() {
    let job = |body: &str| format!("[jobs.x]\ntimeout = 1\ncancel_timeout = 1\n{body}\n");
    let cases = [
        (
            job(r#"program = "sh"
args = ["-c", 'echo "$1"', "x", { param = "p" }]
[jobs.x.params.p]
range = [1, 2]"#),
            "is a shell",
        ),
        (
            job(r#"program = "sh"
shell = true
args = [{ param = "p" }, "-c", 'echo', "x"]
[jobs.x.params.p]
range = [1, 2]"#),
            "must start with \"-c\"",
        ),
        (
            job(r#"program = "bash"
shell = true
args = ["-c", { param = "p" }, "x"]
[jobs.x.params.p]
range = [1, 2]"#),
            "must start with \"-c\"",
        ),
        (
            job(r#"program = "echo"
args = [{ param = "p" }]"#),
            "not declared",
        ),
        (
            job(r#"program = "echo"
[jobs.x.params.p]
range = [1, 2]"#),
            "never used",
        ),
        (
            job(r#"program = "echo"
args = [{ param = "p" }]
[jobs.x.params.p]
description = "no rule""#),
            "exactly one of",
        ),
        (
            job(r#"program = "echo"
args = [{ param = "p" }]
[jobs.x.params.p]
range = [1, 2]
pattern = 'a'"#),
            "exactly one of",
        ),
        (
            job(r#"program = "echo"
args = [{ param = "p" }]
[jobs.x.params.p]
pattern = '('"#),
            "regex parse error",
        ),
        (
            job(r#"program = "echo"
args = [{ param = "p" }]
[jobs.x.params.p]
range = [1, 2]
default = "3""#),
            "default \"3\" is not an integer from 1 to 2",
        ),
        (
            job(r#"program = "echo"
colour = "red""#),
            "unknown field `colour`",
        ),
        (
            "[jobs.x]\nprogram = \"echo\"\ntimeout = 0\ncancel_timeout = 1\n".to_owned(),
            "`timeout` must be a positive",
        ),
        (
            "[jobs.X]\nprogram = \"echo\"\ntimeout = 1\ncancel_timeout = 1\n".to_owned(),
            "job name must match",
        ),
    ];
    for (text, expected) in cases {
        match Definitions::parse(&text, Path::new("jobs.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(err @ (LoadError::Invalid { .. } | LoadError::Parse { .. })) => {
                let message = err.to_string();
                assert!(
                    message.contains(expected),
                    "{message:?} lacks {expected:?} for:\n{text}"
                );
            }
            Err(err) => panic!("{err}"),
        }
    }
}

// ---------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------

#[actix_web::test]
async fn the_page_and_the_definitions_are_served() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let response = test::call_service(&app, get("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = test::read_body(response).await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("new EventSource("), "{page}");

    let (status, definitions) = send(&app, get("/jobs/definitions")).await;
    assert_eq!(status, StatusCode::OK);
    let echo = definitions
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == "echo"))
        .expect("echo is listed");
    assert_eq!(echo["argv"], json!(["printf", "%s\n", "{word}"]));
    assert_eq!(echo["params"][0]["name"], "word");
    assert_eq!(echo["params"][0]["pattern"], "[A-Za-z0-9]{1,20}");
    assert_eq!(echo["cancel_timeout_secs"], 0.5);
}

#[actix_web::test]
async fn the_stream_delivers_every_byte_then_the_exit() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let expected = data_bin();

    let id = start(&app, "bytes", json!({})).await;
    let events = watch(&app, id, None).await.rest().await;
    let (first, bytes, exit) = decode(&events);
    assert_eq!(first, 0);
    assert!(bytes == expected, "the output differs from data.bin");
    let exit = exit.expect("an exit event ends the stream");
    assert_eq!(exit["state"], "exited");
    assert_eq!(exit["returncode"], 0);
    assert_eq!(exit["output_bytes"], expected.len() as u64);

    // Watching again after the end replays it all, then the exit.
    let (_, again, exit) = decode(&watch(&app, id, None).await.rest().await);
    assert!(again == expected);
    assert_eq!(exit.expect("exit")["returncode"], 0);

    // Last-Event-ID resumes where a client left off.
    let (first, rest, _) = decode(&watch(&app, id, Some(100_000)).await.rest().await);
    assert_eq!(first, 100_000);
    assert!(rest[..] == expected[100_000..]);
}

#[actix_web::test]
async fn jobs_are_listed_with_state_pid_time_and_return_code() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let (status, created) = send(&app, post(json!({"job": "fail"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    // Submitted: the pool starts it when it has a place (at once, here).
    assert_eq!(created["state"], "queued");
    assert_eq!(created["pid"], Value::Null);
    assert_eq!(created["started_at"], Value::Null);
    let id = created["id"].as_u64().expect("id");
    let (_, output, exit) = decode(&watch(&app, id, None).await.rest().await);
    // stderr is merged into stdout.
    assert_eq!(output, b"something went wrong\n");
    let exit = exit.expect("exit");
    assert_eq!(exit["returncode"], 3);
    let pid = exit["pid"].as_u64().expect("a pid") as u32;
    assert_child_gone(pid).await;

    let echo = start(&app, "echo", json!({"word": "hello"})).await;
    let (_, output, _) = decode(&watch(&app, echo, None).await.rest().await);
    assert_eq!(output, b"hello\n");

    let (status, list) = send(&app, get("/jobs")).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), 2);
    let fail = &list[0];
    assert_eq!(fail["id"], id);
    assert_eq!(fail["job"], "fail");
    assert_eq!(fail["state"], "exited");
    assert_eq!(fail["pid"], pid);
    assert_eq!(fail["returncode"], 3);
    // What its process cost, from the kernel: some CPU time (maybe under
    // a millisecond) and a resident set of a shell (more than 100 KiB).
    assert!(fail["cpu_ms"].as_u64().is_some(), "{fail}");
    let rss = fail["max_rss_bytes"].as_u64().expect("max_rss_bytes");
    assert!(rss > 100 << 10, "{rss} bytes");
    assert_eq!(created["cpu_ms"], Value::Null, "nothing before the end");
    assert_eq!(fail["timed_out"], false);
    assert_eq!(fail["output_bytes"], 21);
    assert_eq!(fail["output_dropped"], 0);
    for field in ["submitted_at", "started_at", "ended_at"] {
        let time = fail[field].as_str().expect(field);
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{field}: {time} is not RFC 3339"
        );
    }
    // The same format throughout: the strings compare as the times do.
    assert!(fail["submitted_at"].as_str() <= fail["started_at"].as_str());
    assert!(fail["started_at"].as_str() <= fail["ended_at"].as_str());
    assert!(fail["duration_ms"].as_u64().is_some());
    assert_eq!(list[1]["params"], json!({"word": "hello"}));
    assert_eq!(list[1]["argv"], json!(["printf", "%s\n", "hello"]));

    let (status, one) = send(&app, get(&format!("/jobs/{echo}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, list[1]);
}

#[actix_web::test]
async fn cancel_kills_a_job_that_ignores_sigterm_after_the_cancel_timeout() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let id = start(&app, "stubborn", json!({})).await;
    let mut stream = watch(&app, id, None).await;
    // "ready" comes once the trap is set.
    let ready = stream.next().await.expect("output");
    assert_eq!(decode(&[ready]).1, b"ready\n");
    let (_, job) = send(&app, get(&format!("/jobs/{id}"))).await;
    let pid = job["pid"].as_u64().expect("pid") as u32;

    let cancelled_at = Instant::now();
    let (status, job) = send(&app, delete(&format!("/jobs/{id}"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(job["state"], "running", "SIGTERM is ignored");
    let (_, _, exit) = decode(&stream.rest().await);
    let waited = cancelled_at.elapsed();
    let exit = exit.expect("exit");
    assert_eq!(exit["state"], "cancelled");
    assert_eq!(exit["returncode"], -9, "SIGKILL after the cancel timeout");
    assert!(
        waited >= CANCEL_TIMEOUT && waited < CANCEL_TIMEOUT + Duration::from_secs(20),
        "ended {waited:?} after the cancel"
    );
    assert_child_gone(pid).await;

    let (status, body) = send(&app, delete(&format!("/jobs/{id}"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        format!("job {id} has already ended (cancelled)")
    );
}

#[actix_web::test]
async fn a_job_past_its_timeout_is_cancelled() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let id = start(&app, "sleepy", json!({})).await;
    let (_, _, exit) = decode(&watch(&app, id, None).await.rest().await);
    let exit = exit.expect("exit");
    assert_eq!(exit["state"], "cancelled");
    assert_eq!(exit["timed_out"], true);
    assert_eq!(exit["returncode"], -15);
}

#[actix_web::test]
async fn a_program_that_cannot_run_fails_to_start() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    // The spawn is tried when the pool starts the job, after the reply.
    let id = start(&app, "missing", json!({})).await;
    let (_, output, exit) = decode(&watch(&app, id, None).await.rest().await);
    assert!(output.is_empty());
    let job = exit.expect("exit");
    assert_eq!(job["state"], "failed-to-start");
    assert_eq!(job["pid"], Value::Null);
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["returncode"], 127, "as a shell reports it");
    let error = job["error"].as_str().expect("an error");
    assert_eq!(error, "/nonexistent/demo-server-program: command not found");
}

#[actix_web::test]
async fn bad_input_gets_a_json_4xx_saying_what_was_wrong() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let raw = |body: &str| {
        TestRequest::post()
            .uri("/jobs")
            .insert_header(ContentType::json())
            .set_payload(body.to_owned())
    };
    use StatusCode as S;
    let jobs_are = "unknown job `rm` (the jobs are: bytes, count, echo, fail, longline, ls, mark,";
    let cases: Vec<(&str, TestRequest, StatusCode, &str)> = vec![
        (
            "unknown job",
            post(json!({"job": "rm"})),
            S::BAD_REQUEST,
            jobs_are,
        ),
        (
            "bad parameter",
            post(json!({"job": "count", "params": {"n": "0"}})),
            S::BAD_REQUEST,
            "bad parameter `n`: \"0\" is not an integer from 1 to 2000",
        ),
        (
            "not a number",
            post(json!({"job": "count", "params": {"n": "five"}})),
            S::BAD_REQUEST,
            "bad parameter `n`: \"five\" is not an integer from 1 to 2000",
        ),
        (
            "neither string nor integer",
            post(json!({"job": "count", "params": {"n": [5]}})),
            S::BAD_REQUEST,
            "bad parameter `n`: must be a string or an integer",
        ),
        (
            "missing parameter",
            post(json!({"job": "count"})),
            S::BAD_REQUEST,
            "missing parameter `n` for job `count`: an integer from 1 to 2000",
        ),
        (
            "extra parameter",
            post(json!({"job": "count", "params": {"n": "5", "m": "1"}})),
            S::BAD_REQUEST,
            "unknown parameter `m` for job `count` (it takes: n)",
        ),
        (
            "a parameter for a job without",
            post(json!({"job": "fail", "params": {"x": "1"}})),
            S::BAD_REQUEST,
            "unknown parameter `x` for job `fail` (it takes no parameters)",
        ),
        (
            "malformed JSON",
            raw(r#"{"job": "count","#),
            S::BAD_REQUEST,
            "malformed JSON: EOF while parsing a value at line 1 column 16",
        ),
        (
            "not an object",
            raw(r#""count""#),
            S::BAD_REQUEST,
            "invalid request: invalid type: string \"count\", expected struct StartRequest",
        ),
        (
            "unknown field",
            raw(r#"{"job": "count", "argv": ["rm"]}"#),
            S::BAD_REQUEST,
            "invalid request: unknown field `argv`, expected `job` or `params`",
        ),
        (
            "missing field",
            raw(r#"{"params": {}}"#),
            S::BAD_REQUEST,
            "invalid request: missing field `job`",
        ),
        (
            "not JSON",
            TestRequest::post()
                .uri("/jobs")
                .insert_header(ContentType::plaintext())
                .set_payload("job=count"),
            S::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, with Content-Type: application/json",
        ),
        (
            "too large",
            post(json!({"job": "say", "params": {"text": "x".repeat(2000)}})),
            S::PAYLOAD_TOO_LARGE,
            "request body too large: the limit is 1024 bytes",
        ),
        (
            "unknown id",
            get("/jobs/42"),
            S::NOT_FOUND,
            "no job with id 42",
        ),
        (
            "cancel unknown",
            delete("/jobs/42"),
            S::NOT_FOUND,
            "no job with id 42",
        ),
        (
            "watch unknown",
            get("/jobs/42/output"),
            S::NOT_FOUND,
            "no job with id 42",
        ),
        (
            "bad id",
            get("/jobs/abc"),
            S::NOT_FOUND,
            "no job with id \"abc\"",
        ),
        (
            "unknown route",
            get("/etc/passwd"),
            S::NOT_FOUND,
            "no such page: /etc/passwd",
        ),
        (
            "wrong method",
            TestRequest::put().uri("/jobs"),
            S::METHOD_NOT_ALLOWED,
            "method PUT is not allowed on /jobs",
        ),
    ];
    for (what, req, expected_status, expected_error) in cases {
        let (status, body) = send(&app, req).await;
        assert_eq!(status, expected_status, "{what}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert!(error.starts_with(expected_error), "{what}: {error:?}");
    }
    let (_, jobs) = send(&app, get("/jobs")).await;
    assert_eq!(jobs, json!([]), "nothing ran");
}

#[actix_web::test]
async fn the_allow_list_refuses_injection() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let attempts = [
        "; rm -rf /",
        "data.bin; rm -rf /",
        "$(id)",
        "`id`",
        "data.bin && id",
        "data.bin | id",
        "-la",
        "--help",
        "data.bin /etc/passwd",
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "data.bin\nid",
        "data.bin\0",
        "",
    ];
    for value in attempts {
        let (status, body) =
            send(&app, post(json!({"job": "ls", "params": {"name": value}}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(
            error.starts_with("bad parameter `name`: "),
            "{value:?}: {error}"
        );
    }
    for value in [
        "5; rm -rf /",
        "$(id)",
        "5 6",
        "0x10",
        "1e3",
        "99999999999999999999",
    ] {
        let (status, body) =
            send(&app, post(json!({"job": "count", "params": {"n": value}}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}: {body}");
    }
    // Parameter names the job does not declare, and programs or arguments
    // of the request's own, are refused.
    for body in [
        json!({"job": "ls", "params": {"name": "data.bin", "args": "-la"}}),
        json!({"job": "ls", "params": {"name": "data.bin", "dir": "/"}}),
        json!({"job": "ls", "params": {"name": "data.bin"}, "program": "sh"}),
        json!({"job": "../../bin/sh"}),
        json!({"job": "sh"}),
    ] {
        let (status, reply) = send(&app, post(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
    }
    let (_, jobs) = send(&app, get("/jobs")).await;
    assert_eq!(jobs, json!([]), "nothing ran");

    // A value the pattern allows reaches the program as one argument.
    let id = start(&app, "ls", json!({"name": "data.bin"})).await;
    let (_, output, _) = decode(&watch(&app, id, None).await.rest().await);
    assert_eq!(output, b"data.bin\n");

    // In a shell job, even a permissive pattern is safe: the value is
    // "$1" to the script, printed and never run.
    for value in ["$(id)", "`id`", "; rm -rf /", "a \"b\" 'c' $HOME \\"] {
        let id = start(&app, "say", json!({"text": value})).await;
        let (_, output, exit) = decode(&watch(&app, id, None).await.rest().await);
        assert_eq!(String::from_utf8_lossy(&output), format!("{value}\n"));
        assert_eq!(exit.expect("exit")["returncode"], 0);
    }
}

#[actix_web::test]
async fn finished_jobs_beyond_the_limit_are_forgotten() {
    let fixture = fixture();
    let limits = Limits {
        keep_finished: 2,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let mut ids = Vec::new();
    for word in ["a", "b", "c", "d"] {
        let id = start(&app, "echo", json!({"word": word})).await;
        decode(&watch(&app, id, None).await.rest().await);
        ids.push(id);
    }
    let (_, list) = send(&app, get("/jobs")).await;
    let kept: Vec<u64> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|job| job["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(kept, ids[2..], "the two newest finished jobs are kept");
    let (status, _) = send(&app, get(&format!("/jobs/{}", ids[0]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Waits until the job pool has nothing running or queued.
async fn wait_for_idle_pool() {
    within("the job pool to be idle", async {
        loop {
            let pool = ProcessSupervisor::get()
                .send(GetJobPool)
                .await
                .expect("the supervisor runs");
            if pool.running == 0 && pool.queued == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[actix_web::test]
async fn a_queued_job_shows_no_pid_and_cancelled_never_runs() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 1,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    // The stubborn job holds the only place until it is cancelled.
    let stubborn = start(&app, "stubborn", json!({})).await;
    watch(&app, stubborn, None)
        .await
        .next()
        .await
        .expect("ready");
    let queued = start(&app, "mark", json!({"name": "never"})).await;
    let (status, job) = send(&app, get(&format!("/jobs/{queued}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "queued");
    assert_eq!(job["pid"], Value::Null);
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["duration_ms"], Value::Null);
    assert!(job["submitted_at"].is_string());
    let (_, list) = send(&app, get("/jobs")).await;
    assert_eq!(list[1]["state"], "queued", "{list}");

    let (status, job) = send(&app, delete(&format!("/jobs/{queued}"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let (_, output, exit) = decode(&watch(&app, queued, None).await.rest().await);
    assert!(output.is_empty());
    let exit = exit.expect("exit");
    assert_eq!(exit["state"], "cancelled");
    assert_eq!(exit["returncode"], -2, "cancelled before it ran");
    assert_eq!(exit["pid"], Value::Null);
    assert_eq!(exit["started_at"], Value::Null);
    assert_eq!(exit["timed_out"], false);

    // Free the place: the pool then passes over the cancelled job, which
    // never runs a process.
    send(&app, delete(&format!("/jobs/{stubborn}"))).await;
    decode(&watch(&app, stubborn, None).await.rest().await);
    wait_for_idle_pool().await;
    let after = start(&app, "echo", json!({"word": "after"})).await;
    decode(&watch(&app, after, None).await.rest().await);
    assert!(
        !fixture.dir.path().join("marks").exists(),
        "the cancelled job ran"
    );
    let (_, job) = send(&app, get(&format!("/jobs/{queued}"))).await;
    assert_eq!(
        (job["state"].as_str(), job["pid"].as_u64()),
        (Some("cancelled"), None)
    );
}

#[actix_web::test]
async fn with_one_place_jobs_run_one_after_the_other_in_order() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 1,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let names = ["a", "b", "c", "d"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(start(&app, "mark", json!({ "name": name })).await);
    }
    let mut streams = Vec::new();
    for &id in &ids {
        streams.push(watch(&app, id, None).await);
    }
    for mut stream in streams {
        let (_, _, exit) = decode(&stream.rest().await);
        let exit = exit.expect("exit");
        assert_eq!(
            (exit["state"].as_str(), exit["returncode"].as_i64()),
            (Some("exited"), Some(0))
        );
        assert!(exit["pid"].is_u64());
    }
    // Each started after the one before had ended, in submission order.
    let marks = std::fs::read_to_string(fixture.dir.path().join("marks")).expect("marks");
    let expected: String = names
        .iter()
        .map(|name| format!("start {name}\nend {name}\n"))
        .collect();
    assert_eq!(marks, expected);
    let (_, list) = send(&app, get("/jobs")).await;
    let list = list.as_array().expect("list");
    for pair in list.windows(2) {
        assert!(
            pair[0]["ended_at"].as_str() <= pair[1]["started_at"].as_str(),
            "{} and {} overlap",
            pair[0],
            pair[1]
        );
    }
}

#[actix_web::test]
async fn a_jobs_timeout_counts_from_its_start_not_its_submission() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 1,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let stubborn = start(&app, "stubborn", json!({})).await;
    watch(&app, stubborn, None)
        .await
        .next()
        .await
        .expect("ready");
    // nap runs 0.3 s with a 1 s timeout; it waits longer than that first.
    let nap = start(&app, "nap", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, job) = send(&app, get(&format!("/jobs/{nap}"))).await;
    assert_eq!(job["state"], "queued", "the wait is not the job's time");
    send(&app, delete(&format!("/jobs/{stubborn}"))).await;

    let (_, _, exit) = decode(&watch(&app, nap, None).await.rest().await);
    let exit = exit.expect("exit");
    assert_eq!(exit["state"], "exited");
    assert_eq!(exit["returncode"], 0);
    assert_eq!(exit["timed_out"], false);
}

#[actix_web::test]
async fn the_stream_of_a_queued_job_waits_then_delivers_its_output() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 1,
        keep_alive: Duration::from_millis(50),
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let stubborn = start(&app, "stubborn", json!({})).await;
    watch(&app, stubborn, None)
        .await
        .next()
        .await
        .expect("ready");
    let echo = start(&app, "echo", json!({"word": "later"})).await;
    let mut stream = watch(&app, echo, None).await;
    // Keep-alives come while it waits (they show the client is there) ...
    stream.next_comment().await;
    stream.next_comment().await;
    let (_, job) = send(&app, get(&format!("/jobs/{echo}"))).await;
    assert_eq!(
        (job["state"].as_str(), job["watchers"].as_u64()),
        (Some("queued"), Some(1))
    );
    send(&app, delete(&format!("/jobs/{stubborn}"))).await;
    // ... then its output and its exit.
    let (first, output, exit) = decode(&stream.rest().await);
    assert_eq!((first, output), (0, b"later\n".to_vec()));
    assert_eq!(exit.expect("exit")["state"], "exited");
}

#[actix_web::test]
async fn beyond_the_queue_bound_a_job_is_refused_with_429() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 1,
        max_queued: 2,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;

    let stubborn = start(&app, "stubborn", json!({})).await;
    let first = start(&app, "echo", json!({"word": "a"})).await;
    let second = start(&app, "echo", json!({"word": "b"})).await;
    let response = test::call_service(
        &app,
        post(json!({"job": "echo", "params": {"word": "c"}})).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: Value = serde_json::from_slice(&test::read_body(response).await).expect("JSON");
    assert_eq!(
        body["error"],
        "the queue is full (1 jobs running, 2 waiting, the most allowed): \
         try again when one has ended"
    );
    // A job cancelled while it waits gives its place back at once (and
    // takes no place in the pool's count again: the queue cannot grow by
    // submitting and cancelling).
    send(&app, delete(&format!("/jobs/{first}"))).await;
    decode(&watch(&app, first, None).await.rest().await);
    let third = start(&app, "echo", json!({"word": "c"})).await;
    let (status, _) = send(&app, post(json!({"job": "echo", "params": {"word": "d"}}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    send(&app, delete(&format!("/jobs/{stubborn}"))).await;
    let (_, output, _) = decode(&watch(&app, second, None).await.rest().await);
    assert_eq!(output, b"b\n");
    let (_, output, _) = decode(&watch(&app, third, None).await.rest().await);
    assert_eq!(output, b"c\n");
    wait_for_idle_pool().await;
    let fourth = start(&app, "echo", json!({"word": "d"})).await;
    let (_, output, _) = decode(&watch(&app, fourth, None).await.rest().await);
    assert_eq!(output, b"d\n");
    let (_, list) = send(&app, get("/jobs")).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(5),
        "the refused ones were not kept"
    );
}

#[actix_web::test]
async fn requests_for_another_host_name_are_refused() {
    let fixture = fixture();
    let api = api(&fixture, Limits::default());
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let with_host = |req: TestRequest, host: &str| req.insert_header(("Host", host.to_owned()));

    // What a page of evil.example, its name pointed at 127.0.0.1, sends.
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io:8080",
        "localhost:8080@evil.example",
        "[::1",
        "localhost:80a",
        "",
    ] {
        for req in [
            get("/"),
            get("/jobs"),
            post(json!({"job": "echo", "params": {"word": "x"}})),
            get("/nowhere"),
        ] {
            let (status, body) = send(&app, with_host(req, host)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{host:?}: {body}");
            let error = body["error"].as_str().expect("error");
            assert!(
                error.starts_with(&format!("host {host:?} is not allowed: the server answers to localhost, 127.0.0.1, [::1]")),
                "{error}"
            );
        }
    }
    // An absolute request URI names its host too.
    let (status, _) = send(
        &app,
        get("http://evil.example/jobs").insert_header(("Host", "localhost")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, jobs) = send(&app, with_host(get("/jobs"), "localhost")).await;
    assert_eq!(jobs, json!([]), "nothing ran");

    // Loopback names, with or without a port, in any case.
    for host in [
        "localhost",
        "localhost:8080",
        "LocalHost:1",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:8080",
        "[0:0:0:0:0:0:0:1]:8080",
    ] {
        let (status, body) = send(&app, with_host(get("/jobs"), host)).await;
        assert_eq!(status, StatusCode::OK, "{host:?}: {body}");
    }
    let id = {
        let (status, job) = send(
            &app,
            with_host(
                post(json!({"job": "echo", "params": {"word": "ok"}})),
                "localhost:8080",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        job["id"].as_u64().expect("id")
    };
    let (_, output, _) = decode(&watch(&app, id, None).await.rest().await);
    assert_eq!(output, b"ok\n");
}

#[test]
fn the_allowed_host_names_follow_the_bound_address() {
    let names = |bind: &str, extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|name| name.to_string()).collect();
        AllowedHosts::new(bind.parse().expect("an IP"), &extra).expect("valid names")
    };
    let loopback = names("127.0.0.1", &[]);
    assert!(loopback.allows("localhost:8080") && loopback.allows("[::1]"));
    assert!(!loopback.allows("192.0.2.1:8080"));

    let lan = names("192.0.2.1", &["build.example", "2001:db8::1"]);
    for host in [
        "192.0.2.1:8080",
        "192.0.2.1",
        "build.example:8080",
        "BUILD.example",
        "[2001:db8::1]:80",
    ] {
        assert!(lan.allows(host), "{host}");
    }
    for host in [
        "localhost:8080",
        "127.0.0.1:8080",
        "evil.example",
        "192.0.2.2",
        "build.example.evil.example",
    ] {
        assert!(!lan.allows(host), "{host}");
    }

    // Every address: any IP literal names it, and so does localhost.
    let any = names("0.0.0.0", &[]);
    for host in ["192.0.2.7:8080", "[fe80::1]:8080", "localhost"] {
        assert!(any.allows(host), "{host}");
    }
    assert!(!any.allows("evil.example:8080"));

    for bad in ["evil.example:8080", "a b", "", "http://x"] {
        assert!(
            AllowedHosts::new("127.0.0.1".parse().expect("IP"), &[bad.to_owned()]).is_err(),
            "{bad:?}"
        );
    }
}

#[actix_web::test]
async fn output_beyond_the_limit_drops_the_oldest_bytes_and_counts_them() {
    let fixture = fixture();
    let limits = Limits {
        output_limit: 1000,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let expected = data_bin();

    let id = start(&app, "bytes", json!({})).await;
    // A client watching from the start gets every byte as it comes ...
    let (_, live, _) = decode(&watch(&app, id, None).await.rest().await);
    assert!(live == expected);
    // ... while the job keeps only the last 1000.
    let (_, job) = send(&app, get(&format!("/jobs/{id}"))).await;
    let dropped = expected.len() as u64 - 1000;
    assert_eq!(job["output_bytes"], expected.len() as u64);
    assert_eq!(job["output_dropped"], dropped);
    let (first, replay, _) = decode(&watch(&app, id, None).await.rest().await);
    assert_eq!(first, dropped, "the replay starts after the dropped bytes");
    assert!(replay[..] == expected[dropped as usize..]);
}

/// The idle limit of the output streams in the tests that check it.
const IDLE: Duration = Duration::from_millis(500);

#[actix_web::test]
async fn a_stream_without_output_for_the_idle_limit_ends_and_frees_its_place() {
    let fixture = fixture();
    let limits = Limits {
        max_watchers: 2,
        ..Limits::default()
    };
    let api = Api {
        idle_stream: IDLE,
        ..api(&fixture, limits)
    };
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    // "before", 3 s of silence, "after".
    let id = start(&app, "quiet", json!({"secs": 3})).await;
    let mut first = watch(&app, id, None).await;
    let (_, before, _) = decode(&[first.next().await.expect("output")]);
    assert_eq!(before, b"before\n");
    let opened = Instant::now();
    let mut second = watch(&app, id, None).await;
    let (_, replayed, _) = decode(&[second.next().await.expect("the replay")]);
    assert_eq!(replayed, b"before\n");
    let (status, body) = send(&app, get(&format!("/jobs/{id}/output"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // Both streams end, quiet for the idle limit: no exit, and a retry
    // field that asks the client to reconnect. Their places are free, and
    // a new watcher gets in while the job still runs.
    for stream in [&mut first, &mut second] {
        let rest = stream.rest().await;
        assert!(rest.is_empty(), "{rest:?}");
        assert!(stream.retry.is_some(), "no retry: field");
    }
    let ended = opened.elapsed();
    assert!(
        ended >= IDLE && ended < IDLE + Duration::from_secs(2),
        "ended after {ended:?}"
    );
    let job = wait_for_job(&app, id, "the places to be free", |job| {
        job["watchers"] == 0
    })
    .await;
    assert_eq!(job["state"], "running", "{job}");

    // Resuming with Last-Event-ID, as EventSource does, gives the rest of
    // the output exactly once, however many times the stream idles out
    // before it comes.
    let mut got = before;
    let mut resumes = 0;
    let exit = loop {
        resumes += 1;
        let mut stream = watch(&app, id, Some(got.len() as u64)).await;
        let (first, bytes, exit) = decode(&stream.rest().await);
        if !bytes.is_empty() {
            assert_eq!(first, got.len() as u64, "not resumed where it ended");
        }
        got.extend_from_slice(&bytes);
        if let Some(exit) = exit {
            break exit;
        }
        assert!(stream.retry.is_some(), "ended without exit or retry");
    };
    assert_eq!(String::from_utf8_lossy(&got), "before\nafter\n");
    assert_eq!(exit["returncode"], 0, "{exit}");
    assert!(resumes >= 2, "the resumed stream never idled out");
}

#[actix_web::test]
async fn a_client_that_leaves_or_stalls_costs_nothing() {
    let fixture = fixture();
    let limits = Limits {
        client_queue: 4,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let id = start(&app, "count", json!({"n": 2000})).await;

    // Clients come and go: the list of watchers does not grow.
    for _ in 0..40 {
        let mut stream = watch(&app, id, None).await;
        stream.next().await.expect("output");
        drop(stream);
    }
    wait_for_job(&app, id, "the watchers that left to be dropped", |job| {
        job["watchers"] == 0
    })
    .await;

    // A client that stops reading is dropped once its queue is full: its
    // stream ends without an exit, and it may resume with Last-Event-ID.
    // It holds its place until its stream is dropped.
    let mut stalled = watch(&app, id, None).await;
    let at = wait_for_job(&app, id, "the stalled client to count", |job| {
        job["watchers"] == 1
    })
    .await;
    // Each line is written on its own: ten more are more events than its
    // queue holds.
    let watched_from = at["output_bytes"].as_u64().expect("output_bytes");
    wait_for_job(&app, id, "ten more lines", |job| {
        job["output_bytes"].as_u64() >= Some(watched_from + 10 * "line 1000\n".len() as u64)
    })
    .await;
    let (_, got, exit) = decode(&stalled.rest().await);
    drop(stalled);
    wait_for_job(&app, id, "the stalled client's place to be free", |job| {
        job["watchers"] == 0 && job["state"] == "running"
    })
    .await;
    assert!(
        exit.is_none(),
        "the stalled client's stream ends without exit"
    );
    let mut resumed = watch(&app, id, Some(got.len() as u64)).await;
    let (first, _, _) = decode(&[resumed.next().await.expect("output")]);
    assert_eq!(first, got.len() as u64);
    drop(resumed);

    let (status, _) = send(&app, delete(&format!("/jobs/{id}"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, _, exit) = decode(&watch(&app, id, None).await.rest().await);
    assert_eq!(exit.expect("exit")["returncode"], -15);
}

#[actix_web::test]
async fn shutdown_cancels_every_queued_and_running_job() {
    let fixture = fixture();
    let limits = Limits {
        max_running: 2,
        ..Limits::default()
    };
    let api = api(&fixture, limits);
    let app = test::init_service(App::new().configure(|cfg| api.configure(cfg))).await;
    let stubborn = start(&app, "stubborn", json!({})).await;
    let count = start(&app, "count", json!({"n": 1000})).await;
    let queued = start(&app, "mark", json!({"name": "never"})).await;
    let mut ready = watch(&app, stubborn, None).await;
    ready.next().await.expect("the trap is set");
    wait_for_job(&app, count, "count to start", |job| {
        job["state"] == "running"
    })
    .await;

    within("the shutdown", api.jobs.send(Shutdown))
        .await
        .expect("the registry runs");
    for (id, code) in [(stubborn, -9), (count, -15)] {
        let (_, job) = send(&app, get(&format!("/jobs/{id}"))).await;
        assert_eq!(job["state"], "cancelled");
        assert_eq!(job["returncode"], code);
        assert_child_gone(job["pid"].as_u64().expect("pid") as u32).await;
    }
    let (_, job) = send(&app, get(&format!("/jobs/{queued}"))).await;
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["returncode"], -2);
    assert_eq!(job["pid"], Value::Null);
    let (status, body) = send(&app, post(json!({"job": "fail"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "the server is shutting down");
}

// ---------------------------------------------------------------------
// The server as a process
// ---------------------------------------------------------------------

/// The server's binary: cargo builds it before it runs these tests.
fn demo_server_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_demo-server"))
}

/// `target/` (tests run from `target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.ancestors().nth(3).expect("target dir").to_owned()
}

/// A child process killed (SIGKILL to its process group) and reaped on
/// drop, unless it has exited already.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    /// Starts `command` leading a process group of its own.
    fn spawn(name: &'static str, mut command: Command) -> Guard {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        Guard { child, name }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits up to `limit` for the exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            eprintln!("killing {} (pid {})", self.name, self.child.id());
            let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The server's binary serving `jobs` on a free loopback port, with
/// `options` and its log in `log`; returns it and the address it printed.
fn serve(jobs: Option<&Path>, log: &Path, options: &[&str]) -> (Guard, SocketAddr) {
    serve_under(&[], jobs, log, options)
}

/// As [`serve`], run by `wrapper` (a command that runs the rest of its
/// command line, as `prlimit --nofile=N:N --` does) if not empty.
fn serve_under(
    wrapper: &[&str],
    jobs: Option<&Path>,
    log: &Path,
    options: &[&str],
) -> (Guard, SocketAddr) {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(demo_server_bin());
            command
        }
        None => Command::new(demo_server_bin()),
    };
    command.args(["--bind", "127.0.0.1", "--port", "0"]);
    command.args(options);
    if let Some(jobs) = jobs {
        command.arg("--jobs").arg(jobs);
    }
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).expect("log file"));
    let mut server = Guard::spawn("demo-server", command);
    let stdout = server.child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    let addr = line
        .trim()
        .strip_prefix("demo server listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the server did not start: {line:?}\n{log}")
        });
    (server, addr)
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    http_to(addr, &addr.to_string(), method, path, body)
}

/// As [`http`], with `host` in the `Host` header.
fn http_to(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn http_json(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, text) = http(addr, method, path, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

/// As [`http_json`], trying again (within [`PATIENCE`]) while the answer
/// is 503 for a connection over the cap: what its `Retry-After` asks.
fn http_json_patient(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, json) = http_json(addr, method, path, body);
        let busy = status == 503
            && json["error"]
                .as_str()
                .is_some_and(|error| error.starts_with("too many connections"));
        if !busy || Instant::now() > deadline {
            return (status, json);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The members of process group `pgid` that are not zombies (a zombie has
/// exited; whoever inherited it reaps it).
fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            // After the command: state, ppid, pgrp.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .collect()
}

#[test]
fn ctrl_c_cancels_every_running_job_and_stops_the_server() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    let (mut server, addr) = serve(Some(&fixture.dir.path().join("jobs.toml")), &log, &[]);

    for (job, params) in [("stubborn", json!({})), ("count", json!({"n": 1000}))] {
        let (status, body) = http_json(
            addr,
            "POST",
            "/jobs",
            Some(&json!({"job": job, "params": params})),
        );
        assert_eq!(status, 201, "{body}");
    }
    // Wait for both to run, and for "ready": the stubborn job has set its
    // trap.
    let deadline = Instant::now() + PATIENCE;
    let pids = loop {
        let jobs: Vec<Value> = (1..=2)
            .map(|id| http_json(addr, "GET", &format!("/jobs/{id}"), None).1)
            .collect();
        if jobs[0]["output_bytes"] != 0 && jobs.iter().all(|job| job["pid"].is_u64()) {
            break jobs
                .iter()
                .map(|job| job["pid"].as_u64().expect("pid") as u32)
                .collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "the jobs never got ready");
        std::thread::sleep(Duration::from_millis(20));
    };

    let interrupted = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = server.wait_exit(PATIENCE);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the server did not stop:\n{log_text}"));
    assert!(status.success(), "{status}:\n{log_text}");
    // The stubborn job ignores SIGTERM: the shutdown waited for SIGKILL.
    assert!(interrupted.elapsed() >= CANCEL_TIMEOUT, "{log_text}");
    assert!(
        log_text.contains("cancelling 2 running job(s)"),
        "{log_text}"
    );
    assert!(
        log_text.contains("job 1: cancelled with return code -9"),
        "{log_text}"
    );
    assert!(
        log_text.contains("job 2: cancelled with return code -15"),
        "{log_text}"
    );
    for pid in pids {
        // Each job led a process group: nothing of it is left, anywhere.
        assert!(proc_stat(pid).is_none(), "job pid {pid} is still there");
        let left = live_group_members(pid);
        assert!(left.is_empty(), "process group {pid} still has {left:?}");
    }
}

#[test]
fn the_server_checks_the_host_and_queues_through_the_pool() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    let options = [
        "--allow-host",
        "build.example",
        "--max-running",
        "1",
        "--max-queued",
        "0",
        "--max-load",
        "1000",
    ];
    let (mut server, addr) = serve(Some(&fixture.dir.path().join("jobs.toml")), &log, &options);
    let port = addr.port();
    let stubborn = json!({"job": "stubborn"});

    let (status, body) = http_to(addr, "evil.example", "POST", "/jobs", Some(&stubborn));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(r#"host \"evil.example\" is not allowed"#),
        "{body}"
    );
    let (status, page) = http_to(addr, &format!("evil.example:{port}"), "GET", "/", None);
    assert_eq!(status, 403, "{page}");
    let (status, page) = http_to(addr, &format!("localhost:{port}"), "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("new EventSource("));
    let (status, body) = http_to(addr, "build.example", "GET", "/jobs", None);
    assert_eq!((status, body.as_str()), (200, "[]"));

    // One place and no queue: a second job is refused.
    let (status, body) = http_to(
        addr,
        &format!("localhost:{port}"),
        "POST",
        "/jobs",
        Some(&stubborn),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_json(addr, "POST", "/jobs", Some(&json!({"job": "fail"})));
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("the queue is full")),
        "{body}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = server.wait_exit(PATIENCE).expect("the server stops");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}:\n{log_text}");
}

/// Sends SIGINT to the server and expects it to stop cleanly.
fn stop(mut server: Guard, log: &Path) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = server.wait_exit(PATIENCE);
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the server did not stop:\n{log_text}"));
    assert!(status.success(), "{status}:\n{log_text}");
}

/// Starts `job` over HTTP and waits until it has ended; returns the job.
fn run_job(addr: SocketAddr, job: &str, params: Value) -> Value {
    let (status, body) = http_json_patient(
        addr,
        "POST",
        "/jobs",
        Some(&json!({"job": job, "params": params})),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().expect("id");
    wait_for(addr, id, "the job to end", |job| {
        job["state"] != "queued" && job["state"] != "running"
    })
}

/// Polls `GET /jobs/{id}` until `done` holds, within [`PATIENCE`].
fn wait_for(addr: SocketAddr, id: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, job) = http_json_patient(addr, "GET", &format!("/jobs/{id}"), None);
        assert_eq!(status, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {job}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A field of `/proc/{pid}/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix(" kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn timestamps_are_rfc3339_and_a_host_must_parse_as_an_authority() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    let (server, addr) = serve(Some(&fixture.dir.path().join("jobs.toml")), &log, &[]);
    let before = jiff::Timestamp::now();
    let job = run_job(addr, "nap", json!({}));
    let after = jiff::Timestamp::now();
    // Each time is RFC 3339 in UTC to the millisecond, in order, within
    // the test's own clock readings.
    let times: Vec<jiff::Timestamp> = ["submitted_at", "started_at", "ended_at"]
        .iter()
        .map(|field| {
            let text = job[field].as_str().expect("a time");
            assert!(
                text.len() == "2025-01-01T00:00:00.000Z".len() && text.ends_with('Z'),
                "{field}: {text}"
            );
            text.parse()
                .unwrap_or_else(|err| panic!("{field}: {text}: {err}"))
        })
        .collect();
    let millis = |at: jiff::Timestamp| at.as_millisecond();
    assert!(millis(before) <= millis(times[0]), "{job}");
    assert!(times[0] <= times[1] && times[1] <= times[2], "{job}");
    assert!(millis(times[2]) <= millis(after), "{job}");
    let ms = job["duration_ms"].as_i64().expect("duration_ms");
    assert!(
        (ms - (millis(times[2]) - millis(times[1]))).abs() <= 2,
        "{job}"
    );

    // The Host header is an authority (RFC 3986): no user part, and a port
    // is a number below 65536.
    let port = addr.port();
    for good in [
        format!("localhost:{port}"),
        "127.0.0.1".to_owned(),
        "[::1]:80".to_owned(),
    ] {
        let (status, body) = http_to(addr, &good, "GET", "/jobs", None);
        assert_eq!(status, 200, "{good}: {body}");
    }
    for bad in [
        "localhost:99999",
        "localhost:",
        "me@localhost",
        "[::1",
        "localhost:8x",
    ] {
        let (status, body) = http_to(addr, bad, "GET", "/jobs", None);
        assert_eq!(status, 403, "{bad}: {body}");
    }
    stop(server, &log);
}

#[test]
fn readers_that_do_not_read_cost_bounded_memory_and_are_dropped() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    let (server, addr) = serve(
        Some(&fixture.dir.path().join("jobs.toml")),
        &log,
        &["--write-deadline", "3"],
    );
    let job = run_job(addr, "mebibyte", json!({}));
    assert_eq!(job["output_bytes"], 1 << 20, "{job}");
    let id = job["id"].as_u64().expect("id");
    let rss_before = proc_status_kib(server.pid(), "VmRSS");

    // Many clients ask for the finished job's output and never read it.
    const CLIENTS: usize = 400;
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            write!(
                stream,
                "GET /jobs/{id}/output HTTP/1.1\r\nHost: {addr}\r\n\r\n"
            )
            .expect("send");
            stream
        })
        .collect();
    // The cap holds for replays: 16 streams, the others refused. (Checked
    // first: the write deadline drops the 16 three seconds after they
    // stalled.)
    wait_for(addr, id, "16 watchers", |job| job["watchers"] == 16);
    let (status, body) = http_json(addr, "GET", &format!("/jobs/{id}/output"), None);
    assert_eq!(status, 429, "{body}");
    // Each stream pins its share of the buffer, not a copy: the server
    // grows by less than 256 KiB per open stream, however many ask. Watched
    // for a second, while the server answers them all.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(1) {
        let peak = proc_status_kib(server.pid(), "VmHWM");
        assert!(
            peak < rss_before + 16 * 256 + 8 * 1024,
            "peak RSS {peak} KiB (from {rss_before} KiB) with {CLIENTS} clients"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "RSS {rss_before} KiB before, peak {} KiB with {CLIENTS} clients",
        proc_status_kib(server.pid(), "VmHWM")
    );
    // Past the write deadline, the clients that took nothing are dropped,
    // and a reader gets in and gets everything.
    let freed = Instant::now();
    wait_for(addr, id, "the stalled streams to be dropped", |job| {
        job["watchers"] == 0
    });
    eprintln!("slots freed after {:?}", freed.elapsed());
    let (status, body) = http(addr, "GET", &format!("/jobs/{id}/output"), None);
    assert_eq!(status, 200);
    let events = body.matches("event: output").count();
    assert!(
        body.contains("event: exit") && events >= 64,
        "{events} events"
    );
    assert!(body.contains(&format!("id: {}\n", 1 << 20)));
    drop(clients);
    stop(server, &log);
}

#[test]
fn idle_and_trickling_connections_cannot_stop_a_job_from_starting() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    // 200 fds, of which 64 + 8 × 2 are kept: 120 for connections, 60 per
    // worker, of which 32 answer 503 over the cap: 2 × 28 = 56 served.
    let (server, addr) = serve_under(
        &["prlimit", "--nofile=200:200", "--"],
        Some(&fixture.dir.path().join("jobs.toml")),
        &log,
        &["--request-timeout", "1", "--max-running", "2"],
    );
    let head = format!(
        "POST /jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"job\":"
    );
    // A client that sends the head and a little of the body, then nothing.
    let trickle = || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(head.as_bytes()).expect("send");
        stream
    };
    // The first is counted before the others come (a request answered on
    // it: the server has seen it), so that it is not the one over the cap.
    let mut first = idle_connection(addr);
    first.write_all(head.as_bytes()).expect("send");
    let sent = Instant::now();
    // More than the fd limit: trickling ones and idle ones.
    let held: Vec<TcpStream> = (0..250)
        .map(|i| match i % 5 {
            0 => TcpStream::connect(addr).expect("connect"),
            _ => trickle(),
        })
        .collect();

    // The body that never comes gets 408 within the timeout, and the
    // connection is closed.
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut response = String::new();
    first
        .read_to_string(&mut response)
        .unwrap_or_else(|err| panic!("no 408 and close in 10 s: {err}: {response:?}"));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("did not arrive within 1 s"), "{response}");

    // A job started on a fresh connection starts and succeeds.
    let job = run_job(addr, "echo", json!({"word": "hello"}));
    assert_eq!(
        (&job["state"], &job["returncode"]),
        (&json!("exited"), &json!(0)),
        "{job}"
    );
    assert_eq!(job["output_bytes"], 6, "{job}");
    drop(held);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("Too many open files"), "{log_text}");
    assert!(
        log_text.contains("at most 56 connections served")
            && log_text.contains("at most 60 accepted per worker"),
        "{log_text}"
    );
    stop(server, &log);
}

/// A connection that has had one request answered (`GET /jobs`, 200) and
/// is kept alive, idle: the server has counted it. A 503 for a connection
/// over the cap (one closed a moment ago may not be counted out yet) is
/// tried again on a new connection, within [`PATIENCE`].
fn idle_connection(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        write!(stream, "GET /jobs HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
        let mut reader = BufReader::new(&stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        let mut length = 0;
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            reader.read_line(&mut line).expect("header");
            assert!(!line.is_empty(), "the connection closed in a head");
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a length");
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        // The whole answer is read: nothing is left buffered.
        assert!(reader.buffer().is_empty());
        if status.starts_with("HTTP/1.1 200") {
            return stream;
        }
        assert!(
            status.starts_with("HTTP/1.1 503") && Instant::now() < deadline,
            "{status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_the_connection_cap_a_request_is_answered_503_and_its_connection_closed() {
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    let (server, addr) = serve(
        Some(&fixture.dir.path().join("jobs.toml")),
        &log,
        &["--max-connections", "8", "--request-timeout", "30"],
    );
    // As many connections as the cap, idle between requests (actix-web
    // keeps one alive for 5 s).
    let idle: Vec<TcpStream> = (0..8).map(|_| idle_connection(addr)).collect();

    // One more is answered at once, not left in the listen backlog: 503,
    // a JSON error, Retry-After, and the server closes it (the request
    // asked to keep it alive).
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sent = Instant::now();
    write!(stream, "GET /jobs HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|err| panic!("no answer and close in 10 s: {err}: {response:?}"));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{response}");
    assert!(head.contains("\r\nconnection: close"), "{response}");
    assert!(head.contains("\r\nretry-after: 1"), "{response}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{response}"
    );
    let error: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{response}"));
    assert_eq!(
        error,
        json!({"error": "too many connections (cap 8); try again later"})
    );

    // Once they close, a request is served again.
    drop(idle);
    let (status, body) = http_json_patient(addr, "GET", "/jobs", None);
    assert_eq!(status, 200, "{body}");
    stop(server, &log);
}

// ---------------------------------------------------------------------
// The page, in headless Chromium
// ---------------------------------------------------------------------

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A free loopback port (free when asked: chromedriver takes it at once).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits until an element matching the XPath `xpath` exists.
async fn wait_xpath(client: &fantoccini::Client, xpath: &str) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(PATIENCE)
        .for_element(fantoccini::Locator::XPath(xpath))
        .await
    {
        Ok(element) => element,
        Err(err) => {
            let source = client.source().await.unwrap_or_default();
            panic!("no element {xpath}: {err}\n{source}")
        }
    }
}

/// Whether a browser test must be skipped here: Chromium or chromedriver
/// is missing, and `ACTIX_POPEN_REQUIRE_BROWSER` is not set (`.ci/run`
/// sets it, so that there the test runs or fails). Says so in one line.
fn no_browser_here() -> bool {
    let Some(missing) = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .find(|tool| !Path::new(tool).exists())
    else {
        return false;
    };
    let why = format!(
        "{missing} is missing: this test needs Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; .ci/run installs them)"
    );
    assert!(
        std::env::var_os("ACTIX_POPEN_REQUIRE_BROWSER").is_none(),
        "{why}"
    );
    println!("skipped: {why}");
    true
}

/// chromedriver on a free loopback port, and a headless Chromium session
/// through it with its profile in `scratch`.
async fn browser(scratch: &Path) -> (Guard, fantoccini::Client) {
    let port = free_port();
    let mut driver = Command::new(CHROMEDRIVER);
    driver
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            scratch.join("chromedriver.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let driver = Guard::spawn("chromedriver", driver);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let profile = scratch.join("chromium-profile");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1200,760",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
    (driver, client)
}

/// The page's terminal, its lines without trailing blanks and without the
/// empty lines at the end.
async fn terminal_lines(client: &fantoccini::Client) -> Result<Vec<String>, CmdError> {
    let lines = client
        .execute(
            "return window.terminalLines ? window.terminalLines() : null;",
            vec![],
        )
        .await?;
    let mut lines: Vec<String> = lines
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| line.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    Ok(lines)
}

/// Waits until the terminal's lines satisfy `done`; returns them.
async fn wait_terminal(
    client: &fantoccini::Client,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>, CmdError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = terminal_lines(client).await?;
        if done(&lines) {
            return Ok(lines);
        }
        assert!(
            Instant::now() < deadline,
            "the terminal never showed {what}: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One cell of the terminal's buffer as xterm.js's API shows it: its
/// text, its foreground colour (a palette index or 0xRRGGBB) and bold.
async fn terminal_cell(
    client: &fantoccini::Client,
    row: usize,
    col: usize,
) -> Result<Value, CmdError> {
    client
        .execute(
            "const [row, col] = arguments;
             const cell = window.demoTerminal.buffer.active.getLine(row).getCell(col);
             return { chars: cell.getChars(), fg: cell.getFgColor(),
                      palette: !!cell.isFgPalette(), rgb: !!cell.isFgRGB(),
                      bold: !!cell.isBold() };",
            vec![json!(row), json!(col)],
        )
        .await
}

/// Starts `job` from the page's form (with its default parameters) and
/// waits until it has exited with 0.
async fn start_from_the_page(client: &fantoccini::Client, job: &str) -> Result<(), CmdError> {
    use fantoccini::Locator::Css;
    wait_xpath(
        client,
        &format!("//select[@id='job']/option[@value='{job}']"),
    )
    .await;
    client.find(Css("#job")).await?.select_by_value(job).await?;
    client.find(Css("#start")).await?.click().await?;
    wait_xpath(
        client,
        &format!("//h2[@id='title'][contains(., ': {job}')]"),
    )
    .await;
    wait_xpath(client, "//b[@id='state'][.='exited']").await;
    wait_xpath(client, "//b[@id='returncode'][.='0']").await;
    Ok(())
}

/// Saves a screenshot of the page as `target/demo_server_{name}.png`.
async fn screenshot(client: &fantoccini::Client, name: &str) -> Result<(), CmdError> {
    let png = client.screenshot().await?;
    let path = target_dir().join(format!("demo_server_{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

use fantoccini::error::CmdError;

#[actix_web::test]
async fn the_page_runs_watches_and_cancels_a_job_in_chromium() {
    use fantoccini::Locator::Css;
    if no_browser_here() {
        return;
    }

    let scratch = tempfile::tempdir().expect("temp dir");
    // The shipped jobs file: the page as a user sees it.
    let log = scratch.path().join("server.log");
    let (server, addr) = serve(None, &log, &[]);
    let (_driver, client) = browser(scratch.path()).await;

    let result = async {
        client.goto(&format!("http://{addr}/")).await?;
        // The form is built from GET /jobs/definitions.
        wait_xpath(&client, "//select[@id='job']/option[@value='count']").await;
        client
            .find(Css("#job"))
            .await?
            .select_by_value("count")
            .await?;
        let n = wait_xpath(&client, "//div[@id='params']/input[@name='n']").await;
        n.clear().await?;
        n.send_keys("500").await?;
        client.find(Css("#start")).await?.click().await?;

        // Live output, while the job runs.
        wait_terminal(&client, "line 3", |lines| {
            lines.iter().any(|line| line == "line 3")
        })
        .await?;
        // Queued a moment, then running (the page refreshes on output).
        wait_xpath(&client, "//b[@id='state'][.='running']").await;
        wait_xpath(&client, "//tbody[@id='jobs']/tr/td[.='running']").await;

        // Cancel: SIGTERM, the return code shows.
        client.find(Css("#cancel")).await?.click().await?;
        wait_xpath(&client, "//b[@id='state'][.='cancelled']").await;
        wait_xpath(&client, "//b[@id='returncode'][.='-15']").await;
        let output = terminal_lines(&client).await?;
        assert!(
            !output.iter().any(|line| line == "line 500"),
            "cancelled before the end: {output:?}"
        );

        // ANSI colours are rendered, not shown as escape codes.
        start_from_the_page(&client, "colors").await?;
        let output = wait_terminal(&client, "six lines", |lines| lines.len() == 6).await?;
        assert_eq!(output[5], "colour 36 bold 36");
        assert!(output.iter().all(|line| !line.contains("[3")), "{output:?}");
        // "bold 36": bold, palette colour 6 (cyan).
        let cell = terminal_cell(&client, 5, 10).await?;
        assert_eq!(
            cell,
            json!({"chars": "b", "fg": 6, "palette": true, "rgb": false, "bold": true})
        );
        wait_xpath(&client, "//tbody[@id='jobs'][count(tr)=2]").await;
        screenshot(&client, "page").await
    }
    .await;
    let _ = client.close().await;
    result.expect("WebDriver commands");
    // The server stops on Ctrl-C, as a user would stop it.
    stop(server, &log);
}

#[actix_web::test]
async fn the_page_shows_tool_output_as_a_terminal_would() {
    if no_browser_here() {
        return;
    }
    let fixture = fixture();
    let log = fixture.dir.path().join("server.log");
    // Streams idle for a second end (and the page reconnects).
    let (server, addr) = serve(
        Some(&fixture.dir.path().join("jobs.toml")),
        &log,
        &["--idle-stream", "1"],
    );
    let (_driver, client) = browser(fixture.dir.path()).await;

    let result = async {
        client.goto(&format!("http://{addr}/")).await?;

        // 256-colour and truecolor codes, with bold.
        start_from_the_page(&client, "sgr").await?;
        let lines = wait_terminal(&client, "two lines", |lines| lines.len() == 2).await?;
        assert_eq!(lines, ["red256 greenbold", "plain"]);
        let red = terminal_cell(&client, 0, 0).await?;
        assert_eq!(
            red,
            json!({"chars": "r", "fg": 196, "palette": true, "rgb": false, "bold": false})
        );
        let green = terminal_cell(&client, 0, 7).await?;
        assert_eq!(
            green,
            json!({"chars": "g", "fg": 0x0a_c8_1e, "palette": false, "rgb": true, "bold": true})
        );
        screenshot(&client, "sgr").await?;

        // An OSC 8 link ended by ESC \, and every line after it.
        start_from_the_page(&client, "osc8").await?;
        let lines = wait_terminal(&client, "six lines", |lines| lines.len() == 6).await?;
        assert_eq!(
            lines,
            [
                "link text",
                "after 1",
                "after 2",
                "after 3",
                "after 4",
                "after 5"
            ]
        );
        screenshot(&client, "osc8").await?;

        // `\r` progress: the line shows its last state only.
        start_from_the_page(&client, "progress").await?;
        let lines = wait_terminal(&client, "two lines", |lines| lines.len() == 2).await?;
        assert_eq!(lines, ["progress 100%", "done"]);
        screenshot(&client, "progress").await?;

        // A job quiet for longer than the idle limit: its stream ends,
        // EventSource reconnects with Last-Event-ID, and each line shows
        // once, with no error.
        start_from_the_page(&client, "quiet").await?;
        let lines = wait_terminal(&client, "after", |lines| {
            lines.last().is_some_and(|line| line == "after")
        })
        .await?;
        assert_eq!(lines, ["before", "after"]);
        let title = client
            .find(fantoccini::Locator::Css("#title"))
            .await?
            .text()
            .await?;
        let id = title
            .strip_prefix("Job ")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("{title}"));
        let request = format!("GET /jobs/{id}/output ");
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            log_text.matches(&request).count() >= 2,
            "the page did not reconnect:\n{log_text}"
        );

        // A 3,000-character line wraps in the terminal: the page does not
        // grow, and Cancel stays in view.
        start_from_the_page(&client, "longline").await?;
        let lines = wait_terminal(&client, "the end", |lines| {
            lines.last().is_some_and(|line| line == "end")
        })
        .await?;
        let xs: usize = lines.iter().map(|line| line.matches('x').count()).sum();
        assert_eq!(xs, 3000, "{lines:#?}");
        let layout = client
            .execute(
                "const r = document.getElementById('cancel').getBoundingClientRect();
                 return { left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                          width: window.innerWidth, height: window.innerHeight,
                          page: document.documentElement.scrollWidth };",
                vec![],
            )
            .await?;
        let number = |key: &str| layout[key].as_f64().unwrap_or(f64::NAN);
        assert!(
            number("left") >= 0.0
                && number("top") >= 0.0
                && number("right") <= number("width")
                && number("bottom") <= number("height")
                && number("page") <= number("width"),
            "Cancel out of view, or the page wider than the window: {layout}"
        );
        screenshot(&client, "longline").await
    }
    .await;
    let _ = client.close().await;
    result.expect("WebDriver commands");
    stop(server, &log);
}
