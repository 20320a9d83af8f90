//! Support for Quest's end-to-end benchmarks: run the release `quest` binary as a child process
//! against an in-process `quest-mock-model` server and measure wall time, CPU time and peak RSS
//! of that child alone.
//!
//! Owns: locating the binary (`QUEST_BIN`), the per-child resource measurement (a re-executed
//! copy of the bench binary acts as a one-child wrapper so that `getrusage(RUSAGE_CHILDREN)` and
//! `ru_maxrss` describe exactly one `quest` run), small statistics and a raw HTTP replay used to
//! time the mock on its own. Must not: build `quest` itself, touch anything outside temporary
//! directories, or assert on timings.
#![warn(missing_docs, unreachable_pub)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::{Pid, SysconfVar, sysconf};
use serde::{Deserialize, Serialize};

/// Environment variable that turns a bench binary into the one-child measuring wrapper; its
/// value is the file the wrapper writes its [`Measurement`] to.
pub const WRAP_ENV: &str = "QUEST_BENCH_MEASURE_TO";

/// Errors of the benchmark support code.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The `quest` binary is missing (returned by [`quest_bin`]; not retried: build it first).
    #[error(
        "quest binary not found at {0} (build it with `cargo build --release -p quest-cli` or set QUEST_BIN)"
    )]
    MissingBinary(PathBuf),
    /// Spawning, waiting for or reading about a process failed (returned by the wrapper and
    /// [`measure`]; not retried).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A system call failed (returned by the wrapper; not retried).
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// The wrapper's measurement file could not be parsed (returned by [`measure`]).
    #[error("measurement file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A run did not behave as the scenario expects (wrong exit code, wrong request count).
    #[error("{0}")]
    Unexpected(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// A positive count from environment variable `var`, else `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The shared `main` of the bench binaries: serve as the measuring wrapper when re-executed,
/// else run `bench` and report its error under `name`.
pub fn bench_main(
    name: &str,
    bench: impl FnOnce() -> Result<(), BenchError>,
) -> std::process::ExitCode {
    wrapper_entry();
    match bench() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `quest` binary: `$QUEST_BIN`, else `target/release/quest` of this workspace.
pub fn quest_bin() -> Result<PathBuf, BenchError> {
    let path = match std::env::var_os("QUEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("release/quest")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::MissingBinary(path))
    }
}

/// `-c` flags defining provider `bench` at `base_url` (no retries needed: the mock never fails).
pub fn provider_args(base_url: &str) -> Vec<String> {
    vec![
        "-c".into(),
        "model_provider=bench".into(),
        "-c".into(),
        format!(
            "model_providers.bench={{name=\"bench\", base_url=\"{base_url}\", wire_api=\"responses\", env_key=\"BENCH_API_KEY\", request_max_retries=0, stream_max_retries=0}}"
        ),
        "-c".into(),
        "model=gpt-bench".into(),
    ]
}

/// A `quest` command with a fresh-home environment: `QUEST_HOME=home`, cwd `work`, stdin null,
/// no inherited API keys or trace context.
pub fn quest_command(bin: &Path, home: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("QUEST_HOME", home)
        .env("BENCH_API_KEY", "sk-bench")
        .env_remove("QUEST_API_KEY")
        .env_remove("CODEX_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .env_remove("RUST_LOG")
        .env_remove("LD_LIBRARY_PATH")
        .env("NO_COLOR", "1")
        .current_dir(work)
        .stdin(Stdio::null());
    cmd
}

/// What one child run cost.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Measurement {
    /// Spawn to exit, as seen by the wrapper (excludes the wrapper's own start-up).
    pub wall_us: u64,
    /// User CPU of the child and everything it waited for (`RUSAGE_CHILDREN`).
    pub user_us: u64,
    /// System CPU of the child and everything it waited for.
    pub sys_us: u64,
    /// User CPU of the child process itself, from `/proc/PID/stat` (clock-tick resolution).
    pub self_user_us: u64,
    /// System CPU of the child process itself (clock-tick resolution).
    pub self_sys_us: u64,
    /// Peak resident set of the largest process in the child's tree (`ru_maxrss`), KiB.
    pub maxrss_kib: u64,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
}

impl Measurement {
    /// Wall time.
    pub fn wall(&self) -> Duration {
        Duration::from_micros(self.wall_us)
    }

    /// User + system CPU of the whole child tree.
    pub fn cpu(&self) -> Duration {
        Duration::from_micros(self.user_us + self.sys_us)
    }

    /// User + system CPU of the child process alone (its own tool subprocesses excluded).
    pub fn self_cpu(&self) -> Duration {
        Duration::from_micros(self.self_user_us + self.self_sys_us)
    }
}

/// A finished measured run: its cost and its captured output.
#[derive(Debug)]
pub struct Run {
    /// The cost.
    pub measurement: Measurement,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// Runs `cmd` under the measuring wrapper (this bench binary re-executed with [`WRAP_ENV`]) and
/// returns its cost and output. `cmd`'s program, arguments, environment and cwd are kept.
pub fn measure(cmd: &Command) -> Result<Run, BenchError> {
    let out_dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
    let out_file = out_dir.path().join("measurement.json");
    let me = std::env::current_exe().map_err(io("locating the bench binary"))?;
    let mut wrapper = Command::new(me);
    wrapper
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapper.env(key, v),
            None => wrapper.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapper.current_dir(dir);
    }
    wrapper
        .env(WRAP_ENV, &out_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = wrapper.output().map_err(io("running the wrapper"))?;
    let text = std::fs::read(&out_file).map_err(io(format!(
        "reading {} (stderr: {})",
        out_file.display(),
        String::from_utf8_lossy(&output.stderr)
    )))?;
    let measurement = serde_json::from_slice(&text).map_err(|source| BenchError::Parse {
        path: out_file.clone(),
        source,
    })?;
    Ok(Run {
        measurement,
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

/// Call first in a bench `main`: when this process is the measuring wrapper, runs the child,
/// writes the measurement and exits with the child's code; otherwise returns.
pub fn wrapper_entry() {
    let Some(out) = std::env::var_os(WRAP_ENV) else {
        return;
    };
    let code = match run_wrapped(&out) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("measuring wrapper: {e}");
            125
        }
    };
    std::process::exit(code);
}

fn run_wrapped(out: &OsString) -> Result<i32, BenchError> {
    let mut args = std::env::args_os().skip_while(|a| a != "--").skip(1);
    let program = args
        .next()
        .ok_or_else(|| BenchError::Unexpected("wrapper: no command after `--`".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove(WRAP_ENV);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(io("spawning the measured command"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // Wait for the exit without reaping, so that /proc/PID/stat still holds the child's own
    // CPU times.
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).map_err(|source| {
        BenchError::Sys {
            what: "waitid".into(),
            source,
        }
    })?;
    let wall = start.elapsed();
    let (self_user_us, self_sys_us) = proc_self_times(child.id()).unwrap_or((0, 0));
    let status = child.wait().map_err(io("reaping the measured command"))?;
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|source| BenchError::Sys {
        what: "getrusage".into(),
        source,
    })?;
    let tv_us = |tv: nix::sys::time::TimeVal| {
        u64::try_from(tv.tv_sec()).unwrap_or(0) * 1_000_000
            + u64::try_from(tv.tv_usec()).unwrap_or(0)
    };
    let measurement = Measurement {
        wall_us: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        user_us: tv_us(usage.user_time()),
        sys_us: tv_us(usage.system_time()),
        self_user_us,
        self_sys_us,
        maxrss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        code: status.code().unwrap_or(-1),
    };
    let text =
        serde_json::to_vec(&measurement).map_err(|e| BenchError::Unexpected(e.to_string()))?;
    std::fs::write(out, text).map_err(io("writing the measurement"))?;
    Ok(measurement.code)
}

/// `utime` and `stime` of a (zombie) process, in microseconds.
fn proc_self_times(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields after `comm` start at field 3 (`state`); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tck = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100);
    Some((utime * 1_000_000 / tck, stime * 1_000_000 / tck))
}

/// Median, 90th percentile (nearest rank), minimum and maximum of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// 90th percentile, nearest rank.
    pub p90: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stats {
    /// Statistics of `values` (all zero for an empty sample).
    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Stats {
                median: 0.0,
                p90: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = (0.9 * n as f64).ceil() as usize;
        Stats {
            median,
            p90: v[rank.clamp(1, n) - 1],
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// Milliseconds of a duration as `f64`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `body` as `POST /v1/responses` over a new HTTP/1.1 connection to `addr` and reads the
/// whole answer; returns the time from connect to the end of the answer.
pub fn post_and_drain(addr: SocketAddr, body: &[u8]) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(io("connecting to the mock"))?;
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\nauthorization: Bearer sk-bench\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(io("sending a replayed request"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(io("reading a replayed answer"))?;
    let elapsed = start.elapsed();
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(BenchError::Unexpected(format!(
            "replayed request answered with {}",
            String::from_utf8_lossy(answer.get(..40).unwrap_or(&answer))
        )));
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_known_sample() {
        let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
    }

    #[test]
    fn self_times_of_this_process_are_readable() {
        assert!(proc_self_times(std::process::id()).is_some());
    }
}
