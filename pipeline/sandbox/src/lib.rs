//! Runs untrusted Python programs (model-written code and tests) and says what happened:
//! passed, failed (exception type and message), timeout, killed (signal) or out of memory.
//!
//! ```no_run
//! use distill_sandbox::{Program, Sandbox, SandboxConfig, Status};
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let outcome = sandbox.run(&Program::new("assert 1 + 1 == 2"));
//! assert_eq!(outcome.status, Status::Passed);
//! # Ok::<(), distill_sandbox::Error>(())
//! ```
//!
//! # What protects against what
//!
//! bubblewrap (`bwrap`) builds the namespaces and mounts; see [`isolation`] for the command
//! line. By default (`fork_server = true`) each worker slot keeps one bwrap sandbox alive with
//! a small Python fork server in it, and every program is a fork of that server with its own
//! session, rlimits, pipes and emptied work dir (see the `forkserver` module for what is reset
//! between two programs of a slot and why the server is out of the programs' reach);
//! `fork_server = false` makes a fresh bwrap sandbox per program. Both run the same
//! adversarial suite (tests/adversarial.rs).
//! [`IsolationReport`] (from [`Sandbox::isolation`]) says which of these hold on the machine
//! at hand; on this project's machines (Debian 12, kernel 6.x, unprivileged user namespaces
//! allowed) all of them do.
//!
//! | threat | protection |
//! |---|---|
//! | network access | new network namespace: only its own, empty loopback |
//! | writes outside the work dir | mount namespace: /usr, /bin, /lib* and a few /etc files bound read-only, nothing else of the host visible; `/tmp` = `HOME` = `TMPDIR` = a fresh work dir, removed afterwards |
//! | reading the parent's secrets | the environment is cleared: `PATH`, `HOME`, `TMPDIR`, `LANG` (and `PWD`, set by bwrap) only; other /etc files and the host's /home, /root, /work are not mounted |
//! | running as root | a root parent drops every worker slot to its own unprivileged uid (from a block of uids above `uid_base` leased for the sandbox's lifetime, see `uids`) before bwrap, so the user namespace maps uid 65534 onto an unprivileged uid, not onto root; `RLIMIT_NPROC` binds |
//! | memory exhaustion | `RLIMIT_AS` (default 4 GiB): `MemoryError`, reported as out of memory; the private `/dev/shm` is a 16 MiB tmpfs |
//! | fork storms | `RLIMIT_NPROC` set inside the user namespace (see [`prelude`]) |
//! | orphans, `setsid` daemons | PID namespace whose init is bwrap: killing bwrap (`--die-with-parent`) kills the init, and the kernel kills every process of the namespace; the fork server also `kill(-1)`s after each program and checks /proc until only it and init remain |
//! | one program spying on or planting files for the next (fork server) | the work dir is emptied and its mode reset, /dev/shm and System V IPC removed, leftover processes killed between programs; the server closes its control socket in the child and is not dumpable; a timeout or a server that cannot clean up discards the whole sandbox |
//! | infinite loops, ignoring SIGTERM | wall-clock deadline, then SIGKILL (not TERM) to the whole sandbox; `RLIMIT_CPU` as a second line |
//! | output floods | both pipes read continuously by the parent, kept up to a cap |
//! | huge files | `RLIMIT_FSIZE` |
//! | tricking the root parent through planted symlinks | the parent writes `program.py` with `O_CREAT|O_EXCL` and `fchown`s the open file; work dirs are removed without following links |
//! | the parent dying | `PR_SET_PDEATHSIG` on bwrap and `--die-with-parent` inside |
//!
//! Where bubblewrap cannot run (no user namespaces), `isolation = "auto"` falls back to a
//! direct child process (own session, rlimits, scrubbed env, unprivileged uid when root,
//! `kill(-1)` as that uid after each program) and warns once that the network and the
//! filesystem are not isolated.
//!
//! # Speed
//!
//! With the fork server a program costs one fork of an already started interpreter (~1 ms), a
//! file write and two pipes; bwrap and the interpreter start once per slot (and again after a
//! timeout), and the server has already imported the standard-library modules such programs
//! import most (`typing`, `re`, `collections`, `math`, ...; see `forkserver.py`). Without it, a program costs one bwrap (namespaces and ~15 bind mounts, ~5 ms) and
//! one interpreter start with `-I -S` (~6 ms; `site` would add ~7 ms, see [`prelude`]). The
//! parent is Rust and waits on pipes and a pidfd/socket with `poll`: no thread per stream, no
//! busy waiting. `run_all` keeps `workers` programs in flight. The official human-eval harness
//! starts a `multiprocessing.Manager` server and forks a process per program; see
//! `benches/sandbox_vs_human_eval.rs` for the comparison.

pub mod config;
pub mod error;
mod forkserver;
pub mod isolation;
pub mod outcome;
pub mod prelude;
mod process;
mod uids;
mod workdir;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub use config::{IsolationMode, Limits, SandboxConfig};
pub use error::{Error, Result};
pub use isolation::{IsolationReport, Mechanism};
pub use outcome::{parse_exception, Outcome, Status};

use isolation::Isolation;
use workdir::WorkDir;

/// One program to run: a whole Python program (a module run as `__main__`) and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub source: String,
    pub limits: Limits,
}

impl Program {
    /// A program with the default limits.
    pub fn new(source: impl Into<String>) -> Self {
        Program { source: source.into(), limits: Limits::default() }
    }

    pub fn with_limits(source: impl Into<String>, limits: Limits) -> Self {
        Program { source: source.into(), limits }
    }
}

/// Runs programs; see the crate docs. `Sync`: share it between threads freely.
pub struct Sandbox {
    cfg: SandboxConfig,
    isolation: Isolation,
    temp_root: PathBuf,
    workers: usize,
    /// Free worker slots; a slot is a uid when the parent is root.
    free_slots: Mutex<Vec<usize>>,
    slot_freed: Condvar,
    /// The fork-server sandbox of each slot, started on first use (fork_server mode only).
    servers: Vec<Mutex<Option<forkserver::Worker>>>,
    /// The uids of the slots, when the parent is root.
    uids: Option<uids::UidBlock>,
    /// Declared after `servers`: dropped (ending its thread) once they are killed.
    spawner: forkserver::Spawner,
}

// A Sandbox is shared by reference between worker threads (and the stages' own threads).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
};

/// "The network is not isolated" is said once per process, not once per sandbox.
static WARNED_DIRECT: AtomicBool = AtomicBool::new(false);

impl Sandbox {
    /// Checks the config, finds the interpreter and bwrap, and runs a trivial program through
    /// the sandbox to prove it works here.
    pub fn new(cfg: SandboxConfig) -> Result<Self> {
        let workers = cfg.effective_workers();
        let drops_root = nix::unistd::geteuid().is_root();
        if workers > uids::BLOCK as usize {
            return Err(Error::Config { key: "workers", message: format!("{workers} is more than the {} a sandbox may have", uids::BLOCK) });
        }
        let uid_span = u64::from(uids::BLOCK) * u64::from(uids::BLOCKS);
        if drops_root && (cfg.uid_base < 65_536 || u64::from(cfg.uid_base) + uid_span >= u64::from(u32::MAX)) {
            return Err(Error::Config {
                key: "uid_base",
                message: format!("{} must leave {uid_span} unused uids above it, clear of system and user accounts; pick e.g. 2000000000", cfg.uid_base),
            });
        }
        let uids = if drops_root { Some(uids::lease(cfg.uid_base).map_err(|e| Error::Io { path: std::env::temp_dir().join("distill-sandbox-uids"), source: e })?) } else { None };
        let temp_root = if cfg.temp_root.as_os_str().is_empty() { std::env::temp_dir() } else { cfg.temp_root.clone() };
        if !temp_root.is_dir() {
            return Err(Error::Config { key: "temp_root", message: format!("{} is not a directory", temp_root.display()) });
        }
        let python = isolation::resolve(&cfg.python, "python interpreter", "set sandbox.python to an absolute path")?;
        workdir::remove_stale(&temp_root);
        let mut sandbox = Sandbox {
            uids,
            isolation: Isolation::direct(&python, drops_root),
            cfg,
            temp_root,
            workers,
            free_slots: Mutex::new((0..workers).rev().collect()),
            slot_freed: Condvar::new(),
            servers: (0..workers).map(|_| Mutex::new(None)).collect(),
            spawner: forkserver::Spawner::new(),
        };
        if Isolation::wants_bwrap(sandbox.cfg.isolation) {
            let attempt = Isolation::bubblewrap(&sandbox.cfg, &python, drops_root).and_then(|iso| {
                sandbox.isolation = iso;
                sandbox.probe()
            });
            match (attempt, sandbox.cfg.isolation) {
                (Ok(()), _) => return Ok(sandbox),
                (Err(e), IsolationMode::Bwrap) => return Err(Error::BwrapUnusable(e.to_string())),
                (Err(e), _) => {
                    tracing::warn!("sandbox: bubblewrap does not work here ({e}); falling back to direct mode");
                    sandbox.isolation = Isolation::direct(&python, drops_root);
                    for server in &sandbox.servers {
                        *server.lock().expect("slot server lock") = None;
                    }
                }
            }
        }
        if !WARNED_DIRECT.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "sandbox: running programs WITHOUT network or filesystem isolation (no usable bubblewrap / user namespaces){}",
                if drops_root { "; they run as unprivileged uids" } else { " and as the current user" }
            );
        }
        sandbox.probe()?;
        Ok(sandbox)
    }

    /// What protects against what with the mechanism this sandbox uses.
    pub fn isolation(&self) -> &IsolationReport {
        &self.isolation.report
    }

    /// The number of programs `run_all` runs at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs one program. Blocks while all worker slots are busy (with other threads' runs).
    pub fn run(&self, program: &Program) -> Outcome {
        let slot = self.acquire_slot();
        let outcome = self.run_in_slot(program, slot);
        self.free_slots.lock().expect("slot list lock").push(slot);
        self.slot_freed.notify_one();
        outcome
    }

    /// Runs every program, `workers` at a time; outcomes in input order.
    pub fn run_all(&self, programs: &[Program]) -> Vec<Outcome> {
        let next = AtomicUsize::new(0);
        let threads = self.workers.min(programs.len()).max(1);
        let mut results: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(p) = programs.get(i) else { break };
                            done.push((i, self.run(p)));
                        }
                        done
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("sandbox worker thread panicked")).collect()
        });
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, o)| o).collect()
    }

    fn acquire_slot(&self) -> usize {
        let mut free = self.free_slots.lock().expect("slot list lock");
        loop {
            if let Some(slot) = free.pop() {
                return slot;
            }
            free = self.slot_freed.wait(free).expect("slot list lock");
        }
    }

    fn slot_uid(&self, slot: usize) -> Option<u32> {
        self.uids.as_ref().map(|block| block.first + slot as u32)
    }

    fn run_in_slot(&self, program: &Program, slot: usize) -> Outcome {
        let started = Instant::now();
        let bwrap = self.isolation.bwrap.is_some();
        if bwrap && self.cfg.fork_server {
            return self.run_in_server(program, slot, started);
        }
        let uid = self.slot_uid(slot);
        let dir = match WorkDir::create(&self.temp_root, &program.source, uid) {
            Ok(d) => d,
            Err(e) => return Outcome::sandbox_error(format!("cannot make a work dir in {}: {e}", self.temp_root.display()), started.elapsed()),
        };
        let nproc = match (bwrap, uid) {
            // Inside the user namespace bwrap's init is one more process of the uid.
            (true, _) => program.limits.max_processes + 1,
            (false, Some(_)) => program.limits.max_processes,
            // A non-root parent without a user namespace: NPROC would count all our processes.
            (false, None) => 0,
        };
        let program_path = if bwrap { prelude::PROGRAM_FILE.into() } else { dir.path().join(prelude::PROGRAM_FILE) };
        let inner = prelude::python_argv(&self.isolation.report.python, self.cfg.python_site, nproc, &program_path.to_string_lossy());
        let home = if bwrap { "/tmp".to_string() } else { dir.path().to_string_lossy().into_owned() };
        let spawn = process::Spawn {
            argv: self.isolation.command(dir.path(), inner),
            env: isolation::program_env(&home),
            cwd: dir.path(),
            uid,
            new_session: !bwrap,
            limits: &program.limits,
        };
        let kill_all = |pid: u32| kill_everything(pid, if bwrap { None } else { uid });
        match process::run(spawn, &kill_all) {
            Ok(f) => outcome::classify(f.ending, f.timed_out, bwrap, f.duration, f.stdout, f.stderr),
            Err(e) => Outcome::sandbox_error(format!("cannot start the sandbox: {e}"), started.elapsed()),
        }
    }

    /// The fork-server path: the slot's long-lived sandbox, started (again) when needed.
    fn run_in_server(&self, program: &Program, slot: usize, started: Instant) -> Outcome {
        let mut server = self.servers[slot].lock().expect("slot server lock");
        if server.is_none() {
            let python = &self.isolation.report.python;
            match forkserver::Worker::start(&self.spawner, &self.isolation, python, self.cfg.python_site, &self.temp_root, self.slot_uid(slot)) {
                Ok(w) => *server = Some(w),
                Err(e) => return Outcome::sandbox_error(format!("cannot start the sandbox: {e}"), started.elapsed()),
            }
        }
        let worker = server.as_mut().expect("just started");
        match worker.run(&program.source, &program.limits) {
            Ok(f) => {
                if f.timed_out || worker.dirty {
                    *server = None;
                }
                outcome::classify(f.ending, f.timed_out, false, f.duration, f.stdout, f.stderr)
            }
            Err(lost) => {
                *server = None;
                match lost {
                    forkserver::Lost::ServerDied => {
                        Outcome { message: Some("the program killed the sandbox's fork server".into()), ..Outcome::sandbox_error(String::new(), started.elapsed()) }
                            .with_status(Status::Killed)
                    }
                    forkserver::Lost::Io(e) => Outcome::sandbox_error(format!("lost the sandbox: {e}"), started.elapsed()),
                }
            }
        }
    }

    /// Runs `print(1 + 1)`; anything but a pass with "2" means the set-up is broken.
    fn probe(&self) -> Result<()> {
        let limits = Limits { wall_timeout: Duration::from_secs(20), ..Limits::default() };
        let outcome = self.run(&Program::with_limits("print(1 + 1)", limits));
        if outcome.status == Status::Passed && outcome.stdout.trim() == "2" {
            return Ok(());
        }
        Err(Error::ProbeFailed {
            python: self.isolation.report.python.clone(),
            message: format!("{:?}: {}{}", outcome.status, outcome.message.unwrap_or_default(), outcome.stderr.trim()),
        })
    }
}

/// Kills the process group of `pid` (bwrap, or the program in direct mode); with `sweep_uid`,
/// also every process of that uid, which only the slot's programs use. `pid` is still an
/// unreaped child here, so neither it nor its group id can have been reused.
fn kill_everything(pid: u32, sweep_uid: Option<u32>) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    if let Some(uid) = sweep_uid {
        sweep(uid);
    }
}

/// kill(-1, SIGKILL) from a child that has become `uid`: every process of that uid dies (the
/// caller itself excepted, which then exits).
fn sweep(uid: u32) {
    #[allow(unsafe_code)]
    // SAFETY: after fork the child makes only async-signal-safe calls (setgid, setuid, kill,
    // _exit) and never returns into Rust code.
    unsafe {
        match libc::fork() {
            0 => {
                if libc::setgid(uid) == 0 && libc::setuid(uid) == 0 {
                    libc::kill(-1, libc::SIGKILL);
                }
                libc::_exit(0);
            }
            child if child > 0 => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
            }
            _ => {}
        }
    }
}
