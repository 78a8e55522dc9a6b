//! `pipeline`: run `a | b | c` as PopenProcess actors and print each stage's status.
//!
//! ```text
//! cargo run --example pipeline -- [--pipefail] 'CMD1' 'CMD2' ['CMD3'...]
//! ```
//!
//! Each CMD is a program and its arguments, split on whitespace (no shell
//! is involved). The last stage's output goes to our stdout; every stage's
//! stderr to our stderr. Afterwards each stage's return code is printed on
//! stderr, like bash's `PIPESTATUS`, and the pipeline's status is our exit
//! status. With no CMD it runs `seq 1 100000 | grep 7 | wc -l`. A stage
//! that cannot be started stops the whole pipeline: we exit 127 if its
//! program was not found and 126 otherwise, as a shell would; an empty
//! stage is bad usage (2).

use std::io::Write;
use std::process::ExitCode;

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Chunk, CloseStream, OutputStream, OutputTo, PipeStatus, Pipeline, PipelineError,
    Popen,
};
use clap::Parser;

/// Run a pipeline of commands as PopenProcess actors.
#[derive(Debug, Parser)]
#[command(name = "pipeline")]
struct Args {
    /// The pipeline's status is the last non-zero stage's (bash's pipefail).
    #[arg(long)]
    pipefail: bool,
    /// The stages, each a program and its arguments in one word.
    #[arg(value_name = "CMD")]
    stages: Vec<String>,
}

/// Writes the last stage's output to our stdout as it arrives.
struct Print {
    out: std::io::Stdout,
    /// The last stage, told when our stdout's reader went away.
    last: Option<Recipient<CloseStream>>,
    closed: bool,
}

impl Actor for Print {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Print {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        let mut out = self.out.lock();
        if let Err(err) = out.write_all(&chunk.data).and_then(|()| out.flush()) {
            // As in a shell (`pipeline yes cat | head -1`): the last
            // stage's next write gets SIGPIPE, the stages before it get
            // theirs in turn, and every status is still known.
            self.closed = true;
            if err.kind() != std::io::ErrorKind::BrokenPipe {
                say(format_args!("pipeline: writing the output: {err}"));
            }
            if let Some(last) = &self.last {
                last.do_send(CloseStream(OutputStream::Stdout));
            }
        }
    }
}

/// Tells the printer which stage it prints.
#[derive(Message)]
#[rtype(result = "()")]
struct Attach(Recipient<CloseStream>);

impl Handler<Attach> for Print {
    type Result = ();

    fn handle(&mut self, Attach(last): Attach, _ctx: &mut Context<Self>) {
        if self.closed {
            last.do_send(CloseStream(OutputStream::Stdout));
        }
        self.last = Some(last);
    }
}

/// Why the pipeline did not run to its end, with our exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn other(err: impl std::fmt::Display) -> Failure {
        Failure {
            status: 126,
            message: err.to_string(),
        }
    }
}

/// A line on stderr; a closed stderr must not change our exit status.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn run(args: Args) -> Result<u8, Failure> {
    let stages = if args.stages.is_empty() {
        vec![
            "seq 1 100000".to_owned(),
            "grep 7".to_owned(),
            "wc -l".to_owned(),
        ]
    } else {
        args.stages
    };
    let print = Print {
        out: std::io::stdout(),
        last: None,
        closed: false,
    }
    .start();
    let mut pipeline = Pipeline::new().pipefail(args.pipefail);
    let last = stages.len() - 1;
    for (index, stage) in stages.iter().enumerate() {
        let mut words = stage.split_whitespace();
        let program = words.next().ok_or_else(|| Failure {
            status: 2,
            message: format!("stage {index} is empty"),
        })?;
        let mut popen = Popen::new(program).args(words).stderr(OutputTo::Inherit);
        if index == last {
            popen = popen.subscribe(print.clone().recipient());
        }
        pipeline = pipeline.stage(popen);
    }
    let running = pipeline.start().map_err(|err| Failure {
        // As a shell: 127 for a command not found, 126 for one that could
        // not be run.
        status: match &err {
            PipelineError::Spawn { source, .. } => source.shell_status(),
            _ => 126,
        },
        message: err.to_string(),
    })?;
    if let Some(last) = running.stages().last() {
        print.do_send(Attach(last.clone().into_addr().recipient()));
    }
    let code = running
        .send(AsyncWait)
        .await
        .map_err(Failure::other)?
        .map_err(Failure::other)?;
    let statuses = running.send(PipeStatus).await.map_err(Failure::other)?;
    for (stage, status) in stages.iter().zip(statuses) {
        let status = status.map_or_else(|| "running".to_owned(), |code| code.to_string());
        say(format_args!("{status:>5}  {stage}"));
    }
    say(format_args!("pipeline: {code}"));
    Ok(code.shell_status())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match System::new().block_on(run(args)) {
        Ok(status) => ExitCode::from(status),
        Err(Failure { status, message }) => {
            say(format_args!("pipeline: {message}"));
            ExitCode::from(status)
        }
    }
}
