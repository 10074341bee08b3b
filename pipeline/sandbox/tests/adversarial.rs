//! Hostile programs, each contained, each reported for what it is, all through one pool that
//! must survive them, with an honest program passing at the end. Real Python, real bubblewrap,
//! real sockets; short timeouts to keep the suite fast.
//!
//! Every check runs twice: through the fork-server sandboxes (the default) and through a fresh
//! sandbox per program (`fork_server = false`); see [`each_mode`].

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use distill_sandbox::{IsolationMode, Limits, Mechanism, Outcome, Program, Sandbox, SandboxConfig, Status};

/// Runs `check` with a fork-server sandbox, then with a fresh-sandbox-per-program one, each
/// with its own temp root, which must be empty once the sandbox is dropped: no work dir is
/// left behind, whatever the programs did.
fn each_mode(check: impl Fn(&Sandbox)) {
    for fork_server in [true, false] {
        let root = tempfile::tempdir().unwrap();
        // Slot uids must be able to reach their work dirs inside.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let cfg = SandboxConfig { workers: 3, isolation: IsolationMode::Bwrap, fork_server, temp_root: root.path().to_path_buf(), ..Default::default() };
        let sb = Sandbox::new(cfg).expect("bubblewrap sandbox (run scripts/system-deps.sh)");
        assert!(matches!(sb.isolation().mechanism, Mechanism::Bubblewrap { .. }));
        check(&sb);
        drop(sb);
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "work dirs left behind (fork_server = {fork_server}): {left:?}");
        // Every bwrap of this sandbox names its work dir (under `root`) on its command line:
        // none may outlive the sandbox, nor may anything in its namespaces.
        let root_arg = root.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_with_arg_containing(&root_arg) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!process_with_arg_containing(&root_arg), "a sandbox process outlived its Sandbox (fork_server = {fork_server})");
    }
}

fn quick(source: &str) -> Program {
    Program::with_limits(source, Limits { wall_timeout: Duration::from_millis(1500), ..Limits::default() })
}

fn honest_passes(sb: &Sandbox) {
    let o = sb.run(&quick("def f(x):\n    return x * 2\nassert f(21) == 42\nprint('ok')"));
    assert_eq!((o.status, o.stdout.as_str()), (Status::Passed, "ok\n"), "{o:#?}");
}

#[test]
fn network_to_a_loopback_listener_is_refused() {
    each_mode(|sb| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let o = sb.run(&quick(&format!("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'leak')\nprint('connected')")));
        assert_eq!(o.status, Status::Failed, "{o:#?}");
        assert_eq!(o.exception.as_deref(), Some("ConnectionRefusedError"), "{o:#?}");
        assert!(listener.accept().is_err(), "the listener outside the sandbox was reached");
        honest_passes(sb);
    });
}

#[test]
fn writes_to_tmp_and_home_stay_in_the_work_dir() {
    each_mode(|sb| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let marker = format!("distill-sandbox-escape-{}", std::process::id());
        let o = sb.run(&quick(&format!(
            "import os\n\
             open('/tmp/{marker}', 'w').write('x')\n\
             open(os.path.expanduser('~/{marker}'), 'w').write('x')\n\
             print(os.environ['HOME'], os.getcwd())\n\
             for p in ['{home}/{marker}', '/usr/{marker}', '/etc/{marker}', '/{marker}']:\n\
             \x20   try:\n\
             \x20       open(p, 'w').write('x')\n\
             \x20       print('WROTE', p)\n\
             \x20   except OSError as e:\n\
             \x20       print('denied', p, type(e).__name__)\n"
        )));
        assert_eq!(o.status, Status::Passed, "{o:#?}");
        assert!(!o.stdout.contains("WROTE"), "{}", o.stdout);
        assert_eq!(o.stdout.matches("denied").count(), 4, "{}", o.stdout);
        assert!(o.stdout.starts_with("/tmp /tmp\n"), "HOME and cwd are the work dir: {}", o.stdout);
        for p in [format!("/tmp/{marker}"), format!("{home}/{marker}"), format!("/{marker}")] {
            assert!(!Path::new(&p).exists(), "{p} was written on the host");
        }
        honest_passes(sb);
    });
}

#[test]
fn the_parents_secrets_are_not_in_the_environment() {
    each_mode(|sb| {
        // The variable is set in a child process's environment the sandbox inherits from: this
        // test process. Set it before any sandbox is spawned from this test's thread.
        std::env::set_var("DISTILL_PLANTED_SECRET", "sk-planted-1234");
        let o = sb.run(&quick(
            "import os\nprint(sorted(os.environ))\nassert 'sk-planted' not in repr(dict(os.environ))\n\
             assert 'DISTILL_PLANTED_SECRET' not in os.environ and 'OPENAI_API_KEY' not in os.environ",
        ));
        assert_eq!(o.status, Status::Passed, "{o:#?}");
        assert_eq!(o.stdout.trim(), "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']", "{o:#?}");
        assert!(!o.stdout.contains("sk-planted"));
    });
}

#[test]
fn a_6_gib_allocation_is_out_of_memory() {
    each_mode(|sb| {
        let o = sb.run(&quick("x = bytearray(6 * 1024 ** 3)\nprint(len(x))"));
        assert_eq!(o.status, Status::OutOfMemory, "{o:#?}");
        assert_eq!(o.exception.as_deref(), Some("MemoryError"));
        honest_passes(sb);
    });
}

#[test]
fn a_fork_storm_hits_the_process_limit() {
    each_mode(|sb| {
        let limits = Limits { wall_timeout: Duration::from_secs(3), max_processes: 16, ..Limits::default() };
        let started = Instant::now();
        let o = sb.run(&Program::with_limits(
            "import os, time\nkids = 0\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    kids += 1\n    if kids > 500:\n        print('no limit')\n        break",
            limits,
        ));
        assert_eq!(o.status, Status::Failed, "{o:#?}");
        assert_eq!(o.exception.as_deref(), Some("BlockingIOError"), "{o:#?}");
        assert!(!o.stdout.contains("no limit"));
        // The sleeping children die with the sandbox: the program did not wait for them.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        honest_passes(sb);
    });
}

#[test]
fn a_setsid_orphan_dies_with_the_sandbox() {
    each_mode(|sb| {
        let marker = format!("distill-orphan-{}", std::process::id());
        let o = sb.run(&quick(&format!(
            "import os, time\n\
             if os.fork() == 0:\n\
             \x20   os.setsid()\n\
             \x20   if os.fork() == 0:\n\
             \x20       os.execvp('python3', ['python3', '-c', 'import time; time.sleep(60)', '{marker}'])\n\
             \x20   os._exit(0)\n\
             time.sleep(0.2)\n\
             print('parent done')\n"
        )));
        assert_eq!(o.status, Status::Passed, "{o:#?}");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!process_with_arg_exists(&marker), "the setsid orphan outlived the sandbox");
    });
}

#[test]
fn killing_the_parent_and_everything_else_is_contained() {
    each_mode(|sb| {
        let o = sb.run(&quick(
            "import os, signal\n\
             for target in (os.getppid(), 1, -1):\n\
             \x20   try:\n\
             \x20       os.kill(target, signal.SIGKILL)\n\
             \x20   except OSError as e:\n\
             \x20       print(target, type(e).__name__)\n\
             print('still here')\n",
        ));
        // kill(-1) reaches only the program's own namespace: at most itself is left to die, and
        // the host (this test process) survives either way.
        assert!(matches!(o.status, Status::Passed | Status::Killed), "{o:#?}");
        honest_passes(sb);
    });
}

#[test]
fn ignoring_sigterm_while_sleeping_is_a_timeout() {
    each_mode(|sb| {
        let started = Instant::now();
        let o = sb.run(&quick("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('sleeping', flush=True)\ntime.sleep(60)"));
        assert_eq!(o.status, Status::Timeout, "{o:#?}");
        assert_eq!(o.signal, Some(libc::SIGKILL));
        assert_eq!(o.stdout, "sleeping\n", "output before the timeout is kept");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(o.duration >= Duration::from_millis(1500));
    });
}

#[test]
fn an_infinite_loop_is_a_timeout_and_cpu_limit_is_too() {
    each_mode(|sb| {
        let o = sb.run(&quick("while True:\n    pass"));
        assert_eq!(o.status, Status::Timeout, "{o:#?}");
        let cpu = Limits { wall_timeout: Duration::from_secs(10), cpu_secs: 1, ..Limits::default() };
        let o = sb.run(&Program::with_limits("while True:\n    pass", cpu));
        assert_eq!((o.status, o.signal), (Status::Timeout, Some(libc::SIGXCPU)), "{o:#?}");
    });
}

#[test]
fn a_stdout_flood_is_capped_and_the_traceback_survives() {
    each_mode(|sb| {
        let limits = Limits { wall_timeout: Duration::from_secs(3), output_cap_bytes: 10_000, ..Limits::default() };
        let o = sb.run(&Program::with_limits(
            "import sys\nfor i in range(200_000):\n    print('x' * 100)\n    print('e' * 100, file=sys.stderr)\nraise ValueError('after the flood')",
            limits,
        ));
        assert_eq!(o.status, Status::Failed, "{o:#?}");
        assert_eq!((o.exception.as_deref(), o.message.as_deref()), (Some("ValueError"), Some("after the flood")));
        assert!(o.output_truncated);
        assert!(o.stdout.len() < 20_000 && o.stderr.len() < 20_000, "{} {}", o.stdout.len(), o.stderr.len());
    });
}

#[test]
fn the_pool_survives_all_of_them_at_once_in_input_order() {
    each_mode(|sb| {
        let hostile = [
            "while True: pass",
            "x = bytearray(6 * 1024 ** 3)",
            "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
            "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
            "import sys\nwhile True: sys.stdout.write('y' * 65536)",
            "raise KeyError('k')",
            "import sys; sys.exit(3)",
            "print('fine')",
        ];
        let programs: Vec<Program> = hostile.iter().map(|s| quick(s)).collect();
        let outcomes: Vec<Outcome> = sb.run_all(&programs);
        let statuses: Vec<Status> = outcomes.iter().map(|o| o.status).collect();
        assert_eq!(
            statuses,
            [Status::Timeout, Status::OutOfMemory, Status::Timeout, Status::Killed, Status::Timeout, Status::Failed, Status::Failed, Status::Passed],
            "{outcomes:#?}"
        );
        assert_eq!(outcomes[3].signal, Some(libc::SIGSEGV));
        assert_eq!(outcomes[5].exception.as_deref(), Some("KeyError"));
        assert_eq!(outcomes[6].exit_code, Some(3));
        honest_passes(sb);
    });
}

#[test]
fn the_work_dir_is_fresh_for_every_program_and_removed() {
    each_mode(|sb| {
        let o = sb.run(&quick("import os\nprint(sorted(os.listdir('.')))\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\nos.chmod('a', 0o500)"));
        assert_eq!((o.status, o.stdout.trim()), (Status::Passed, "['program.py']"), "{o:#?}");
        let o = sb.run(&quick("import os\nassert os.listdir('.') == ['program.py'], os.listdir('.')"));
        assert_eq!(o.status, Status::Passed, "{o:#?}");
    });
}

#[test]
fn stdin_is_empty_and_exit_quit_exist() {
    each_mode(|sb| {
        let o = sb.run(&quick("import sys\nassert sys.stdin.read() == ''\nprint(__name__, sys.argv)\nexit(0)"));
        assert_eq!((o.status, o.stdout.trim()), (Status::Passed, "__main__ ['program.py']"), "{o:#?}");
        let o = sb.run(&quick("quit(4)"));
        assert_eq!((o.status, o.exit_code), (Status::Failed, Some(4)), "{o:#?}");
    });
}

fn process_with_arg_containing(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
}

fn process_with_arg_exists(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let mut cmdline = String::new();
        std::fs::File::open(e.path().join("cmdline")).and_then(|mut f| f.read_to_string(&mut cmdline)).is_ok() && cmdline.split('\0').any(|a| a == arg)
    })
}

#[test]
fn a_program_leaves_nothing_behind_for_the_next_one() {
    each_mode(|sb| {
        // Runs one after another, so both land in the same worker slot (and, with the fork
        // server, in the same long-lived sandbox).
        let dirty = sb.run(&quick(
            "import ctypes, os, subprocess, sys\n\
             open('/tmp/left-file', 'w').write('x')\n\
             open('/dev/shm/left-shm', 'w').write('x')\n\
             libc = ctypes.CDLL(None)\n\
             assert libc.shmget(0x5eed, 4096, 0o1600) >= 0\n\
             subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n\
             os.chmod('/tmp', 0)\n",
        ));
        assert_eq!(dirty.status, Status::Passed, "{dirty:#?}");
        let clean = sb.run(&quick(
            "import os\n\
             assert sorted(os.listdir('/tmp')) == ['program.py'], os.listdir('/tmp')\n\
             assert os.listdir('/dev/shm') == [], os.listdir('/dev/shm')\n\
             assert open('/proc/sysvipc/shm').read().splitlines()[1:] == []\n\
             mine = {os.getpid()}\n\
             p = os.getpid()\n\
             while p > 1:\n\
             \x20   p = int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1])\n\
             \x20   mine.add(p)\n\
             others = [int(q) for q in os.listdir('/proc') if q.isdigit() and int(q) not in mine]\n\
             assert others == [], [open(f'/proc/{q}/cmdline').read() for q in others]\n",
        ));
        assert_eq!(clean.status, Status::Passed, "{clean:#?}");
    });
}

#[test]
fn a_planted_symlink_never_redirects_the_parents_writes() {
    each_mode(|sb| {
        // A host file the root parent could be tricked into overwriting or chowning.
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("victim");
        std::fs::write(&victim, "original").unwrap();
        let o = sb.run(&quick(&format!("import os\nos.remove('/tmp/program.py')\nos.symlink('{0}', '/tmp/program.py')\nos.symlink('{0}', '/tmp/other')", victim.display())));
        assert_eq!(o.status, Status::Passed, "{o:#?}");
        honest_passes(sb);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), nix::unistd::geteuid().as_raw());
    });
}

#[test]
fn work_dirs_left_by_a_dead_process_are_removed_by_the_next_sandbox() {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = root.path().join(format!("distill-sbx-{dead_pid}-AbCdEf"));
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    let alive = root.path().join(format!("distill-sbx-{}-AbCdEf", std::process::id()));
    std::fs::create_dir(&alive).unwrap();
    let sb = Sandbox::new(SandboxConfig { workers: 1, temp_root: root.path().to_path_buf(), ..Default::default() }).unwrap();
    assert!(!stale.exists(), "the dead process's work dir is still there");
    assert!(alive.exists(), "a live process's work dir was removed");
    drop(sb);
}

#[test]
fn random_differs_between_programs_of_one_slot() {
    each_mode(|sb| {
        let draw = || {
            let o = sb.run(&quick("import random\nprint(random.getrandbits(64))"));
            assert_eq!(o.status, Status::Passed, "{o:#?}");
            o.stdout
        };
        let (a, b) = (draw(), draw());
        assert_ne!(a, b, "two programs drew the same random numbers");
    });
}
