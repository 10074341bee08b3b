//! Finding out what isolation works on this machine, and the command line that applies it.
//!
//! The mechanism is bubblewrap (`bwrap`, Debian package `bubblewrap`, installed by
//! `scripts/system-deps.sh`): a small, widely used setuid-free tool that creates the namespaces
//! and mounts, then execs the program. The sandbox is one bwrap invocation per program:
//!
//! ```text
//! bwrap --unshare-all --die-with-parent --new-session --uid 65534 --gid 65534
//!       --ro-bind /usr /usr (+ /bin /lib /lib64 /sbin as on the host, a few /etc files)
//!       --bind <fresh work dir> /tmp --chdir /tmp --proc /proc --dev /dev
//!       --size 16M --tmpfs /dev/shm --remount-ro / --clearenv --setenv PATH/HOME/LANG/TMPDIR
//!       ...
//!       -- python3 -I -S -c <prelude> <nproc> program.py
//! ```
//!
//! [`Isolation::probe`] runs a trivial program through exactly that command in
//! `Sandbox::new`: if user namespaces are disallowed, or bwrap is missing, `auto` mode falls
//! back to `direct` and says so once with `tracing::warn`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{IsolationMode, SandboxConfig};
use crate::error::{Error, Result};

/// The PATH programs see, and where `python3`/`bwrap` names are looked up.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Size of the private `/dev/shm` (multiprocessing's semaphores live there).
const SHM_BYTES: u64 = 16 << 20;

/// /etc files programs may read: the dynamic linker's cache (faster start), time zone, user
/// and host names. Nothing else of /etc (it may hold credentials) is visible.
const ETC_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/alternatives"];

/// The mechanism in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Mechanism {
    /// bubblewrap at this path, with this `--version` line.
    Bubblewrap { path: PathBuf, version: String },
    /// A plain child process: own session, rlimits, scrubbed env, dropped uid when root.
    Direct,
}

/// What protects against what on this machine; `Display` prints it as a table.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationReport {
    pub mechanism: Mechanism,
    /// The interpreter programs run with (resolved, absolute).
    pub python: PathBuf,
    /// The parent is root and each worker slot runs as its own unprivileged uid.
    pub drops_root: bool,
    /// A fresh user namespace (the program is uid 65534 inside, no capabilities).
    pub user_namespace: bool,
    /// A fresh network namespace: no interface but its own loopback.
    pub network_isolated: bool,
    /// Everything read-only except the work dir (mount namespace).
    pub filesystem_isolated: bool,
    /// A fresh PID namespace: killing its init kills every process, `setsid` or not.
    pub pid_namespace: bool,
    /// `RLIMIT_NPROC` is enforced (it cannot be for a non-root parent without a user namespace).
    pub process_limit: bool,
    /// Programs are forked from a long-lived fork server per worker slot (bubblewrap only).
    pub fork_server: bool,
}

impl IsolationReport {
    /// (threat, what stops it) for each threat the adversarial suite tries.
    pub fn protections(&self) -> Vec<(&'static str, String)> {
        let or_none = |on: bool, what: &str| if on { what.to_string() } else { "NOTHING on this machine".to_string() };
        vec![
            ("network access", or_none(self.network_isolated, "new network namespace (only its own loopback)")),
            ("writes outside the work dir", {
                if self.filesystem_isolated {
                    "mount namespace: system dirs bound read-only, /tmp = HOME = the work dir".into()
                } else if self.drops_root {
                    "unprivileged uid: only world-writable places (/tmp, /dev/shm) remain writable".into()
                } else {
                    "NOTHING on this machine beyond the parent's own permissions".into()
                }
            }),
            ("reading the parent's secrets (env)", "environment cleared; fixed PATH, HOME, LANG, TMPDIR (and PWD) only".into()),
            ("running as root", {
                if self.drops_root {
                    "each worker slot runs as its own unprivileged uid (a leased block above uid_base)".into()
                } else if self.user_namespace {
                    "parent is not root; uid 65534 without capabilities in a user namespace".into()
                } else {
                    "parent is not root".into()
                }
            }),
            ("memory exhaustion", "RLIMIT_AS (MemoryError); private /dev/shm capped at 16 MiB".into()),
            ("fork storms", or_none(self.process_limit, "RLIMIT_NPROC")),
            ("orphans (setsid) outliving the program", {
                if self.pid_namespace {
                    "PID namespace: its init dies with bwrap, the kernel kills the rest".into()
                } else if self.drops_root {
                    "kill(-1, SIGKILL) as the slot's uid after every program".into()
                } else {
                    "process group kill only: a setsid orphan can survive".into()
                }
            }),
            ("infinite loops, sleeping past SIGTERM", "wall-clock deadline then SIGKILL; RLIMIT_CPU".into()),
            ("output floods", "stdout/stderr read continuously, capped in memory".into()),
            ("huge files", "RLIMIT_FSIZE".into()),
        ]
    }
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mechanism {
            Mechanism::Bubblewrap { path, version } => writeln!(f, "mechanism: {} ({version})", path.display())?,
            Mechanism::Direct => writeln!(f, "mechanism: direct child process (no namespaces)")?,
        }
        writeln!(f, "python: {}", self.python.display())?;
        if self.fork_server {
            writeln!(f, "programs: forked from one long-lived sandbox per worker slot, reset between programs")?;
        } else {
            writeln!(f, "programs: one fresh sandbox each")?;
        }
        for (threat, protection) in self.protections() {
            writeln!(f, "  {threat:<40} {protection}")?;
        }
        Ok(())
    }
}

/// The resolved set-up: which mechanism, which binaries, which extra read-only binds.
#[derive(Debug, Clone)]
pub(crate) struct Isolation {
    pub report: IsolationReport,
    pub bwrap: Option<PathBuf>,
    /// Host paths bound read-only at the same place (system dirs and the interpreter's prefix).
    pub ro_binds: Vec<PathBuf>,
    /// (link target, link path) for merged-/usr symlinks such as /lib -> usr/lib.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
}

/// Finds `name` (absolute, or a bare name in [`SANDBOX_PATH`]).
pub(crate) fn resolve(name: &Path, what: &'static str, fix: &'static str) -> Result<PathBuf> {
    if name.is_absolute() {
        return if name.is_file() { Ok(name.to_path_buf()) } else { Err(Error::NotFound { what, path: name.into(), fix }) };
    }
    SANDBOX_PATH.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file()).ok_or_else(|| Error::NotFound { what, path: name.into(), fix })
}

impl Isolation {
    /// The bubblewrap set-up, not yet probed.
    pub fn bubblewrap(cfg: &SandboxConfig, python: &Path, drops_root: bool) -> Result<Self> {
        let bwrap = resolve(&cfg.bwrap, "bubblewrap", "run scripts/system-deps.sh (apt-get install bubblewrap)")?;
        let version = std::process::Command::new(&bwrap).arg("--version").output().map_err(|e| Error::BwrapUnusable(format!("{}: {e}", bwrap.display())))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let mut ro_binds = vec![PathBuf::from("/usr")];
        let mut symlinks = Vec::new();
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            let top = Path::new(top);
            match std::fs::read_link(top) {
                Ok(target) => symlinks.push((target, top.to_path_buf())),
                Err(_) if top.is_dir() => ro_binds.push(top.to_path_buf()),
                Err(_) => {}
            }
        }
        ro_binds.extend(ETC_FILES.iter().map(PathBuf::from).filter(|p| p.exists()));
        // An interpreter outside /usr (a venv, /opt/python): bind its prefix, and the prefix
        // of what its symlink points to, read-only.
        for p in [python.to_path_buf(), python.canonicalize().unwrap_or_else(|_| python.to_path_buf())] {
            if let Some(prefix) = p.parent().and_then(Path::parent) {
                if !ro_binds.iter().any(|b| prefix.starts_with(b)) && prefix != Path::new("/") {
                    ro_binds.push(prefix.to_path_buf());
                }
            }
        }
        Ok(Isolation {
            report: IsolationReport {
                mechanism: Mechanism::Bubblewrap { path: bwrap.clone(), version },
                python: python.to_path_buf(),
                drops_root,
                user_namespace: true,
                network_isolated: true,
                filesystem_isolated: true,
                pid_namespace: true,
                process_limit: true,
                fork_server: cfg.fork_server,
            },
            bwrap: Some(bwrap),
            ro_binds,
            symlinks,
        })
    }

    /// The direct (no namespace) set-up.
    pub fn direct(python: &Path, drops_root: bool) -> Self {
        Isolation {
            report: IsolationReport {
                mechanism: Mechanism::Direct,
                python: python.to_path_buf(),
                drops_root,
                user_namespace: false,
                network_isolated: false,
                filesystem_isolated: false,
                pid_namespace: false,
                process_limit: drops_root,
                fork_server: false,
            },
            bwrap: None,
            ro_binds: Vec::new(),
            symlinks: Vec::new(),
        }
    }

    /// The argv that runs `inner` (the interpreter's argv) inside the sandbox, with `work_dir`
    /// as /tmp. In direct mode `inner` runs as it is, in `work_dir`.
    ///
    /// `--die-with-parent` (PR_SET_PDEATHSIG) fires when the *thread* that spawned bwrap exits,
    /// so a sandbox that outlives one `run` call must be spawned from a thread that lives as
    /// long as it does (see `forkserver::Spawner`).
    pub fn command(&self, work_dir: &Path, inner: Vec<OsString>) -> Vec<OsString> {
        let Some(bwrap) = &self.bwrap else { return inner };
        let mut a: Vec<OsString> = vec![bwrap.into()];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(OsString::from));
        push(&["--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534"]);
        push(&["--hostname", "sandbox"]);
        for b in &self.ro_binds {
            a.extend(["--ro-bind".into(), b.into(), b.into()]);
        }
        for (target, link) in &self.symlinks {
            a.extend(["--symlink".into(), target.into(), link.into()]);
        }
        a.extend(["--bind".into(), work_dir.into(), "/tmp".into()]);
        let shm = SHM_BYTES.to_string();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(OsString::from));
        push(&["--chdir", "/tmp", "--proc", "/proc", "--dev", "/dev"]);
        push(&["--perms", "1777", "--size", &shm, "--tmpfs", "/dev/shm"]);
        // bwrap's new root is a tmpfs: make it read-only too, so that writes to /etc or /
        // fail instead of landing in memory. Mounts on top of it (the work dir) stay writable.
        push(&["--remount-ro", "/"]);
        push(&["--clearenv"]);
        for (k, v) in program_env("/tmp") {
            push(&["--setenv", k, &v]);
        }
        push(&["--"]);
        a.extend(inner);
        a
    }

    /// Whether `mode` asks for bubblewrap at all.
    pub fn wants_bwrap(mode: IsolationMode) -> bool {
        mode != IsolationMode::Direct
    }
}

/// The whole environment of a program: nothing of the parent's.
pub(crate) fn program_env(home: &str) -> Vec<(&'static str, String)> {
    vec![("PATH", SANDBOX_PATH.to_string()), ("HOME", home.to_string()), ("TMPDIR", home.to_string()), ("LANG", "C.UTF-8".to_string())]
}
