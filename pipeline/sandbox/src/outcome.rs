//! What happened to a program: [`Status`] and [`Outcome`], the capped output buffers, and the
//! traceback parser that names the exception.
//!
//! Classification, in order:
//! 1. the parent killed the sandbox at the wall-clock deadline, or the kernel sent SIGXCPU
//!    (CPU limit): `Timeout`;
//! 2. the program died of another signal: `Killed` (with the signal);
//! 3. exit status 0: `Passed`;
//! 4. otherwise `Failed`, with the exception type and message from the last traceback on
//!    stderr; `OutOfMemory` when that exception is a `MemoryError` (or a subclass whose name
//!    ends so, such as numpy's `_ArrayMemoryError`), which is what `RLIMIT_AS` produces.
//!
//! bubblewrap reports a child killed by signal N as exit status 128 + N, so statuses 129..=192
//! read as signals: a program that calls `sys.exit(137)` shows as killed by SIGKILL, and did
//! not pass either way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The verdict on one program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit status 0.
    Passed,
    /// Non-zero exit: an uncaught exception (see `exception`, `message`) or `sys.exit(n)`.
    Failed,
    /// Past the wall-clock timeout or the CPU limit; everything it started was killed.
    Timeout,
    /// Died of a signal (see `signal`): SIGSEGV, SIGXFSZ, a SIGKILL it sent itself, ...
    Killed,
    /// Ran out of its address space (`MemoryError`).
    OutOfMemory,
    /// The sandbox itself could not run the program (spawning failed, the work dir could not be
    /// made): not the program's fault, see `message`.
    Error,
}

/// Everything known about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// The exception's type as Python prints it (`AssertionError`, `__main__.MyError`).
    pub exception: Option<String>,
    /// The exception's message (may span lines), or the sandbox's error for `Status::Error`.
    pub message: Option<String>,
    /// The signal that ended it, for `Killed` (and a SIGXCPU or wall-clock SIGKILL `Timeout`).
    pub signal: Option<i32>,
    /// The exit status, when it exited.
    pub exit_code: Option<i32>,
    /// Wall time from spawn to exit, interpreter start-up included.
    pub duration: Duration,
    /// Captured stdout, capped at `Limits::output_cap_bytes` (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr, the first `output_cap_bytes` and the last 4 KiB.
    pub stderr: String,
    /// Whether either stream was longer than its cap.
    pub output_truncated: bool,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }

    pub(crate) fn with_status(self, status: Status) -> Self {
        Outcome { status, ..self }
    }

    /// An outcome for a program the sandbox could not run.
    pub(crate) fn sandbox_error(message: String, duration: Duration) -> Self {
        Outcome {
            status: Status::Error,
            exception: None,
            message: Some(message),
            signal: None,
            exit_code: None,
            duration,
            stdout: String::new(),
            stderr: String::new(),
            output_truncated: false,
        }
    }
}

/// How the process ended, as the parent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited(i32),
    Signaled(i32),
}

/// Builds the outcome from the way the process ended and its output.
pub(crate) fn classify(ending: Ending, timed_out: bool, signals_as_exit_codes: bool, duration: Duration, stdout: Capture, stderr: Capture) -> Outcome {
    let ending = match ending {
        Ending::Exited(code) if signals_as_exit_codes && (129..=192).contains(&code) => Ending::Signaled(code - 128),
        other => other,
    };
    let output_truncated = stdout.truncated() || stderr.truncated();
    let stderr_text = stderr.into_string();
    let (status, signal, exit_code) = match ending {
        _ if timed_out => (Status::Timeout, Some(libc::SIGKILL), None),
        Ending::Signaled(sig) if sig == libc::SIGXCPU => (Status::Timeout, Some(sig), None),
        Ending::Signaled(sig) => (Status::Killed, Some(sig), None),
        Ending::Exited(0) => (Status::Passed, None, Some(0)),
        Ending::Exited(code) => (Status::Failed, None, Some(code)),
    };
    let (exception, message) = match status {
        Status::Failed | Status::Killed => parse_exception(&stderr_text).map_or((None, None), |(e, m)| (Some(e), m)),
        _ => (None, None),
    };
    let status = match (&status, &exception) {
        (Status::Failed, Some(e)) if e.ends_with("MemoryError") => Status::OutOfMemory,
        _ => status,
    };
    Outcome { status, exception, message, signal, exit_code, duration, stdout: stdout.into_string(), stderr: stderr_text, output_truncated }
}

/// The type and message of the last exception in a Python traceback.
///
/// A traceback is `Traceback (most recent call last):`, indented frame lines, then one
/// unindented `Type: message` line whose message may continue on later lines. Chained
/// exceptions print several; the last is the one that ended the program. Returns `None` when
/// stderr holds no traceback (a `sys.exit(1)`, say).
pub fn parse_exception(stderr: &str) -> Option<(String, Option<String>)> {
    let start = stderr.rfind("Traceback (most recent call last):")?;
    let mut lines = stderr[start..].lines().skip(1);
    let head = lines.find(|l| !l.is_empty() && !l.starts_with(' ') && !l.starts_with('\t'))?;
    let rest: Vec<&str> = lines.collect();
    let (ty, first) = match head.split_once(": ") {
        Some((ty, msg)) if is_type_name(ty) => (ty, Some(msg)),
        _ if is_type_name(head.trim_end_matches(':')) => (head.trim_end_matches(':'), None),
        _ => return None,
    };
    let message = match first {
        Some(first) => {
            let mut text = first.to_string();
            for line in rest {
                text.push('\n');
                text.push_str(line);
            }
            Some(text.trim_end().to_string())
        }
        None => None,
    };
    Some((ty.to_string(), message))
}

fn is_type_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// Bytes always kept from the end of a stream: a traceback fits.
pub(crate) const TAIL_BYTES: usize = 4096;

/// A capped copy of one output stream: the first `cap` bytes, the last [`TAIL_BYTES`] and the
/// total length. Memory stays bounded however much the program writes.
#[derive(Debug)]
pub(crate) struct Capture {
    cap: usize,
    head: Vec<u8>,
    /// Ring buffer of the bytes after the head; `tail_pos` is where the next byte goes.
    tail: Vec<u8>,
    tail_pos: usize,
    total: u64,
}

impl Capture {
    pub(crate) fn new(cap: usize) -> Self {
        Capture { cap, head: Vec::new(), tail: Vec::new(), tail_pos: 0, total: 0 }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.cap.saturating_sub(self.head.len());
        let take = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if bytes.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
            self.tail_pos = 0;
            return;
        }
        for &b in bytes {
            if self.tail.len() < TAIL_BYTES {
                self.tail.push(b);
            } else {
                self.tail[self.tail_pos] = b;
                self.tail_pos = (self.tail_pos + 1) % TAIL_BYTES;
            }
        }
    }

    pub(crate) fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    pub(crate) fn into_string(self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.tail.is_empty() {
            return out;
        }
        let omitted = self.total - (self.head.len() + self.tail.len()) as u64;
        if omitted > 0 {
            out.push_str(&format!("\n[... {omitted} bytes omitted ...]\n"));
        }
        let (newer, older) = self.tail.split_at(self.tail_pos);
        let mut tail = older.to_vec();
        tail.extend_from_slice(newer);
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_exception_of_a_chained_traceback() {
        let err = "Traceback (most recent call last):\n  File \"p.py\", line 1, in <module>\nKeyError: 'a'\n\n\
                   During handling of the above exception, another exception occurred:\n\n\
                   Traceback (most recent call last):\n  File \"p.py\", line 3, in <module>\n    assert f(1) == 2, \"bad\"\n\
                   AssertionError: bad\nsecond line\n";
        assert_eq!(parse_exception(err), Some(("AssertionError".into(), Some("bad\nsecond line".into()))));
        let bare = "Traceback (most recent call last):\n  File \"p.py\", line 3, in <module>\nAssertionError\n";
        assert_eq!(parse_exception(bare), Some(("AssertionError".into(), None)));
        let qualified = "Traceback (most recent call last):\n  File \"x\", line 1\n__main__.Oops: no\n";
        assert_eq!(parse_exception(qualified), Some(("__main__.Oops".into(), Some("no".into()))));
        assert_eq!(parse_exception("just text\n"), None);
    }

    #[test]
    fn capture_keeps_head_and_tail_of_a_flood() {
        let mut c = Capture::new(10);
        for i in 0..10_000u32 {
            c.push(format!("{i}\n").as_bytes());
        }
        assert!(c.truncated());
        let s = c.into_string();
        assert!(s.starts_with("0\n1\n2\n3\n4\n"), "{s}");
        assert!(s.ends_with("9998\n9999\n"), "{s}");
        assert!(s.len() < 10 + TAIL_BYTES + 64);
        let mut small = Capture::new(100);
        small.push(b"hello");
        assert!(!small.truncated());
        assert_eq!(small.into_string(), "hello");
    }

    #[test]
    fn memory_error_is_out_of_memory_and_exit_137_is_sigkill() {
        let mut err = Capture::new(100);
        err.push(b"Traceback (most recent call last):\n  File \"p\", line 1\nMemoryError\n");
        let o = classify(Ending::Exited(1), false, true, Duration::ZERO, Capture::new(1), err);
        assert_eq!((o.status, o.exception.as_deref()), (Status::OutOfMemory, Some("MemoryError")));
        let o = classify(Ending::Exited(137), false, true, Duration::ZERO, Capture::new(1), Capture::new(1));
        assert_eq!((o.status, o.signal), (Status::Killed, Some(9)));
        let o = classify(Ending::Exited(137), false, false, Duration::ZERO, Capture::new(1), Capture::new(1));
        assert_eq!((o.status, o.exit_code), (Status::Failed, Some(137)));
    }
}
