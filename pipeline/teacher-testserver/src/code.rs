//! Realistic code answers for the scale benchmark (`make bench-scale`): what a strong teacher
//! sends for a coding prompt, at the volume of a real run.
//!
//! Each choice is a short explanation, a fenced block of 2-6 Python functions (five templates:
//! an accumulating loop, a counting comprehension, string slicing, a running maximum, word
//! counts, with names, constants and docstrings drawn per answer) and a fenced block of
//! `assert` tests whose expected values are computed here, so the code runs and passes. The
//! text is split into real tokens of the given byte-level BPE (the student's), and every
//! position gets top-k alternatives (the sampled token and other vocabulary tokens, with
//! their `bytes`) and log-probabilities that form a distribution (top-k plus a tail bucket
//! sum to 1). Deterministic: the same request gives the same bytes.
//!
//! The body is written directly (JSON fragments per vocabulary id computed once), because at
//! 40 million tokens x 21 entries the server must not be the bottleneck of what it measures.

use std::fmt::Write as _;
use std::path::Path;

use distill_shards::StudentTokenizer;

use crate::generate::{prompt_tokens, Ask, SplitMix};

const WORDS: &[&str] = &[
    "total", "value", "count", "items", "record", "buffer", "index", "score", "window", "weight", "limit", "offset", "token", "batch", "frame", "chunk", "node", "edge", "path",
    "queue", "stack", "span", "delta", "price", "amount", "label", "field", "entry",
];
const VERBS: &[&str] = &["compute", "count", "collect", "merge", "scale", "reduce", "find", "build", "parse", "track", "sum", "rank"];

/// Answers from a tokenizer; see the module docs.
pub struct CodeAnswers {
    tok: StudentTokenizer,
    /// Per id: `{"token":"<text>","logprob":` and `,"bytes":[..]` as JSON fragments.
    head: Vec<String>,
    bytes: Vec<String>,
    /// Ids that have bytes (candidates for alternatives).
    alternatives: Vec<u32>,
    /// Characters per token of this tokenizer on these answers (to size them in tokens).
    chars_per_token: f64,
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialise"));
}

impl CodeAnswers {
    pub fn load(tokenizer: &Path) -> Result<Self, String> {
        let tok = StudentTokenizer::load(tokenizer).map_err(|e| e.to_string())?;
        let n = tok.vocab_size();
        let (mut head, mut bytes, mut alternatives) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        for id in 0..n as u32 {
            let b = tok.bytes(id);
            let mut h = String::from("{\"token\":");
            json_string(&mut h, &String::from_utf8_lossy(b));
            h.push_str(",\"logprob\":");
            head.push(h);
            bytes.push(format!(",\"bytes\":{}", serde_json::to_string(b).expect("bytes serialise")));
            if !b.is_empty() {
                alternatives.push(id);
            }
        }
        let sample = Self::text(&mut SplitMix::new(1), 20_000);
        let chars_per_token = sample.len() as f64 / tok.encode(&sample).map_err(|e| e.to_string())?.len().max(1) as f64;
        Ok(CodeAnswers { tok, head, bytes, alternatives, chars_per_token })
    }

    /// The text of one choice, about `target` characters long.
    pub fn text(rng: &mut SplitMix, target: usize) -> String {
        let pick = |rng: &mut SplitMix, list: &[&'static str]| list[(rng.next_u64() % list.len() as u64) as usize];
        let mut code = String::new();
        let mut tests = String::new();
        let mut names = Vec::new();
        while code.len() + tests.len() < target || names.len() < 2 {
            let name = format!("{}_{}_{}", pick(rng, VERBS), pick(rng, WORDS), rng.next_u64() % 1000);
            let (a, b) = (pick(rng, WORDS), pick(rng, WORDS));
            let (a, b) = if a == b { (a, "other") } else { (a, b) };
            let k = (rng.next_u64() % 9) as i64 + 1;
            match rng.next_u64() % 5 {
                0 => {
                    let c0 = (rng.next_u64() % 50) as i64;
                    let _ = write!(code, "def {name}({a}, {b}):\n    \"\"\"Add {b} * i + {k} for each i below {a}, starting from {c0}.\"\"\"\n    result = {c0}\n    for i in range({a}):\n        result += {b} * i + {k}\n    return result\n\n\n");
                    for _ in 0..2 {
                        let (x, y) = ((rng.next_u64() % 20) as i64, (rng.next_u64() % 10) as i64);
                        let _ = writeln!(tests, "assert {name}({x}, {y}) == {}", c0 + y * x * (x - 1) / 2 + k * x);
                    }
                }
                1 => {
                    let _ = write!(
                        code,
                        "def {name}({a}):\n    \"\"\"Count the numbers below {a} that are divisible by {k}.\"\"\"\n    return sum(1 for i in range({a}) if i % {k} == 0)\n\n\n"
                    );
                    for _ in 0..2 {
                        let x = (rng.next_u64() % 100) as i64;
                        let _ = writeln!(tests, "assert {name}({x}) == {}", (x + k - 1) / k);
                    }
                }
                2 => {
                    let _ = write!(code, "def {name}(text):\n    \"\"\"Return the {a} of the text: reversed, in upper case.\"\"\"\n    return text[::-1].upper()\n\n\n");
                    let w = format!("{a} {b}");
                    let _ = writeln!(tests, "assert {name}({w:?}) == {:?}", w.chars().rev().collect::<String>().to_uppercase());
                }
                3 => {
                    let d = -((rng.next_u64() % 5) as i64);
                    let _ = write!(code, "def {name}({a}):\n    \"\"\"The largest {b} in the list, or {d} when it is empty.\"\"\"\n    if not {a}:\n        return {d}\n    best = {a}[0]\n    for x in {a}[1:]:\n        if x > best:\n            best = x\n    return best\n\n\n");
                    let xs: Vec<i64> = (0..(rng.next_u64() % 6 + 1)).map(|_| (rng.next_u64() % 200) as i64 - 50).collect();
                    let _ = writeln!(tests, "assert {name}({xs:?}) == {}", xs.iter().max().expect("not empty"));
                    let _ = writeln!(tests, "assert {name}([]) == {d}");
                }
                _ => {
                    let _ = write!(code, "def {name}(text):\n    \"\"\"Count each {a} of the text, split on whitespace.\"\"\"\n    counts = {{}}\n    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n    return counts\n\n\n");
                    let _ = writeln!(tests, "assert {name}(\"{a} {b} {a}\") == {{\"{a}\": 2, \"{b}\": 1}}");
                }
            }
            names.push(name);
        }
        format!(
            "Here is a solution: `{}` does the main work and the other functions are helpers. Each one has a docstring, and the tests below check them.\n\n```python\n{}```\n\nTests:\n\n```python\n{}```\n",
            names[0],
            code.trim_end().to_string() + "\n",
            tests
        )
    }

    /// A chat.completion body for `ask` (answers of ~`max_tokens * 0.78` tokens).
    pub fn chat_body(&self, ask: &Ask, id: &str) -> Vec<u8> {
        let k = ask.top_logprobs.unwrap_or(0) as usize;
        let mut out = String::with_capacity(4096 + ask.n as usize * ask.max_tokens as usize * (60 + 70 * k));
        let _ = write!(out, "{{\"id\":\"{id}\",\"object\":\"chat.completion\",\"created\":0,\"model\":");
        json_string(&mut out, &ask.model);
        out.push_str(",\"choices\":[");
        let mut completion_tokens = 0u64;
        let mut lp = ryu::Buffer::new();
        for i in 0..ask.n {
            let mut rng = SplitMix::new(crate::generate::seed_for(ask, i));
            // About 78% of max_tokens, so answers end on their own ("stop") at ~400 of 512.
            let text = Self::text(&mut rng, ((ask.max_tokens as f64 * 0.78 * self.chars_per_token) as usize).max(200));
            let ids = self.tok.encode(&text).unwrap_or_default();
            let (ids, finish) = if ids.len() > ask.max_tokens as usize { (&ids[..ask.max_tokens as usize], "length") } else { (&ids[..], "stop") };
            let text: Vec<u8> = ids.iter().flat_map(|&t| self.tok.bytes(t).iter().copied()).collect();
            completion_tokens += ids.len() as u64;
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"index\":{i},\"message\":{{\"role\":\"assistant\",\"content\":");
            json_string(&mut out, &String::from_utf8_lossy(&text));
            out.push_str("},\"logprobs\":");
            if ask.top_logprobs.is_none() {
                out.push_str("null");
            } else {
                out.push_str("{\"content\":[");
                for (p, &t) in ids.iter().enumerate() {
                    if p > 0 {
                        out.push(',');
                    }
                    let (sampled, top) = self.position(&mut rng, t, k);
                    out.push_str(&self.head[t as usize]);
                    out.push_str(lp.format(sampled));
                    out.push_str(&self.bytes[t as usize]);
                    out.push_str(",\"top_logprobs\":[");
                    for (j, (alt, l)) in top.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(&self.head[*alt as usize]);
                        out.push_str(lp.format(*l));
                        out.push_str(&self.bytes[*alt as usize]);
                        out.push('}');
                    }
                    out.push_str("]}");
                }
                out.push_str("]}");
            }
            let _ = write!(out, ",\"finish_reason\":\"{finish}\"}}");
        }
        let pt = prompt_tokens(&ask.prompt);
        let _ = write!(out, "],\"usage\":{{\"prompt_tokens\":{pt},\"completion_tokens\":{completion_tokens},\"total_tokens\":{}}}}}", pt + completion_tokens);
        out.into_bytes()
    }

    /// The sampled token's log-prob and the top-`k` (id, log-prob), highest first: logits for
    /// k alternatives and a tail bucket, log-softmaxed together. Usually the sampled token is
    /// the most likely; one time in ten it is the second or third.
    fn position(&self, rng: &mut SplitMix, sampled: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
        if k == 0 {
            return (-(rng.unit().powi(3) * 2.0) as f32, Vec::new());
        }
        let margin = rng.unit() * 9.0;
        let logits: Vec<f64> = (0..k).map(|j| if j == 0 { margin } else { -(j as f64) * 0.35 - rng.unit() }).collect();
        let tail = 1.5 - rng.unit();
        let max = logits[0].max(tail);
        let lse = max + (logits.iter().map(|l| (l - max).exp()).sum::<f64>() + (tail - max).exp()).ln();
        let mut ids: Vec<u32> = Vec::with_capacity(k);
        ids.push(sampled);
        while ids.len() < k {
            let alt = self.alternatives[(rng.next_u64() % self.alternatives.len() as u64) as usize];
            if !ids.contains(&alt) {
                ids.push(alt);
            }
        }
        let rank = if rng.unit() < 0.1 { 1 + (rng.next_u64() % 2) as usize } else { 0 };
        ids.swap(0, rank.min(k - 1));
        let top: Vec<(u32, f32)> = ids.into_iter().zip(&logits).map(|(id, l)| (id, (l - lse) as f32)).collect();
        let lp = top.iter().find(|(id, _)| *id == sampled).map_or(-20.0, |x| x.1);
        (lp, top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_python_that_passes_its_own_tests() {
        let mut programs = String::new();
        for seed in 0..40 {
            let mut rng = SplitMix::new(seed);
            let text = CodeAnswers::text(&mut rng, 1200);
            let blocks: Vec<&str> = text.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
            assert_eq!(blocks.len(), 2, "{text}");
            assert!(blocks[1].lines().count() >= 2);
            // Each answer in a scope of its own, as the filter runs it.
            let _ = writeln!(programs, "exec(compile({:?}, 'answer-{seed}', 'exec'), {{}})", format!("{}\n{}", blocks[0], blocks[1]));
        }
        let out = std::process::Command::new("python3").args(["-c", &programs]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
