//! Running many programs through the sandbox with `workers` in flight, building each program
//! only when a worker takes it (a "+" program embeds all of its task's inputs and expected
//! outputs, up to a few hundred KiB, so building them all up front would hold every one in
//! memory at once) and counting progress as they finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use distill_sandbox::{Outcome, Program, Sandbox};

/// Runs programs `0..count` (built by `build`) and returns their outcomes in order.
pub(crate) fn run_indexed(sandbox: &Sandbox, count: usize, build: &(dyn Fn(usize) -> Program + Sync), bar: &indicatif::ProgressBar) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; count]);
    let workers = sandbox.workers().max(1).min(count.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let outcome = sandbox.run(&build(i));
                slots.lock().expect("no worker panics while holding the lock")[i] = Some(outcome);
                bar.inc(1);
            });
        }
    });
    slots.into_inner().expect("workers are done").into_iter().map(|o| o.expect("every index ran")).collect()
}
