//! Compile processes: a new component compiles in a child process of the host
//! (`discount-host compile-policy`), which puts it in the compilation cache and exits.
//! The host then loads it from the cache.
//!
//! The compiler's memory (a gigabyte for a JavaScript build) goes back to the system
//! when the child exits, instead of staying in the host's allocator. A compile that is
//! overtaken, or runs past its time, is stopped by killing the child. A compile that
//! crashes or is killed (by the kernel's out-of-memory killer, say) fails that load,
//! not the host. It runs at a lower priority than the host's serving threads.

use policy_engine::{EngineConfig, LoadError, PolicyEngine, PolicySettings};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The host's hidden subcommand that runs one compile job.
pub const SUBCOMMAND: &str = "compile-policy";

/// How often a waiting host checks whether the compile was overtaken.
const POLL: Duration = Duration::from_millis(20);

/// The compile process's niceness: storefront requests on the same cores come first.
const NICENESS: libc::c_int = 10;

/// At most this much of a failed child's stderr goes into the load error.
const STDERR_TAIL_BYTES: usize = 2_000;

/// Which new components compile in a compile process (`[reload] compile_process`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompileProcess {
    /// Large components (JavaScript, Python: 4 MiB and more) only.
    #[default]
    Large,
    /// Every component that is not in the cache.
    All,
    /// None: everything compiles inside the host.
    None,
}

/// What the host sends a compile process: one line of JSON, then the component's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    /// The host engine's configuration: the child's engine must match it.
    engine: EngineConfig,
    /// The policy's name, for the child's messages.
    name: String,
    /// The policy's settings as TOML (what their digest hashes).
    settings: String,
    /// The digest the host computed, checked by the child.
    settings_digest: String,
    /// Length of the component that follows the line.
    component_bytes: usize,
}

/// What a compile process answers on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Report {
    /// The component is in the cache (`from_cache`: it was already).
    Compiled {
        /// Whether it was in the cache before the child started.
        from_cache: bool,
    },
    /// The component is refused, as the host's own load would refuse it.
    Refused {
        /// Why.
        error: LoadError,
    },
}

/// Why a compile process gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CompileProcessError {
    /// The process could not be started (the host compiles in-process instead).
    #[error("cannot start a compile process: {0}")]
    Spawn(std::io::Error),
    /// The load was overtaken, and its compile process stopped.
    #[error("overtaken while it compiled; its compile process was stopped")]
    Overtaken,
    /// The compile ran past its time, and its process was stopped.
    #[error("the component did not compile within {} s; its compile process was stopped", .0.as_secs_f64())]
    TimedOut(Duration),
    /// The process ended without an answer: a crash, or a signal.
    #[error("the compile process {0}{1}")]
    Died(String, String),
}

/// Starts compile processes from the running host's own executable.
#[derive(Debug, Clone)]
pub struct Compiler {
    program: PathBuf,
    which: CompileProcess,
    timeout: Duration,
}

impl Compiler {
    /// Compile processes of this executable, for `which` components, stopped after `timeout`.
    pub fn this_executable(which: CompileProcess, timeout: Duration) -> Self {
        // The running file even if it was replaced on disk: the child's engine must
        // be the host's own build for its artifacts to load.
        let program = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("discount-host"))
        };
        Compiler {
            program,
            which,
            timeout,
        }
    }

    /// Which components compile in a compile process.
    pub fn which(&self) -> CompileProcess {
        self.which
    }

    /// Compiles `component` into `engine`'s cache in a compile process. The process is
    /// stopped once `overtaken` says so, or after the timeout.
    pub fn compile(
        &self,
        engine: &EngineConfig,
        name: &str,
        component: &[u8],
        settings: &PolicySettings,
        overtaken: &dyn Fn() -> bool,
    ) -> Result<Result<bool, LoadError>, CompileProcessError> {
        let job = Job {
            engine: engine.clone(),
            name: name.to_string(),
            settings: toml::to_string(settings).unwrap_or_default(),
            settings_digest: settings.digest(),
            component_bytes: component.len(),
        };
        let mut command = Command::new(&self.program);
        command
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        set_up_child(&mut command);
        let mut child = command.spawn().map_err(CompileProcessError::Spawn)?;
        tracing::info!(
            policy = name,
            pid = child.id(),
            "compiling in a compile process"
        );
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let mut input = serde_json::to_vec(&job).unwrap_or_default();
        input.push(b'\n');
        input.extend_from_slice(component);
        let writer = child.stdin.take().map(|mut stdin| {
            // A child that died early closes the pipe: its exit status tells why.
            std::thread::spawn(move || stdin.write_all(&input).ok())
        });
        let status = self.wait(&mut child, overtaken);
        if let Some(writer) = writer {
            writer.join().ok();
        }
        let (stdout, stderr) = (stdout.join(), stderr.join());
        let status = status?;
        match serde_json::from_slice::<Report>(&stdout) {
            Ok(Report::Compiled { from_cache }) if status.success() => Ok(Ok(from_cache)),
            Ok(Report::Refused { error }) if status.success() => Ok(Err(error)),
            _ => Err(CompileProcessError::Died(
                describe(status),
                stderr_tail(&stderr),
            )),
        }
    }

    /// Waits for the child, killing it when the load is overtaken or time runs out.
    fn wait(
        &self,
        child: &mut Child,
        overtaken: &dyn Fn() -> bool,
    ) -> Result<ExitStatus, CompileProcessError> {
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(e) => {
                    stop(child);
                    return Err(CompileProcessError::Died(
                        format!("could not be waited for: {e}"),
                        String::new(),
                    ));
                }
            }
            if overtaken() {
                stop(child);
                return Err(CompileProcessError::Overtaken);
            }
            if started.elapsed() >= self.timeout {
                stop(child);
                return Err(CompileProcessError::TimedOut(self.timeout));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The child runs at [`NICENESS`], and is killed if the host dies (the thread that
/// spawns it waits for it).
#[cfg(target_os = "linux")]
fn set_up_child(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `setpriority` and `prctl` are async-signal-safe and touch no memory of
    // the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) == -1
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_up_child(_: &mut Command) {}

fn stop(child: &mut Child) {
    child.kill().ok();
    child.wait().ok();
}

/// Reads a child's pipe to its end on a thread of its own.
fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> Reader {
    Reader(pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).ok();
            bytes
        })
    }))
}

struct Reader(Option<std::thread::JoinHandle<Vec<u8>>>);

impl Reader {
    fn join(self) -> Vec<u8> {
        self.0.and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

/// How a child that gave no answer ended, for the load error.
fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let hint = if signal == 9 {
                " (SIGKILL: out of memory?)"
            } else {
                ""
            };
            return format!("was killed by signal {signal}{hint}");
        }
    }
    match status.code() {
        Some(0) => "gave no answer".to_string(),
        Some(code) => format!("failed with exit status {code}"),
        None => format!("ended: {status}"),
    }
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let start = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| text.len() - i <= STDERR_TAIL_BYTES)
        .unwrap_or(0);
    format!(": {}", &text[start..])
}

/// The compile process's side: reads one job from stdin, compiles it into the cache,
/// answers on stdout. Returns the process's exit code.
pub fn run_job() -> std::process::ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("reading the compile job: {e}");
        return std::process::ExitCode::from(2);
    }
    match compile_job(&input) {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            let written = serde_json::to_writer(&mut out, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| out.flush());
            match written {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("writing the compile report: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn compile_job(input: &[u8]) -> anyhow::Result<Report> {
    use anyhow::Context;
    let line_end = input
        .iter()
        .position(|&b| b == b'\n')
        .context("the compile job has no header line")?;
    let job: Job =
        serde_json::from_slice(&input[..line_end]).context("the compile job's header")?;
    let component = &input[line_end + 1..];
    anyhow::ensure!(
        component.len() == job.component_bytes,
        "the compile job's component is {} bytes, not {}",
        component.len(),
        job.component_bytes
    );
    let settings =
        PolicySettings::from_toml(&job.settings).context("the compile job's settings")?;
    anyhow::ensure!(
        settings.digest() == job.settings_digest,
        "the compile job's settings do not round-trip"
    );
    anyhow::ensure!(
        job.engine.cache_dir.is_some(),
        "a compile job needs a compilation cache"
    );
    let engine = PolicyEngine::new(job.engine)?;
    Ok(match engine.compile(&job.name, component, settings) {
        Ok(from_cache) => Report::Compiled { from_cache },
        Err(error) => Report::Refused { error },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_without_its_whole_component_is_refused() {
        let job = Job {
            engine: EngineConfig::default(),
            name: "p".into(),
            settings: String::new(),
            settings_digest: PolicySettings::default().digest(),
            component_bytes: 10,
        };
        let mut input = serde_json::to_vec(&job).unwrap();
        input.extend_from_slice(b"\nabc");
        let error = compile_job(&input).unwrap_err().to_string();
        assert!(error.contains("3 bytes, not 10"), "{error}");
        assert!(compile_job(b"no header")
            .unwrap_err()
            .to_string()
            .contains("no header line"));
    }

    #[test]
    fn a_refusal_round_trips_through_the_report() {
        let report = Report::Refused {
            error: LoadError::UngrantedImport(vec!["evil:net/socket".into()]),
        };
        let text = serde_json::to_string(&report).unwrap();
        match serde_json::from_str::<Report>(&text).unwrap() {
            Report::Refused { error } => assert_eq!(
                error,
                LoadError::UngrantedImport(vec!["evil:net/socket".into()])
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stderr_is_cut_to_its_tail() {
        let long = format!("{}END", "x".repeat(5_000));
        let tail = stderr_tail(long.as_bytes());
        assert!(
            tail.ends_with("END") && tail.len() <= STDERR_TAIL_BYTES + 2,
            "{}",
            tail.len()
        );
        assert_eq!(stderr_tail(b"  \n"), "");
    }
}
