//! The HTTP side: routes, JSON errors, and the output as Server-Sent Events.
//!
//! | route                     | does                                             |
//! |---------------------------|--------------------------------------------------|
//! | `GET /`                   | the page (`index.html`)                          |
//! | `GET /static/xterm-6.0.0/…` | xterm.js and its CSS, for the page (`assets.rs`) |
//! | `GET /jobs/definitions`   | the allow-listed jobs and their parameters       |
//! | `POST /jobs`              | `{"job": "count", "params": {"n": "5"}}`: 201, queued; 429 if the queue is full |
//! | `GET /jobs`               | every job kept, oldest first                     |
//! | `GET /jobs/{id}`          | one job                                          |
//! | `DELETE /jobs/{id}`       | cancel it: 202, or 409 if it has ended           |
//! | `GET /jobs/{id}/output`   | its output so far, then live, as SSE             |
//!
//! Every error is JSON, `{"error": "..."}`, with a 4xx status saying what was
//! wrong, including the errors actix-web itself raises (malformed JSON, body
//! too large, wrong content type, bad path, unknown route or method), or a
//! 503: the server is shutting down, or the request came on a connection
//! accepted over the connection cap (with `Retry-After: 1` and
//! `Connection: close`; see `connections.rs`).
//!
//! # DNS rebinding
//! A page on another site cannot read this server's answers (the browser's
//! same-origin policy), unless it makes its own name point to this server:
//! `evil.example` resolves to the attacker's machine for the page, then to
//! 127.0.0.1, and the page's requests, same-origin as far as the browser
//! knows, reach a server on loopback. They still carry `Host:
//! evil.example`, so every route first checks the `Host` header (and the
//! authority of an absolute request URI) against [`AllowedHosts`] and
//! answers 403 to any other name. A request with neither did not come from
//! a browser (browsers always send `Host`) and is let through.
//!
//! # The event stream
//! `GET /jobs/{id}/output` sends
//! * `event: output`, `data: {"offset": N, "data": "BASE64"}`: bytes of the
//!   job's output (stdout and stderr merged), base64 so that every byte
//!   arrives as written, even non-UTF-8 bytes or a UTF-8 character cut in
//!   two by a read; `offset` is the position of the first byte in all the
//!   job wrote, so a gap shows where old output was dropped. Each has
//!   `id: END` (the offset after it): a client that reconnects sends it back
//!   as `Last-Event-ID` and resumes there, as `EventSource` does by itself.
//! * `event: exit`, `data: JOB`: the job as `GET /jobs/{id}` shows it, with
//!   its `state` and `returncode`. The stream ends after it.
//! * `: keep-alive` comments while nothing happens.
//! * once the stream has sent no `output` for `--idle-stream` (since it
//!   opened, or since the last one; keep-alives do not count), a comment
//!   and `retry: 1000`, and the stream ends, freeing its watcher's place.
//!   `EventSource` reconnects by itself a second later with
//!   `Last-Event-ID`, and resumes where the stream ended: a live page loses
//!   nothing, and a client that has gone without closing its connection
//!   does not hold a place on a quiet job for ever.
//!
//! A client that does not keep up with its queue is dropped: its stream
//! ends without `exit`, and it can reconnect with `Last-Event-ID`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, MailboxError};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::uri::Authority;
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connections::Counted;
use crate::definitions::{Definitions, RequestError};
use crate::registry::{
    CancelJob, Event, GetJob, JobError, Jobs, ListJobs, StartJob, Watch, WatchJob,
};

/// Everything the routes need; each HTTP worker gets a clone.
#[derive(Debug, Clone)]
pub struct Api {
    pub jobs: Addr<Jobs>,
    pub definitions: Arc<Definitions>,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// How long a request's body may take to arrive (408 after that).
    pub body_timeout: Duration,
    /// How long an output stream may deliver no output before it ends.
    pub idle_stream: Duration,
    /// The names a request's `Host` may give.
    pub hosts: Arc<AllowedHosts>,
}

impl Api {
    /// Registers the routes, with JSON errors for bad bodies and paths,
    /// behind the `Host` check.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let hosts = self.hosts.clone();
        // One scope that matches every path, so that the check also covers
        // unknown routes and methods.
        // The last `wrap` runs first: a connection over the cap is answered
        // before anything else is looked at.
        let routes = web::scope("")
            .wrap(from_fn(move |req, next| {
                check_host(hosts.clone(), req, next)
            }))
            .wrap(from_fn(check_connection));
        cfg.app_data(web::Data::new(self.jobs.clone()))
            .app_data(web::Data::new(BodyTimeout(self.body_timeout)))
            .app_data(web::Data::new(IdleStream(self.idle_stream)))
            .app_data(web::Data::from(self.definitions.clone()))
            .app_data(
                web::JsonConfig::default()
                    .limit(self.max_body)
                    .error_handler(json_error),
            )
            .app_data(web::PathConfig::default().error_handler(path_error))
            .service(routes.configure(Api::routes));
    }

    fn routes(cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::resource("/")
                .get(index)
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/jobs/definitions")
                .get(definitions)
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/jobs")
                .get(list)
                .post(start)
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/jobs/{id}")
                .get(get)
                .delete(cancel)
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/jobs/{id}/output")
                .get(output)
                .default_service(web::to(method_not_allowed)),
        )
        .configure(crate::assets::routes)
        .default_service(web::to(not_found));
    }
}

/// What went wrong with a request; it answers as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    BodyTimeout(Duration),
    #[error("request body too large: the limit is {0} bytes")]
    TooLarge(usize),
    #[error("the body must be JSON, with Content-Type: application/json")]
    ContentType,
    #[error("no job with id {0:?}")]
    BadId(String),
    #[error("no such page: {0}")]
    NotFound(String),
    #[error("method {0} is not allowed on {1}")]
    MethodNotAllowed(String, String),
    #[error("host {0:?} is not allowed: the server answers to {1} (--allow-host adds a name)")]
    ForbiddenHost(String, String),
    #[error("the server is shutting down")]
    Gone(#[from] MailboxError),
    #[error("too many connections (cap {0}); try again later")]
    TooManyConnections(usize),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Request(_) | ApiError::MalformedJson(_) | ApiError::InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Job(JobError::UnknownId(_)) | ApiError::BadId(_) | ApiError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Job(JobError::QueueFull { .. } | JobError::TooManyWatchers { .. }) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Job(JobError::AlreadyEnded { .. }) => StatusCode::CONFLICT,
            ApiError::Job(JobError::ShuttingDown)
            | ApiError::Gone(_)
            | ApiError::TooManyConnections(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ForbiddenHost(..) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        let busy = matches!(self, ApiError::TooManyConnections(_));
        if busy || self.status_code() == StatusCode::TOO_MANY_REQUESTS {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if busy || matches!(self, ApiError::BodyTimeout(_)) {
            // The rest of a body may still come, or the connection is one
            // too many: it cannot carry another request.
            response.force_close();
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// The names a request's `Host` may give (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Every IP literal is allowed (the server listens on all addresses).
    any_ip: bool,
    ips: Vec<IpAddr>,
    /// Lowercase.
    names: Vec<String>,
}

impl AllowedHosts {
    /// The names for a server bound to `bind`: on loopback, `localhost`,
    /// `127.0.0.1`, `[::1]` and `bind` itself; on the unspecified address
    /// (`0.0.0.0`, `::`), those names and every IP literal; on any other
    /// address, that address. `extra` names (`--allow-host`) are allowed
    /// in every case.
    ///
    /// # Errors
    /// An extra name that is not a host name or an IP address (a port, a
    /// path, a space).
    pub fn new(bind: IpAddr, extra: &[String]) -> Result<AllowedHosts, String> {
        let local = bind.is_loopback() || bind.is_unspecified();
        let mut allowed = AllowedHosts {
            any_ip: bind.is_unspecified(),
            ips: vec![bind],
            names: Vec::new(),
        };
        if local {
            allowed.ips.extend([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
            allowed.names.push("localhost".to_owned());
        }
        for name in extra {
            // A bare IPv6 address is welcome too.
            match name.parse::<IpAddr>().ok().or_else(|| host_ip(name)) {
                Some(ip) => allowed.ips.push(ip),
                None if is_host_name(name) => allowed.names.push(name.to_ascii_lowercase()),
                None => {
                    return Err(format!(
                        "--allow-host {name:?}: not a host name or an IP address"
                    ))
                }
            }
        }
        allowed.ips.dedup();
        Ok(allowed)
    }

    /// Whether `host`, a `Host` header's value (`name`, `name:port`,
    /// `1.2.3.4:port`, `[::1]:port`), names this server.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        match host_ip(name) {
            Some(ip) => self.any_ip || self.ips.contains(&ip),
            None => self
                .names
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name)),
        }
    }

    /// The allowed names, for the error message.
    fn describe(&self) -> String {
        let ips = self.ips.iter().map(|ip| match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        });
        let mut all: Vec<String> = self.names.iter().cloned().chain(ips).collect();
        if self.any_ip {
            all.push("any IP address".to_owned());
        }
        all.join(", ")
    }
}

/// `host` (a `Host` header's value) without its `:port`, as `http`'s
/// [`Authority`] parses it; `None` for anything else: a user part, an
/// empty or out-of-range port, an unclosed bracket, a space.
fn host_name(host: &str) -> Option<&str> {
    let authority: Authority = host.parse().ok()?;
    let name = authority.host();
    // Nothing before the name (no `user@`), and a valid port if any.
    let port_ok = match host.strip_prefix(name)? {
        "" => true,
        _ => authority.port_u16().is_some(),
    };
    port_ok.then(|| &host[..name.len()])
}

/// The address of an IP literal as a URL writes it: `1.2.3.4` or `[::1]`.
fn host_ip(name: &str) -> Option<IpAddr> {
    match name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Letters, digits, `-` and `.`, as DNS names are written.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Refuses, before any route runs, a request whose `Host` (or absolute
/// URI) names another server: what a DNS-rebinding page's requests do.
async fn check_host(
    hosts: Arc<AllowedHosts>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    let header = req.headers().get(header::HOST).map(|value| {
        // A value that is not text cannot name an allowed host.
        value.to_str().unwrap_or("\u{fffd}").to_owned()
    });
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if let Some(host) = header
        .into_iter()
        .chain(authority)
        .find(|host| !hosts.allows(host))
    {
        let refused = ApiError::ForbiddenHost(host, hosts.describe());
        return Ok(req.into_response(refused.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Answers 503 (and closes the connection) to a request on a connection
/// accepted over the cap (see `connections.rs`).
async fn check_connection(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    if let Some(cap) = req.conn_data::<Counted>().and_then(Counted::over_cap) {
        let refused = ApiError::TooManyConnections(cap);
        return Ok(req.into_response(refused.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Turns actix-web's own JSON body errors into ours.
fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::TooLarge(*limit),
        JsonPayloadError::ContentType => ApiError::ContentType,
        // Well-formed JSON of the wrong shape: a missing or unknown field.
        JsonPayloadError::Deserialize(err) if err.is_data() => {
            ApiError::InvalidRequest(err.to_string())
        }
        JsonPayloadError::Deserialize(err) => ApiError::MalformedJson(err.to_string()),
        other => ApiError::MalformedJson(other.to_string()),
    };
    api.into()
}

/// Turns a path that does not parse (`/jobs/abc`) into a JSON 404.
fn path_error(_err: PathError, req: &HttpRequest) -> actix_web::Error {
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    ApiError::BadId(id).into()
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_owned()))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(
        req.method().to_string(),
        req.path().to_owned(),
    ))
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../index.html"))
}

async fn definitions(definitions: web::Data<Definitions>) -> HttpResponse {
    let views: Vec<_> = definitions.jobs().map(|job| job.view()).collect();
    HttpResponse::Ok().json(views)
}

/// The body of `POST /jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    job: String,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
}

/// How long a request's body may take to arrive.
#[derive(Debug, Clone, Copy)]
struct BodyTimeout(Duration);

/// How long an output stream may deliver no output before it ends.
#[derive(Debug, Clone, Copy)]
struct IdleStream(Duration);

/// `POST /jobs`. The body is read within the body timeout (408 after it),
/// so a client that sends the head and then trickles, or never sends, the
/// body cannot hold its connection for long.
async fn start(
    jobs: web::Data<Addr<Jobs>>,
    definitions: web::Data<Definitions>,
    timeout: web::Data<BodyTimeout>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let mut payload = payload.into_inner();
    let read = web::Json::<StartRequest>::from_request(&req, &mut payload);
    let body = actix_rt::time::timeout(timeout.0, read)
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout.0))??;
    let StartRequest { job, params } = body.into_inner();
    let mut values = BTreeMap::new();
    for (name, value) in params {
        // Numbers are welcome for integer parameters; they are checked as
        // text like everything else.
        let text = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                return Err(ApiError::from(RequestError::BadParam {
                    name,
                    reason: "must be a string or an integer".to_owned(),
                })
                .into())
            }
        };
        values.insert(name, text);
    }
    let launch = definitions.check(&job, values).map_err(ApiError::from)?;
    let view = jobs
        .send(StartJob(launch))
        .await
        .map_err(ApiError::from)?
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/jobs/{}", view.id)))
        .json(view))
}

async fn list(jobs: web::Data<Addr<Jobs>>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(jobs.send(ListJobs).await?))
}

async fn get(jobs: web::Data<Addr<Jobs>>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(jobs.send(GetJob(*id)).await??))
}

async fn cancel(jobs: web::Data<Addr<Jobs>>, id: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(jobs.send(CancelJob(*id)).await??))
}

async fn output(
    jobs: web::Data<Addr<Jobs>>,
    idle: web::Data<IdleStream>,
    id: web::Path<u64>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let from = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|value: &HeaderValue| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let Watch { replay, live, slot } = jobs.send(WatchJob { id: *id, from }).await??;
    let frames = futures::stream::iter(replay)
        .map(Frame::Event)
        .chain(live_frames(live, idle.0));
    // The stream holds its watcher's place until it ends, or until
    // actix-web drops it (the client went away).
    let body = futures::stream::unfold((Box::pin(frames), slot), |(mut frames, slot)| async move {
        let frame = frames.next().await?;
        Some((Ok::<_, Infallible>(sse(&frame)), (frames, slot)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells a reverse proxy (nginx) not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// What an output stream sends.
#[derive(Debug)]
enum Frame {
    Event(Event),
    /// The end of a stream that delivered no output for this long.
    Idle(Duration),
}

/// How long a client whose stream ended idle is asked to wait before it
/// reconnects (SSE `retry:`).
const RECONNECT: Duration = Duration::from_secs(1);

/// The longest idle limit applied: a year.
const MAX_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The live events (none if `live` is `None`). They end when the registry
/// drops the sender (after the exit, or when this client fell behind), or,
/// with a last [`Frame::Idle`], once `idle` has passed with no output
/// event: since the stream opened (its replay counts as delivered then),
/// or since the last one. If the client goes away, actix-web drops this
/// stream, and with it the receiver: the registry drops the sender at its
/// next event.
fn live_frames(
    live: Option<mpsc::Receiver<Event>>,
    idle: Duration,
) -> impl futures::Stream<Item = Frame> {
    // A year stands for longer limits (the clock cannot overflow).
    let idle = idle.min(MAX_IDLE);
    let state = live.map(|receiver| (receiver, Instant::now() + idle));
    futures::stream::unfold(state, move |state| async move {
        let (mut receiver, deadline) = state?;
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(event)) => {
                let deadline = match event {
                    Event::Output { .. } => Instant::now() + idle,
                    Event::Exit(_) | Event::KeepAlive => deadline,
                };
                Some((Frame::Event(event), Some((receiver, deadline))))
            }
            Ok(None) => None,
            Err(_) => Some((Frame::Idle(idle), None)),
        }
    })
}

/// One frame in the SSE wire format (see the module docs).
fn sse(frame: &Frame) -> Bytes {
    let text = match frame {
        Frame::Event(Event::Output { offset, data }) => {
            let end = offset + data.len() as u64;
            let json = serde_json::json!({
                "offset": offset,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            });
            format!("event: output\nid: {end}\ndata: {json}\n\n")
        }
        Frame::Event(Event::Exit(job)) => {
            // A JobView is strings, numbers and maps: it always serializes.
            let job = serde_json::to_string(job).unwrap_or_default();
            format!("event: exit\ndata: {job}\n\n")
        }
        Frame::Event(Event::KeepAlive) => ": keep-alive\n\n".to_owned(),
        Frame::Idle(idle) => format!(
            ": no output for {} s: reconnect, with Last-Event-ID, to watch on\nretry: {}\n\n",
            idle.as_secs_f64(),
            RECONNECT.as_millis()
        ),
    };
    Bytes::from(text)
}
