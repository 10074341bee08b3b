//! The fallback for machines without user namespaces: `isolation = "direct"`. Weaker (no
//! network or filesystem isolation, and the report says so), but still a separate session with
//! rlimits, a scrubbed environment, an unprivileged uid when root, and everything it started
//! killed at the deadline or when it exits.

use std::time::{Duration, Instant};

use distill_sandbox::{IsolationMode, Limits, Mechanism, Program, Sandbox, SandboxConfig, Status};

fn direct() -> Sandbox {
    Sandbox::new(SandboxConfig { isolation: IsolationMode::Direct, workers: 2, ..Default::default() }).expect("direct sandbox")
}

#[test]
fn direct_mode_reports_what_it_cannot_do_and_still_runs_programs() {
    let sb = direct();
    let report = sb.isolation();
    assert_eq!(report.mechanism, Mechanism::Direct);
    assert!(!report.network_isolated && !report.filesystem_isolated && !report.pid_namespace);
    assert!(report.to_string().contains("NOTHING on this machine"), "{report}");

    std::env::set_var("DISTILL_DIRECT_SECRET", "sk-direct");
    let o = sb.run(&Program::new("import os\nassert 'DISTILL_DIRECT_SECRET' not in os.environ\nprint(os.getcwd() == os.environ['HOME'])"));
    assert_eq!((o.status, o.stdout.as_str()), (Status::Passed, "True\n"), "{o:#?}");
    let o = sb.run(&Program::new("def f():\n    raise ValueError('bad value')\nf()"));
    assert_eq!((o.status, o.exception.as_deref(), o.message.as_deref()), (Status::Failed, Some("ValueError"), Some("bad value")));
}

/// Pids of processes whose command line holds `marker` as one argument.
fn pids_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes())))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn direct_mode_kills_the_programs_group_and_a_setsid_orphan_as_its_report_says() {
    let sb = direct();
    let child = format!("distill-direct-child-{}", std::process::id());
    let orphan = format!("distill-direct-orphan-{}", std::process::id());
    let started = Instant::now();
    let limits = Limits { wall_timeout: Duration::from_millis(1500), ..Limits::default() };
    // A child left in the program's process group, and one that leaves it with setsid.
    let sleeper = |marker: &str| format!("os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])");
    let o = sb.run(&Program::with_limits(
        format!("import os, sys, time\nif os.fork() == 0:\n    {}\nif os.fork() == 0:\n    os.setsid()\n    {}\nwhile True: pass", sleeper(&child), sleeper(&orphan)),
        limits,
    ));
    assert_eq!(o.status, Status::Timeout, "{o:#?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert!(pids_with(&child).is_empty(), "a child in the program's process group survived the timeout");
    let surviving = pids_with(&orphan);
    let report = sb.isolation();
    let promise = report.protections().into_iter().find(|(threat, _)| threat.starts_with("orphans")).unwrap().1;
    if report.drops_root {
        // A root parent sweeps by uid: kill(-1) as the slot's uid.
        assert!(surviving.is_empty(), "the setsid orphan survived");
        assert_eq!(promise, "kill(-1, SIGKILL) as the slot's uid after every program");
    } else {
        // A non-root parent can only kill the group, and the report must not claim more.
        assert_eq!(promise, "process group kill only: a setsid orphan can survive");
        for pid in surviving {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
