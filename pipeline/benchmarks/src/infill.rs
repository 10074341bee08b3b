//! HumanEval infilling (the benchmarks of Bavarian et al. 2022, "Efficient Training of Language
//! Models to Fill in the Middle", built the same way from the same canonical solutions): a
//! block of lines of a task's canonical solution is masked, the model writes it given the code
//! before (`prompt`: the HumanEval prompt and the solution's lines above the block) and after
//! (`suffix`), and the task's own tests judge `prompt + middle + suffix`.
//!
//! - single-line: every non-blank line of a canonical solution, one task each: 1,033 tasks,
//!   the paper's count;
//! - multi-line: every block of consecutive lines from line `i` to line `j >= i`, both
//!   non-blank: 5,815 tasks, the paper's count (its single lines included).
//!
//! The middle is the block without its last newline and the suffix starts with that newline,
//! so a model that writes the line(s) and stops, with or without a newline of its own, gives a
//! program that parses (an extra blank line is harmless in Python). Task ids are
//! `HumanEval/<n>/L<i>` and `HumanEval/<n>/L<i>-<j>` (0-based lines of the canonical solution).

use crate::source::Benchmark;
use crate::task::Task;

/// The infilling tasks of `benchmark` built from HumanEval's `tasks`.
pub(crate) fn tasks(humaneval: &[Task], benchmark: Benchmark) -> Vec<Task> {
    let mut out = Vec::new();
    for t in humaneval {
        let lines: Vec<&str> = t.canonical_solution.split_inclusive('\n').collect();
        let code: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].trim().is_empty()).collect();
        for (a, &i) in code.iter().enumerate() {
            let ends: &[usize] = if benchmark == Benchmark::HumanEvalInfillMulti { &code[a..] } else { &code[a..=a] };
            for &j in ends {
                let block = lines[i..=j].concat();
                let middle = block.strip_suffix('\n').unwrap_or(&block);
                let id = if benchmark == Benchmark::HumanEvalInfillSingle { format!("{}/L{i}", t.task_id) } else { format!("{}/L{i}-{j}", t.task_id) };
                out.push(Task {
                    benchmark,
                    task_id: id,
                    prompt: format!("{}{}", t.prompt, lines[..i].concat()),
                    canonical_solution: middle.to_string(),
                    suffix: format!("{}{}", &block[middle.len()..], lines[j + 1..].concat()),
                    ..t.clone()
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            benchmark: Benchmark::HumanEval,
            task_id: "HumanEval/9".into(),
            prompt: "def f(x):\n    \"\"\"Twice x.\"\"\"\n".into(),
            text: "Twice x.".into(),
            canonical_solution: "    y = x\n\n    y += x\n    return y\n".into(),
            suffix: String::new(),
            tests: "def check(c):\n    assert c(2) == 4\n".into(),
            test_list: Vec::new(),
            test_setup: String::new(),
            entry_point: "f".into(),
            plus: None,
        }
    }

    #[test]
    fn every_task_puts_the_canonical_solution_back_together() {
        for b in [Benchmark::HumanEvalInfillSingle, Benchmark::HumanEvalInfillMulti] {
            let got = tasks(&[task()], b);
            for t in &got {
                assert_eq!(format!("{}{}{}", t.prompt, t.canonical_solution, t.suffix), format!("{}{}", task().prompt, task().canonical_solution), "{}", t.task_id);
                assert!(!t.canonical_solution.ends_with('\n') && !t.canonical_solution.trim().is_empty());
                assert_eq!((t.benchmark, t.entry_point.as_str(), t.tests.as_str()), (b, "f", task().tests.as_str()));
            }
            let ids: Vec<&str> = got.iter().map(|t| t.task_id.as_str()).collect();
            if b == Benchmark::HumanEvalInfillSingle {
                assert_eq!(ids, ["HumanEval/9/L0", "HumanEval/9/L2", "HumanEval/9/L3"]);
            } else {
                assert_eq!(ids, ["HumanEval/9/L0-0", "HumanEval/9/L0-2", "HumanEval/9/L0-3", "HumanEval/9/L2-2", "HumanEval/9/L2-3", "HumanEval/9/L3-3"]);
            }
        }
        let single = tasks(&[task()], Benchmark::HumanEvalInfillSingle);
        assert_eq!((single[1].canonical_solution.as_str(), single[1].suffix.as_str()), ("    y += x", "\n    return y\n"));
        assert_eq!(single[1].prompt, format!("{}    y = x\n\n", task().prompt));
    }
}
