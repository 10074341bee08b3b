//! The fast path: one long-lived bubblewrap sandbox per worker slot, with a Python fork server
//! inside (`forkserver.py`), instead of one bwrap and one interpreter start per program.
//!
//! Per program the parent writes `program.py` into the slot's work dir (bound at /tmp), makes
//! two pipes and sends the server a line of limits with the pipes' write ends (SCM_RIGHTS).
//! The server forks; the child takes the pipes as stdout/stderr, starts its own session, sets
//! the rlimits and runs the program as a fresh `__main__`. The server waits for it, kills every
//! process it left (`kill(-1)` inside the PID namespace), wipes /dev/shm and System V IPC, and
//! answers with the raw wait status. A program costs one fork of a small interpreter (~1 ms)
//! instead of ~15 ms of bwrap and interpreter start-up.
//!
//! Programs of a slot run one after another in the same namespaces, so between two programs:
//! none of the first's processes is alive (the server checks /proc), the work dir is emptied
//! and its mode restored by the parent, /dev/shm and IPC objects are removed. On a timeout, or
//! if the program kills the server, the parent kills the whole sandbox (its PID namespace dies
//! with it) and the next program starts a new one. Network, filesystem, uid and rlimits are
//! exactly those of the fresh-process path.

use std::ffi::OsString;
use std::io::{IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Limits;
use crate::isolation::{program_env, Isolation};
use crate::outcome::{Capture, Ending};
use crate::process::{drain, poll, read_some, set_nonblocking, spawn_retrying, Finished, ORPHAN_GRACE};
use crate::workdir::{empty_dir, remove_dir};
use std::sync::mpsc;
use std::sync::Mutex;

const SERVER: &str = include_str!("forkserver.py");

/// How long a new sandbox may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running fork-server sandbox of one worker slot.
pub(crate) struct Worker {
    child: Child,
    ctrl: UnixStream,
    /// Host directory bound at /tmp inside.
    base: PathBuf,
    uid: Option<u32>,
    /// Killed and reaped: its pid may belong to someone else now.
    dead: bool,
    /// The last program left something the server could not remove: do not reuse.
    pub dirty: bool,
}

/// Why a program has no regular ending.
pub(crate) enum Lost {
    /// The server died while the program ran (the program killed it, most likely).
    ServerDied,
    /// Talking to the server failed.
    Io(std::io::Error),
}

impl Worker {
    /// Starts the sandbox and waits for the server's "ready".
    pub fn start(spawner: &Spawner, iso: &Isolation, python: &Path, site: bool, temp_root: &Path, uid: Option<u32>) -> std::io::Result<Self> {
        let base = crate::workdir::make_dir(temp_root)?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&base, Some(uid), Some(uid))?;
        }
        let (ours, theirs) = UnixStream::pair()?;
        let mut inner: Vec<OsString> = vec![python.into(), "-I".into()];
        if !site {
            inner.push("-S".into());
        }
        inner.extend(["-c".into(), SERVER.into()]);
        let argv = iso.command(&base, inner);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear().envs(program_env("/tmp")).current_dir(&base).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let fd = theirs.as_raw_fd();
        #[allow(unsafe_code)]
        // SAFETY: runs in the forked child before exec; prctl, dup2, fcntl and setrlimit are
        // async-signal-safe and nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with the spawner thread, i.e. with the Sandbox or this process.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The control socket becomes fd 3 of bwrap and of the server, without CLOEXEC.
                if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
                Ok(())
            });
        }
        let child = spawner.spawn(cmd);
        drop(theirs);
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                remove_dir(&base);
                return Err(e);
            }
        };
        // From here on, dropping `worker` kills the sandbox and removes `base`.
        let mut worker = Worker { child, ctrl: ours, base, uid, dead: false, dirty: false };
        worker.ctrl.set_read_timeout(Some(START_TIMEOUT))?;
        let mut ready = [0u8; 6];
        if worker.ctrl.read_exact(&mut ready).is_err() || &ready != b"ready\n" {
            let mut err = String::new();
            if let Some(mut e) = worker.child.stderr.take() {
                worker.kill();
                let _ = e.read_to_string(&mut err);
            }
            return Err(std::io::Error::other(format!("the sandbox's fork server did not start: {}", err.trim())));
        }
        worker.ctrl.set_read_timeout(None)?;
        worker.ctrl.set_nonblocking(true)?;
        Ok(worker)
    }

    /// Runs one program. `Err` means this worker must be dropped (killed) and the program's
    /// ending is unknown; a timeout is `Ok` with `timed_out` and the caller drops the worker too.
    pub fn run(&mut self, source: &str, limits: &Limits) -> Result<Finished, Lost> {
        crate::workdir::write_program(&self.base, source, self.uid).map_err(Lost::Io)?;
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Lost::Io(e.into()))?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Lost::Io(e.into()))?;
        // bwrap's init and the server are processes of the sandbox's uid too.
        let line = format!("{} {} {} {} {}\n", limits.cpu_secs, limits.memory_bytes, limits.max_processes + 2, limits.max_file_bytes, limits.max_open_files);
        let start = Instant::now();
        let fds = [out_w.as_raw_fd(), err_w.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(self.ctrl.as_raw_fd(), &[IoSlice::new(line.as_bytes())], &cmsg, nix::sys::socket::MsgFlags::empty(), None)
            .map_err(|e| Lost::Io(e.into()))?;
        drop((out_w, err_w));
        let result = self.wait(start, limits, out_r, err_r);
        // Whatever happened, the next program must find an empty work dir with its mode; if it
        // cannot be emptied, this sandbox is not used again.
        if empty_dir(&self.base).is_err() {
            self.dirty = true;
        }
        result
    }

    fn wait(&mut self, start: Instant, limits: &Limits, out_r: OwnedFd, err_r: OwnedFd) -> Result<Finished, Lost> {
        let deadline = start + limits.wall_timeout;
        set_nonblocking(out_r.as_raw_fd());
        set_nonblocking(err_r.as_raw_fd());
        let (mut out, mut err) = (Some(std::fs::File::from(out_r)), Some(std::fs::File::from(err_r)));
        let mut stdout = Capture::new(limits.output_cap_bytes);
        let mut stderr = Capture::new(limits.output_cap_bytes);
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut status: Option<(i32, Instant)> = None;
        loop {
            let now = Instant::now();
            if let Some((_, at)) = status {
                if (out.is_none() && err.is_none()) || now >= at + ORPHAN_GRACE {
                    break;
                }
            } else if now >= deadline {
                self.kill();
                drain(&mut out, &mut stdout, &mut buf);
                drain(&mut err, &mut stderr, &mut buf);
                return Ok(Finished { ending: Ending::Signaled(libc::SIGKILL), timed_out: true, duration: now - start, stdout, stderr });
            }
            let mut fds: Vec<libc::pollfd> =
                [out.as_ref(), err.as_ref()].into_iter().flatten().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
            if status.is_none() {
                fds.push(libc::pollfd { fd: self.ctrl.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let until = status.map_or(deadline, |(_, at)| at + ORPHAN_GRACE);
            poll(&mut fds, until.saturating_duration_since(now));
            read_some(&mut out, &mut stdout, &mut buf);
            read_some(&mut err, &mut stderr, &mut buf);
            if status.is_none() {
                match self.ctrl.read(&mut buf) {
                    Ok(0) => return Err(Lost::ServerDied),
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Lost::Io(e)),
                }
                if reply.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&reply);
                    let mut words = text.split_whitespace();
                    let raw: i32 = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| Lost::Io(std::io::Error::other("garbled reply from the fork server")))?;
                    // "dirty": the server could not get rid of everything the program started;
                    // this sandbox is not used again.
                    self.dirty = words.next() != Some("clean");
                    status = Some((raw, Instant::now()));
                }
            }
        }
        let (raw, at) = status.expect("the loop ends with a status");
        let ending = if libc::WIFSIGNALED(raw) { Ending::Signaled(libc::WTERMSIG(raw)) } else { Ending::Exited(libc::WEXITSTATUS(raw)) };
        Ok(Finished { ending, timed_out: false, duration: at - start, stdout, stderr })
    }

    /// Kills the sandbox: bwrap, and by `--die-with-parent` its init, and with the init every
    /// process of its PID namespace.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.dead, true) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.ctrl.shutdown(std::net::Shutdown::Both);
        self.kill();
        remove_dir(&self.base);
    }
}

/// Spawns the fork servers' bubblewraps from one thread that lives as long as the `Sandbox`.
///
/// bwrap's `--die-with-parent` (PR_SET_PDEATHSIG) fires when the *thread* that spawned it
/// exits, not the process; a fork server outlives the `run` call (and the thread) that started
/// it, so it is spawned from this thread instead. When the `Sandbox` is dropped, or the process
/// dies, the thread ends and every fork-server sandbox dies with it.
pub(crate) struct Spawner {
    jobs: Mutex<mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Child>>)>>,
}

impl Spawner {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Child>>)>();
        std::thread::Builder::new()
            .name("sandbox-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_retrying(&mut cmd));
                }
            })
            .expect("start the sandbox spawner thread");
        Spawner { jobs: Mutex::new(tx) }
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.jobs.lock().expect("spawner lock").send((cmd, tx)).map_err(|_| std::io::Error::other("the sandbox spawner thread is gone"))?;
        rx.recv().map_err(|_| std::io::Error::other("the sandbox spawner thread is gone"))?
    }
}
