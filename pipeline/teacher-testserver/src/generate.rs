//! Deterministic answers with real token and log-probability structure.
//!
//! A tiny "model": a fixed vocabulary of Python-ish tokens (some multi-byte, so `bytes` is
//! not just the ASCII of the token) and, at each position, logits drawn from a SplitMix64
//! generator seeded by sha256 of (model, prompt, sampling parameters, choice index). The
//! reported log-probabilities are the log-softmax of those logits, so each position's
//! probabilities sum to 1 over the vocabulary and the top-k are the k largest. The sampled
//! token is the argmax at temperature 0, otherwise a draw from `softmax(logits / T)` with the
//! same generator. `<eos>` ends an answer (`finish_reason: "stop"`); reaching `max_tokens`
//! gives `"length"`; a stop sequence truncates the text and gives `"stop"`.
//!
//! Same request, same answer, byte for byte; a different prompt, temperature or seed gives a
//! different one.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Index 0 ends the answer and is never printed.
pub const VOCAB: &[&str] = &[
    "<eos>", "def", " ", "(", ")", ":", "\n", "    ", "return", " x", " y", " n", " +", " -", " *", " =", " ==", "1", "2", "0", "if", " else", "for", " in", " range", "print",
    "\"", "hello", ",", "[", "]", "None", "True", "False", " and", " or", "é", "λ", "→", "# ", "sum", "len", "(x)", "i", " i", "+=", "while", " not",
];

/// SplitMix64: tiny, fast, good enough to look random; seeded from sha256.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the generator needs from a request.
#[derive(Debug, Clone)]
pub struct Ask {
    pub model: String,
    /// Prompt text (chat messages as `role: content` lines).
    pub prompt: String,
    pub n: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub seed: u64,
    /// Alternatives per position, when log-probabilities were asked for.
    pub top_logprobs: Option<u32>,
}

/// One position of an answer.
pub struct Tok {
    pub id: usize,
    pub logprob: f32,
    /// (token id, logprob), highest first.
    pub top: Vec<(usize, f32)>,
}

pub struct Choice {
    pub text: String,
    pub finish_reason: &'static str,
    /// The stop sequence that ended the answer, if one did.
    pub stop_sequence: Option<String>,
    pub tokens: Vec<Tok>,
}

pub(crate) fn seed_for(ask: &Ask, choice: u32) -> u64 {
    let mut h = Sha256::new();
    for part in [ask.model.as_bytes(), ask.prompt.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(ask.temperature.to_le_bytes());
    h.update(ask.top_p.to_le_bytes());
    h.update(ask.seed.to_le_bytes());
    h.update(choice.to_le_bytes());
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Generates choice `i` of a request.
pub fn choice(ask: &Ask, i: u32) -> Choice {
    let mut rng = SplitMix::new(seed_for(ask, i));
    let k = ask.top_logprobs.unwrap_or(0) as usize;
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut finish = "length";
    let mut stop_sequence = None;
    let mut logits = [0f64; VOCAB.len()];
    for t in 0..ask.max_tokens {
        for (v, l) in logits.iter_mut().enumerate() {
            *l = rng.unit() * 8.0 - 4.0;
            // Ending becomes likelier as the answer grows, so answers have varied lengths.
            if v == 0 {
                *l += f64::from(t) * 0.15 - 3.0;
            }
        }
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let id = if ask.temperature <= 1e-6 {
            (0..VOCAB.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).expect("vocab is not empty")
        } else {
            let w: Vec<f64> = logits.iter().map(|l| ((l - max) / ask.temperature).exp()).collect();
            let mut u = rng.unit() * w.iter().sum::<f64>();
            let mut pick = VOCAB.len() - 1;
            for (v, wv) in w.iter().enumerate() {
                if u < *wv {
                    pick = v;
                    break;
                }
                u -= wv;
            }
            pick
        };
        let top = if k > 0 {
            let mut order: Vec<usize> = (0..VOCAB.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            order.into_iter().take(k).map(|v| (v, (logits[v] - log_z) as f32)).collect()
        } else {
            Vec::new()
        };
        if id == 0 {
            finish = "stop";
            break;
        }
        text.push_str(VOCAB[id]);
        tokens.push(Tok { id, logprob: (logits[id] - log_z) as f32, top });
        if let Some((pos, s)) = ask.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str()).map(|p| (p, s))).min() {
            text.truncate(pos);
            tokens.pop();
            finish = "stop";
            stop_sequence = Some(s.clone());
            break;
        }
    }
    Choice { text, finish_reason: finish, stop_sequence, tokens }
}

/// Rough prompt token count (bytes / 4, rounded up), as servers without a tokenizer estimate.
pub fn prompt_tokens(prompt: &str) -> u64 {
    prompt.len().div_ceil(4) as u64
}

fn bytes_of(s: &str) -> Value {
    json!(s.as_bytes())
}

/// A chat.completion body.
pub fn chat_body(ask: &Ask, id: &str) -> Value {
    let mut completion_tokens = 0;
    let choices: Vec<Value> = (0..ask.n)
        .map(|i| {
            let c = choice(ask, i);
            completion_tokens += c.tokens.len() as u64 + u64::from(c.finish_reason == "stop");
            let logprobs = ask.top_logprobs.map(|_| {
                json!({"content": c.tokens.iter().map(|t| json!({
                    "token": VOCAB[t.id], "logprob": t.logprob, "bytes": bytes_of(VOCAB[t.id]),
                    "top_logprobs": t.top.iter().map(|(v, lp)| json!({"token": VOCAB[*v], "logprob": lp, "bytes": bytes_of(VOCAB[*v])})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()})
            });
            json!({"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": logprobs, "finish_reason": c.finish_reason})
        })
        .collect();
    let pt = prompt_tokens(&ask.prompt);
    json!({"id": id, "object": "chat.completion", "created": 0, "model": ask.model, "choices": choices,
           "usage": {"prompt_tokens": pt, "completion_tokens": completion_tokens, "total_tokens": pt + completion_tokens}})
}

/// An Anthropic Messages API body: one text block, no log-probabilities; `stop_reason` is
/// `end_turn`, `stop_sequence` or `max_tokens`.
pub fn message_body(ask: &Ask, id: &str) -> Value {
    let c = choice(ask, 0);
    let stop_reason = match (c.finish_reason, &c.stop_sequence) {
        ("length", _) => "max_tokens",
        (_, Some(_)) => "stop_sequence",
        _ => "end_turn",
    };
    let output_tokens = c.tokens.len() as u64 + u64::from(c.finish_reason == "stop");
    json!({"id": id, "type": "message", "role": "assistant", "model": ask.model,
           "content": [{"type": "text", "text": c.text}], "stop_reason": stop_reason, "stop_sequence": c.stop_sequence,
           "usage": {"input_tokens": prompt_tokens(&ask.prompt), "output_tokens": output_tokens}})
}

/// A legacy text_completion body (`logprobs` as parallel lists, alternatives as maps).
pub fn completion_body(ask: &Ask, id: &str) -> Value {
    let mut completion_tokens = 0;
    let choices: Vec<Value> =
        (0..ask.n)
            .map(|i| {
                let c = choice(ask, i);
                completion_tokens += c.tokens.len() as u64 + u64::from(c.finish_reason == "stop");
                let logprobs = ask.top_logprobs.map(|_| {
                let mut offset = ask.prompt.len();
                let offsets: Vec<usize> = c.tokens.iter().map(|t| { let o = offset; offset += VOCAB[t.id].len(); o }).collect();
                json!({
                    "tokens": c.tokens.iter().map(|t| VOCAB[t.id]).collect::<Vec<_>>(),
                    "token_logprobs": c.tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": c.tokens.iter().map(|t| t.top.iter().map(|(v, lp)| (VOCAB[*v].to_string(), json!(lp))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            });
                json!({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish_reason})
            })
            .collect();
    let pt = prompt_tokens(&ask.prompt);
    json!({"id": id, "object": "text_completion", "created": 0, "model": ask.model, "choices": choices,
           "usage": {"prompt_tokens": pt, "completion_tokens": completion_tokens, "total_tokens": pt + completion_tokens}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(prompt: &str, temperature: f64) -> Ask {
        Ask { model: "m".into(), prompt: prompt.into(), n: 2, temperature, top_p: 1.0, max_tokens: 40, stop: vec![], seed: 0, top_logprobs: Some(5) }
    }

    #[test]
    fn answers_are_deterministic_and_depend_on_the_request() {
        let a = chat_body(&ask("write a function", 0.7), "x");
        assert_eq!(a, chat_body(&ask("write a function", 0.7), "x"));
        assert_ne!(a["choices"][0], chat_body(&ask("write a function!", 0.7), "x")["choices"][0]);
        assert_ne!(a["choices"][0], chat_body(&ask("write a function", 0.2), "x")["choices"][0]);
        assert_ne!(a["choices"][0]["message"], a["choices"][1]["message"]);
    }

    #[test]
    fn logprobs_are_a_real_distribution_and_the_top_k_is_sorted() {
        let c = choice(&ask("p", 0.0), 0);
        assert!(!c.tokens.is_empty());
        for t in &c.tokens {
            // Greedy: the sampled token is the most likely one.
            assert_eq!(t.top[0].0, t.id);
            assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1));
            let mass: f32 = t.top.iter().map(|(_, lp)| lp.exp()).sum();
            assert!(mass > 0.0 && mass < 1.0);
        }
        let text: String = c.tokens.iter().map(|t| VOCAB[t.id]).collect();
        assert_eq!(text, c.text);
    }

    #[test]
    fn stop_sequences_cut_the_text() {
        let full = choice(&ask("q", 0.0), 0).text;
        let cut_at = full.char_indices().nth(full.chars().count() / 2).map(|(i, _)| i).unwrap();
        let stop = full[cut_at..].chars().take(2).collect::<String>();
        let a = Ask { stop: vec![stop.clone()], ..ask("q", 0.0) };
        let c = choice(&a, 0);
        assert_eq!(c.finish_reason, "stop");
        assert!(!c.text.contains(&stop));
        assert!(full.starts_with(&c.text));
    }
}
