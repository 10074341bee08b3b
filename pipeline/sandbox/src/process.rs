//! Spawning one sandboxed process, feeding its output into capped buffers, and killing
//! everything it started at the deadline.
//!
//! The child is made with `std::process::Command` (fork + exec). Between the two, in the
//! child: its own process group, `PR_SET_PDEATHSIG = SIGKILL` (if the parent dies, so does the
//! sandbox), the rlimits, and (when the parent is root) the slot's unprivileged uid and gid with
//! supplementary groups cleared. The parent waits with `poll` on stdout, stderr and a pidfd, so
//! one thread serves one program with no busy waiting, and a full pipe never blocks the child.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Limits;
use crate::outcome::{Capture, Ending};

/// How to start the process.
pub(crate) struct Spawn<'a> {
    pub argv: Vec<OsString>,
    pub env: Vec<(&'static str, String)>,
    pub cwd: &'a Path,
    /// Run as this uid and gid (the parent must be root).
    pub uid: Option<u32>,
    /// `setsid` instead of a new process group (direct mode: no bwrap to do it).
    pub new_session: bool,
    pub limits: &'a Limits,
}

/// How it ended.
pub(crate) struct Finished {
    pub ending: Ending,
    pub timed_out: bool,
    pub duration: Duration,
    pub stdout: Capture,
    pub stderr: Capture,
}

/// After the main process exits, how long its output pipes may stay open (held by an orphan
/// outside any PID namespace) before the orphan is killed.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_millis(100);

/// Runs the process to its end or its deadline. `kill_all` kills whatever it left behind.
pub(crate) fn run(spawn: Spawn<'_>, kill_all: &dyn Fn(u32)) -> std::io::Result<Finished> {
    let limits = spawn.limits.clone();
    let mut cmd = Command::new(&spawn.argv[0]);
    cmd.args(&spawn.argv[1..]).env_clear().envs(spawn.env.iter().map(|(k, v)| (k, v))).current_dir(spawn.cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(uid) = spawn.uid {
        cmd.uid(uid).gid(uid);
    }
    if !spawn.new_session {
        cmd.process_group(0);
    }
    let new_session = spawn.new_session;
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, setsid, setrlimit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || child_setup(&limits, new_session));
    }
    let start = Instant::now();
    let deadline = start + spawn.limits.wall_timeout;
    let mut child = spawn_retrying(&mut cmd)?;
    let pid = child.id();
    let out = child.stdout.take().expect("stdout is piped");
    let err = child.stderr.take().expect("stderr is piped");
    let pidfd = pidfd_open(pid);
    let mut stdout = Capture::new(spawn.limits.output_cap_bytes);
    let mut stderr = Capture::new(spawn.limits.output_cap_bytes);
    set_nonblocking(out.as_raw_fd());
    set_nonblocking(err.as_raw_fd());
    let (mut out_slot, mut err_slot) = (Some(out), Some(err));

    // Exit is detected with waitid(WNOWAIT): the child stays a zombie, so its pid and process
    // group cannot be reused before `kill_all` has run.
    let mut exited_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if exited_at.is_none() && has_exited(pid) {
            exited_at = Some(Instant::now());
        }
        let pipes_open = out_slot.is_some() || err_slot.is_some();
        let now = Instant::now();
        match exited_at {
            Some(at) if !pipes_open || now >= at + ORPHAN_GRACE => break,
            None if now >= deadline => {
                timed_out = true;
                kill_all(pid);
                exited_at = Some(Instant::now());
                // Everything is dead now: read what is left in the pipes, then stop.
                drain(&mut out_slot, &mut stdout, &mut buf);
                drain(&mut err_slot, &mut stderr, &mut buf);
                break;
            }
            _ => {}
        }
        let wait_until = exited_at.map_or(deadline, |at| at + ORPHAN_GRACE);
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for fd in [out_slot.as_ref().map(|s| s.as_raw_fd()), err_slot.as_ref().map(|s| s.as_raw_fd())].into_iter().flatten() {
            fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        let mut timeout = wait_until.saturating_duration_since(now);
        match (&pidfd, exited_at) {
            (Some(p), None) => fds.push(libc::pollfd { fd: p.as_raw_fd(), events: libc::POLLIN, revents: 0 }),
            // No pidfd (kernel < 5.3): look at the child every 5 ms.
            (None, None) => timeout = timeout.min(Duration::from_millis(5)),
            _ => {}
        }
        poll(&mut fds, timeout);
        read_some(&mut out_slot, &mut stdout, &mut buf);
        read_some(&mut err_slot, &mut stderr, &mut buf);
    }
    let at = exited_at.expect("the loop ends only once the child has exited or was killed");
    // Orphans of a program that exited (direct mode), and any straggler in general.
    kill_all(pid);
    let status = child.wait()?;
    let ending = match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signaled(sig),
        (None, None) => Ending::Exited(-1),
    };
    Ok(Finished { ending, timed_out, duration: at - start, stdout, stderr })
}

/// Whether the child has exited, without reaping it.
fn has_exited(pid: u32) -> bool {
    #[allow(unsafe_code)]
    // SAFETY: waitid writes into a zeroed siginfo_t we own; WNOWAIT leaves the child unreaped.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        rc == 0 && info.si_pid() != 0
    }
}

/// In the forked child: die with the parent, own session if asked, rlimits.
fn child_setup(limits: &Limits, new_session: bool) -> std::io::Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    #[allow(unsafe_code)]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if new_session {
        nix::unistd::setsid()?;
    }
    let set = |r: Resource, v: u64| setrlimit(r, v, v).map_err(std::io::Error::from);
    // CPU: the soft limit sends SIGXCPU (reported as a timeout); the hard limit, a second
    // later, SIGKILL for a program that catches SIGXCPU.
    setrlimit(Resource::RLIMIT_CPU, limits.cpu_secs, limits.cpu_secs.saturating_add(1))?;
    set(Resource::RLIMIT_AS, limits.memory_bytes)?;
    set(Resource::RLIMIT_FSIZE, limits.max_file_bytes)?;
    set(Resource::RLIMIT_NOFILE, limits.max_open_files)?;
    set(Resource::RLIMIT_CORE, 0)?;
    Ok(())
}

/// fork can fail with EAGAIN under load (or while a previous program's processes are still
/// being reaped); try a few times before giving up.
pub(crate) fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..5 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => std::thread::sleep(delay),
            other => return other,
        }
        delay *= 2;
    }
    cmd.spawn()
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new fd we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as RawFd;
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    #[allow(unsafe_code)]
    // SAFETY: fds is a valid, exclusively borrowed slice of pollfd for the call's duration.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(1));
    }
}

pub(crate) fn set_nonblocking(fd: RawFd) {
    #[allow(unsafe_code)]
    // SAFETY: fcntl on an fd we own, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Reads what is available now; closes the stream at EOF.
pub(crate) fn read_some<R: Read>(stream: &mut Option<R>, into: &mut Capture, buf: &mut [u8]) {
    while let Some(s) = stream {
        match s.read(buf) {
            Ok(0) => *stream = None,
            Ok(n) => into.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => *stream = None,
        }
    }
}

/// Reads to EOF, but never waits more than a moment for a writer that is not dead yet.
pub(crate) fn drain<R: Read + AsRawFd>(stream: &mut Option<R>, into: &mut Capture, buf: &mut [u8]) {
    let until = Instant::now() + ORPHAN_GRACE;
    while let Some(fd) = stream.as_ref().map(|s| s.as_raw_fd()) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let mut fds = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
        poll(&mut fds, until - now);
        read_some(stream, into, buf);
    }
}
