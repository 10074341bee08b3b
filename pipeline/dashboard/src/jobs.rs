//! Jobs: a stage (or the whole DAG) run by a child `distill` process, one at a time, in the
//! order asked for.
//!
//! A child process rather than a thread: the stages are blocking, CPU-heavy and start their
//! own helpers (the local teacher's server, sandboxed Python), and a cancelled job must stop
//! all of it at once. Each child gets a process group of its own; cancelling sends SIGTERM to
//! the group, then SIGKILL after a grace period. A killed stage leaves no output that looks
//! complete (the runner publishes by rename), so cancelling is always safe.
//!
//! The child's stdout and stderr become the job's log: every line is kept (up to a cap) and
//! sent to whoever streams it.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, Notify};

use crate::Pipeline;

/// Lines of a job's log kept for late readers; beyond this the oldest are dropped.
const LOG_CAP: usize = 20_000;
/// Finished jobs remembered.
const HISTORY: usize = 50;
/// Time a cancelled job's processes get to stop before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A numbered line of a job's log.
pub type LogLine = (u64, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: u64,
    /// A stage name, or `run` for the whole DAG.
    pub target: String,
    pub force: bool,
    pub state: JobState,
    pub created_unix: f64,
    pub started_unix: Option<f64>,
    pub finished_unix: Option<f64>,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub log_lines: u64,
}

pub struct Job {
    info: Mutex<JobInfo>,
    /// The kept lines and the number of the first of them.
    log: Mutex<(u64, VecDeque<String>)>,
    lines: broadcast::Sender<LogLine>,
    cancel: Notify,
    cancel_asked: Mutex<bool>,
}

impl Job {
    pub fn info(&self) -> JobInfo {
        self.info.lock().expect("job lock").clone()
    }

    /// Lines from number `from` on that are still kept, and a receiver of the lines to come.
    pub fn follow(&self, from: u64) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let log = self.log.lock().expect("log lock");
        let rx = self.lines.subscribe();
        let (first, lines) = &*log;
        let kept = lines.iter().enumerate().map(|(i, l)| (first + i as u64, l.clone())).filter(|(n, _)| *n >= from).collect();
        (kept, rx)
    }

    fn push_line(&self, line: String) {
        let mut log = self.log.lock().expect("log lock");
        let number = log.0 + log.1.len() as u64;
        log.1.push_back(line.clone());
        if log.1.len() > LOG_CAP {
            log.1.pop_front();
            log.0 += 1;
        }
        self.info.lock().expect("job lock").log_lines = number + 1;
        let _ = self.lines.send((number, line));
    }

    fn set(&self, f: impl FnOnce(&mut JobInfo)) {
        f(&mut self.info.lock().expect("job lock"));
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The queue and the history; one worker runs the jobs.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

struct Inner {
    next_id: u64,
    /// Every job known, oldest first (finished ones trimmed to [`HISTORY`]).
    jobs: Vec<Arc<Job>>,
}

impl Jobs {
    /// Starts the worker that runs queued jobs through `pipeline`.
    pub fn start(pipeline: Arc<dyn Pipeline>) -> Jobs {
        let jobs = Jobs { inner: Arc::new(Mutex::new(Inner { next_id: 1, jobs: Vec::new() })), wake: Arc::new(Notify::new()) };
        let worker = jobs.clone();
        tokio::spawn(async move { worker.work(pipeline).await });
        jobs
    }

    pub fn submit(&self, target: String, force: bool) -> JobInfo {
        let mut inner = self.inner.lock().expect("jobs lock");
        let id = inner.next_id;
        inner.next_id += 1;
        let info = JobInfo { id, target, force, state: JobState::Queued, created_unix: now(), started_unix: None, finished_unix: None, exit_code: None, pid: None, log_lines: 0 };
        let (tx, _) = broadcast::channel(1024);
        inner.jobs.push(Arc::new(Job { info: Mutex::new(info.clone()), log: Mutex::new((0, VecDeque::new())), lines: tx, cancel: Notify::new(), cancel_asked: Mutex::new(false) }));
        // Forget the oldest finished jobs beyond the history's size.
        let finished = inner.jobs.iter().filter(|j| j.info().state.finished()).count();
        if finished > HISTORY {
            let mut drop = finished - HISTORY;
            inner.jobs.retain(|j| {
                let old = drop > 0 && j.info().state.finished();
                drop -= usize::from(old);
                !old
            });
        }
        drop(inner);
        self.wake.notify_one();
        info
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.inner.lock().expect("jobs lock").jobs.iter().find(|j| j.info().id == id).cloned()
    }

    pub fn list(&self) -> Vec<JobInfo> {
        self.inner.lock().expect("jobs lock").jobs.iter().map(|j| j.info()).collect()
    }

    /// The job running now, if any.
    pub fn running(&self) -> Option<JobInfo> {
        self.list().into_iter().find(|j| j.state == JobState::Running)
    }

    /// Cancels a queued job at once, or stops a running one. `Err` with the state of a job
    /// that already finished.
    pub fn cancel(&self, id: u64) -> Option<Result<JobInfo, JobState>> {
        let job = self.get(id)?;
        let state = job.info().state;
        Some(match state {
            JobState::Queued => {
                job.set(|i| {
                    i.state = JobState::Cancelled;
                    i.finished_unix = Some(now());
                });
                Ok(job.info())
            }
            JobState::Running => {
                *job.cancel_asked.lock().expect("cancel lock") = true;
                job.cancel.notify_one();
                Ok(job.info())
            }
            done => Err(done),
        })
    }

    /// Stops the running job's processes now (the server is shutting down): SIGTERM to its
    /// group, so a stage started from the page does not outlive the page's server.
    pub fn stop_running(&self) {
        for job in self.inner.lock().expect("jobs lock").jobs.iter() {
            let info = job.info();
            if info.state == JobState::Running {
                signal_group(info.pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
    }

    fn next_queued(&self) -> Option<Arc<Job>> {
        self.inner.lock().expect("jobs lock").jobs.iter().find(|j| j.info().state == JobState::Queued).cloned()
    }

    async fn work(self, pipeline: Arc<dyn Pipeline>) {
        loop {
            let Some(job) = self.next_queued() else {
                self.wake.notified().await;
                continue;
            };
            run_one(&job, pipeline.as_ref()).await;
        }
    }
}

async fn run_one(job: &Job, pipeline: &dyn Pipeline) {
    let info = job.info();
    let target = (info.target != "run").then_some(info.target.as_str());
    let mut cmd = tokio::process::Command::from(pipeline.command(target, info.force));
    // Plain log lines for the page and API clients (tracing colours its output otherwise).
    cmd.env("NO_COLOR", "1");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    job.set(|i| {
        i.state = JobState::Running;
        i.started_unix = Some(now());
    });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            job.push_line(format!("error: could not start the distill binary: {e}"));
            job.set(|i| {
                i.state = JobState::Failed;
                i.finished_unix = Some(now());
            });
            return;
        }
    };
    let pid = child.id();
    job.set(|i| i.pid = pid);
    job.push_line(format!("$ distill {}{}", if info.force { "--force " } else { "" }, info.target));
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let (mut out_open, mut err_open) = (true, true);
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            line = out.next_line(), if out_open => match line { Ok(Some(l)) => job.push_line(l), _ => out_open = false },
            line = err.next_line(), if err_open => match line { Ok(Some(l)) => job.push_line(l), _ => err_open = false },
            status = child.wait() => break status,
            _ = job.cancel.notified(), if kill_at.is_none() => {
                job.push_line("cancelled: stopping the job's processes (SIGTERM)".into());
                signal_group(pid, nix::sys::signal::Signal::SIGTERM);
                kill_at = Some(tokio::time::Instant::now() + GRACE);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                job.push_line("cancelled: still running after the grace period (SIGKILL)".into());
                signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    };
    // Helpers the stage started may still hold the group (and the pipes): none outlives the
    // job. Then the lines still in the pipes.
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    let drain = async {
        while out_open || err_open {
            tokio::select! {
                line = out.next_line(), if out_open => match line { Ok(Some(l)) => job.push_line(l), _ => out_open = false },
                line = err.next_line(), if err_open => match line { Ok(Some(l)) => job.push_line(l), _ => err_open = false },
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    let cancelled = *job.cancel_asked.lock().expect("cancel lock");
    let code = status.as_ref().ok().and_then(|s| s.code());
    let state = match (&status, cancelled) {
        (_, true) => JobState::Cancelled,
        (Ok(s), false) if s.success() => JobState::Succeeded,
        _ => JobState::Failed,
    };
    job.push_line(format!(
        "job {} {}",
        info.id,
        match state {
            JobState::Succeeded => "succeeded".to_string(),
            JobState::Cancelled => "was cancelled".to_string(),
            _ => format!("failed (exit code {})", code.map(|c| c.to_string()).unwrap_or_else(|| "none: killed by a signal".into())),
        }
    ));
    job.set(|i| {
        i.state = state;
        i.exit_code = code;
        i.finished_unix = Some(now());
    });
}

fn signal_group(pid: Option<u32>, signal: nix::sys::signal::Signal) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}
