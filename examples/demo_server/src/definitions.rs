//! The allow-list: the jobs a request may start, read from a TOML file, and
//! the check that turns a request's parameters into a command line.
//!
//! A request names a job and gives values for its parameters; it never
//! supplies a program or an argument of its own. Each parameter has a fixed
//! place in the job's argv, and its value is validated before anything runs:
//! at most [`MAX_VALUE_LEN`] bytes, no control characters, then the
//! parameter's own rule, an integer range (the value passed on is the
//! integer written canonically) or a regular expression that must match the
//! whole value. A value is always one whole argument, never spliced into a
//! string, so no shell ever parses it.
//!
//! A job whose program is a shell must say `shell = true`, and its arguments
//! must then be `-c SCRIPT NAME` followed by parameters only: the script
//! reads them as `"$1"`, `"$2"`, … (`sh -c 'script' sh "$1"`). Other
//! interpreters (`python3 -c`, `perl -e`) are not recognised: don't list
//! them with a parameter in the code position.
//!
//! Every job runs with an empty environment plus `PATH` and `LANG`, stdin
//! from `/dev/null`, and stderr merged into stdout in the order written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_popen::{InputFrom, OutputTo, Popen};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The longest parameter value accepted, in bytes, whatever its rule.
pub const MAX_VALUE_LEN: usize = 256;

/// The `PATH` jobs run with; a program without a `/` is looked up here.
const JOB_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Programs that run their arguments as code: a job running one of them
/// must say `shell = true`.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox"];

/// Names of jobs and parameters.
const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]{0,31}$";

// ---------------------------------------------------------------------
// The file, as written
// ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    jobs: BTreeMap<String, JobEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobEntry {
    #[serde(default)]
    description: String,
    program: String,
    #[serde(default)]
    args: Vec<ArgEntry>,
    #[serde(default)]
    shell: bool,
    dir: Option<PathBuf>,
    /// Seconds; the job is cancelled once it has run this long.
    timeout: f64,
    /// Seconds between SIGTERM and SIGKILL.
    cancel_timeout: f64,
    #[serde(default)]
    params: BTreeMap<String, ParamEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = r#"a string, or { param = "NAME" }"#)]
enum ArgEntry {
    Fixed(String),
    Param { param: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamEntry {
    #[serde(default)]
    description: String,
    range: Option<[i64; 2]>,
    pattern: Option<String>,
    default: Option<String>,
}

// ---------------------------------------------------------------------
// The checked definitions
// ---------------------------------------------------------------------

/// Every job that may run, by name.
#[derive(Debug)]
pub struct Definitions {
    jobs: BTreeMap<String, JobDefinition>,
}

/// One allow-listed job.
#[derive(Debug)]
pub struct JobDefinition {
    name: String,
    description: String,
    program: String,
    args: Vec<Arg>,
    dir: Option<PathBuf>,
    timeout: Duration,
    cancel_timeout: Duration,
    params: BTreeMap<String, Param>,
}

#[derive(Debug)]
enum Arg {
    Fixed(String),
    Param(String),
}

#[derive(Debug)]
struct Param {
    description: String,
    rule: Rule,
    default: Option<String>,
}

#[derive(Debug)]
enum Rule {
    /// An integer from the first to the second, inclusive.
    Range(i64, i64),
    /// The pattern as written, and compiled to match whole values only.
    Pattern(String, Regex),
}

/// Why the jobs file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A job's definition breaks a rule of the allow-list.
    #[error("{}: job `{job}`: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        job: String,
        reason: String,
    },
}

/// Why a request cannot start a job: the API answers 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("unknown job `{job}` (the jobs are: {known})")]
    UnknownJob { job: String, known: String },
    #[error("unknown parameter `{name}` for job `{job}` ({takes})")]
    UnknownParam {
        job: String,
        name: String,
        takes: String,
    },
    #[error("missing parameter `{name}` for job `{job}`: {rule}")]
    MissingParam {
        job: String,
        name: String,
        rule: String,
    },
    #[error("bad parameter `{name}`: {reason}")]
    BadParam { name: String, reason: String },
}

/// A request that passed the allow-list: everything needed to run it.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The job's name.
    pub job: String,
    /// Every parameter's value, as passed on (defaults filled in).
    pub params: BTreeMap<String, String>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The working directory, if the job sets one.
    pub dir: Option<PathBuf>,
    /// How long the job may run before it is cancelled.
    pub timeout: Duration,
    /// The grace between SIGTERM and SIGKILL.
    pub cancel_timeout: Duration,
}

impl Launch {
    /// The child process, not yet started: argv as checked, an empty
    /// environment but for `PATH` and `LANG`, stdin from `/dev/null`, stderr
    /// merged into stdout.
    pub fn popen(&self) -> Popen {
        let mut popen = Popen::new(&self.argv[0])
            .args(&self.argv[1..])
            .env_clear()
            .env("PATH", JOB_PATH)
            .env("LANG", "C.UTF-8")
            .stdin(InputFrom::Null)
            .stderr(OutputTo::MergeIntoStdout)
            .cancel_timeout(self.cancel_timeout);
        if let Some(dir) = &self.dir {
            popen = popen.current_dir(dir);
        }
        popen
    }
}

impl Definitions {
    /// Reads and checks the jobs file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML of the expected shape, or
    /// a job breaks a rule (see [`Definitions::parse`]).
    pub fn load(path: &Path) -> Result<Definitions, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Definitions::parse(&text, path)
    }

    /// Checks the jobs file `text` (`path` only names it in errors).
    ///
    /// # Errors
    /// Unknown keys, a name that is not `[a-z][a-z0-9_-]{0,31}`, a
    /// timeout that is not a positive number of seconds, a parameter with
    /// no rule or two, a pattern that does not compile, a default its own
    /// rule refuses, a parameter that is never used or used but not
    /// declared, a shell job without `shell = true` or with a parameter
    /// before `-c SCRIPT NAME`.
    pub fn parse(text: &str, path: &Path) -> Result<Definitions, LoadError> {
        let file: JobsFile = toml::from_str(text).map_err(|source| LoadError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut jobs = BTreeMap::new();
        for (name, entry) in file.jobs {
            let job = JobDefinition::check(&name, entry).map_err(|reason| LoadError::Invalid {
                path: path.to_owned(),
                job: name.clone(),
                reason,
            })?;
            jobs.insert(name, job);
        }
        Ok(Definitions { jobs })
    }

    /// The jobs, by name.
    pub fn jobs(&self) -> impl Iterator<Item = &JobDefinition> {
        self.jobs.values()
    }

    /// Checks a request to run `job` with `params` against the allow-list.
    ///
    /// # Errors
    /// An unknown job, an unknown or missing parameter, or a value its rule
    /// refuses: the error names the job or parameter and says why.
    pub fn check(
        &self,
        job: &str,
        params: BTreeMap<String, String>,
    ) -> Result<Launch, RequestError> {
        let definition = self.jobs.get(job).ok_or_else(|| RequestError::UnknownJob {
            job: job.to_owned(),
            known: self.jobs.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        definition.launch(params)
    }
}

impl JobDefinition {
    fn check(name: &str, entry: JobEntry) -> Result<JobDefinition, String> {
        let names = Regex::new(NAME_PATTERN).map_err(|err| err.to_string())?;
        if !names.is_match(name) {
            return Err(format!("a job name must match {NAME_PATTERN}"));
        }
        if entry.program.is_empty() {
            return Err("`program` is empty".to_owned());
        }
        let seconds = |what: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("`{what}` must be a positive number of seconds"))
        };
        let timeout = seconds("timeout", entry.timeout)?;
        let cancel_timeout = seconds("cancel_timeout", entry.cancel_timeout)?;

        let mut params = BTreeMap::new();
        for (param, p) in entry.params {
            if !names.is_match(&param) {
                return Err(format!(
                    "parameter name `{param}` must match {NAME_PATTERN}"
                ));
            }
            let rule = match (p.range, p.pattern) {
                (Some([min, max]), None) if min <= max => Rule::Range(min, max),
                (Some(_), None) => return Err(format!("parameter `{param}`: empty range")),
                (None, Some(pattern)) => {
                    let whole = Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|err| format!("parameter `{param}`: {err}"))?;
                    Rule::Pattern(pattern, whole)
                }
                _ => {
                    return Err(format!(
                        "parameter `{param}` needs exactly one of `range` and `pattern`"
                    ))
                }
            };
            if let Some(default) = &p.default {
                rule.check(default)
                    .map_err(|reason| format!("parameter `{param}`: default {reason}"))?;
            }
            params.insert(
                param,
                Param {
                    description: p.description,
                    rule,
                    default: p.default,
                },
            );
        }

        let args: Vec<Arg> = entry
            .args
            .into_iter()
            .map(|arg| match arg {
                ArgEntry::Fixed(text) => Arg::Fixed(text),
                ArgEntry::Param { param } => Arg::Param(param),
            })
            .collect();
        for arg in &args {
            if let Arg::Param(param) = arg {
                if !params.contains_key(param) {
                    return Err(format!("argument {{ param = {param:?} }} is not declared"));
                }
            }
        }
        for param in params.keys() {
            if !args
                .iter()
                .any(|arg| matches!(arg, Arg::Param(p) if p == param))
            {
                return Err(format!("parameter `{param}` is declared but never used"));
            }
        }

        let program_name = Path::new(&entry.program)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if SHELLS.contains(&program_name.as_str()) && !entry.shell {
            return Err(format!(
                "`{}` is a shell: say `shell = true` to run it",
                entry.program
            ));
        }
        if entry.shell {
            // `-c SCRIPT NAME` first, all three fixed; parameters only after,
            // where the script sees them as "$1", "$2", …
            let layout =
                matches!(&args[..], [Arg::Fixed(c), Arg::Fixed(_), Arg::Fixed(_), ..] if c == "-c");
            if !layout {
                return Err(
                    "a shell job's args must start with \"-c\", the script and $0, all fixed"
                        .to_owned(),
                );
            }
        }

        Ok(JobDefinition {
            name: name.to_owned(),
            description: entry.description,
            program: entry.program,
            args,
            dir: entry.dir,
            timeout,
            cancel_timeout,
            params,
        })
    }

    fn launch(&self, mut given: BTreeMap<String, String>) -> Result<Launch, RequestError> {
        if let Some(name) = given.keys().find(|name| !self.params.contains_key(*name)) {
            let takes = if self.params.is_empty() {
                "it takes no parameters".to_owned()
            } else {
                let names: Vec<&str> = self.params.keys().map(String::as_str).collect();
                format!("it takes: {}", names.join(", "))
            };
            return Err(RequestError::UnknownParam {
                job: self.name.clone(),
                name: name.clone(),
                takes,
            });
        }
        let mut values = BTreeMap::new();
        for (name, param) in &self.params {
            let value = match given.remove(name).or_else(|| param.default.clone()) {
                Some(value) => value,
                None => {
                    return Err(RequestError::MissingParam {
                        job: self.name.clone(),
                        name: name.clone(),
                        rule: param.rule.describe(),
                    })
                }
            };
            let value = param
                .rule
                .check(&value)
                .map_err(|reason| RequestError::BadParam {
                    name: name.clone(),
                    reason,
                })?;
            values.insert(name.clone(), value);
        }
        let mut argv = vec![self.program.clone()];
        for arg in &self.args {
            argv.push(match arg {
                Arg::Fixed(text) => text.clone(),
                // Declared (checked at load) and so filled in above.
                Arg::Param(name) => values.get(name).cloned().unwrap_or_default(),
            });
        }
        Ok(Launch {
            job: self.name.clone(),
            params: values,
            argv,
            dir: self.dir.clone(),
            timeout: self.timeout,
            cancel_timeout: self.cancel_timeout,
        })
    }

    /// What `GET /jobs/definitions` shows of the job.
    pub fn view(&self) -> DefinitionView {
        let mut argv = vec![self.program.clone()];
        argv.extend(self.args.iter().map(|arg| match arg {
            Arg::Fixed(text) => text.clone(),
            Arg::Param(name) => format!("{{{name}}}"),
        }));
        let params = self
            .params
            .iter()
            .map(|(name, param)| {
                let (min, max, pattern) = match &param.rule {
                    Rule::Range(min, max) => (Some(*min), Some(*max), None),
                    Rule::Pattern(pattern, _) => (None, None, Some(pattern.clone())),
                };
                ParamView {
                    name: name.clone(),
                    description: param.description.clone(),
                    rule: param.rule.describe(),
                    min,
                    max,
                    pattern,
                    default: param.default.clone(),
                }
            })
            .collect();
        DefinitionView {
            name: self.name.clone(),
            description: self.description.clone(),
            argv,
            dir: self.dir.clone(),
            params,
            timeout_secs: self.timeout.as_secs_f64(),
            cancel_timeout_secs: self.cancel_timeout.as_secs_f64(),
        }
    }
}

impl Rule {
    /// The value as passed on, or why it is refused.
    fn check(&self, value: &str) -> Result<String, String> {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!("longer than {MAX_VALUE_LEN} bytes"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("{value:?} contains a control character"));
        }
        match self {
            Rule::Range(min, max) => match value.parse::<i64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(n.to_string()),
                _ => Err(format!("{value:?} is not an integer from {min} to {max}")),
            },
            Rule::Pattern(pattern, whole) => {
                if whole.is_match(value) {
                    Ok(value.to_owned())
                } else {
                    Err(format!("{value:?} does not match the pattern {pattern}"))
                }
            }
        }
    }

    /// The rule in words, for errors and the form.
    fn describe(&self) -> String {
        match self {
            Rule::Range(min, max) => format!("an integer from {min} to {max}"),
            Rule::Pattern(pattern, _) => format!("text matching {pattern}"),
        }
    }
}

/// A job as `GET /jobs/definitions` shows it.
#[derive(Debug, Serialize)]
pub struct DefinitionView {
    pub name: String,
    pub description: String,
    /// The command line, each parameter shown as `{name}`.
    pub argv: Vec<String>,
    pub dir: Option<PathBuf>,
    pub params: Vec<ParamView>,
    pub timeout_secs: f64,
    pub cancel_timeout_secs: f64,
}

/// A parameter as `GET /jobs/definitions` shows it.
#[derive(Debug, Serialize)]
pub struct ParamView {
    pub name: String,
    pub description: String,
    /// The rule in words.
    pub rule: String,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub pattern: Option<String>,
    pub default: Option<String>,
}
