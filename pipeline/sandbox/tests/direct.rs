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

#[test]
fn direct_mode_kills_a_setsid_orphan_and_times_out_loops() {
    let sb = direct();
    let marker = format!("distill-direct-orphan-{}", std::process::id());
    let started = Instant::now();
    let limits = Limits { wall_timeout: Duration::from_millis(1500), ..Limits::default() };
    let o = sb.run(&Program::with_limits(
        format!(
            "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\nwhile True: pass"
        ),
        limits,
    ));
    assert_eq!(o.status, Status::Timeout, "{o:#?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes())));
    // Only a root parent can sweep a setsid orphan (by uid); a non-root parent kills the group.
    if sb.isolation().drops_root {
        assert!(!alive, "the setsid orphan survived");
    }
}
