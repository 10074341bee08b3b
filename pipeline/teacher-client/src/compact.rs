//! The compact form of a parsed answer ([`Parsed`]), as the v2 cache stores it:
//!
//! ```text
//! version u8 (= 1) ‖ model: opt-string ‖ usage: u8 flag [‖ varint prompt ‖ varint completion]
//! ‖ varint #samples ‖ per sample: text (length-prefixed) ‖ finish_reason: opt-string
//!     ‖ u8 has-tokens [‖ tokens in `distill_core::logprobs` form]
//! opt-string = u8 0 (none) | u8 1 ‖ length-prefixed UTF-8
//! ```
//!
//! and zstd around it. Everything the parser keeps is kept; log-probs to 1/2048 nat (see
//! `distill_core::logprobs`). A v1 entry kept the server's JSON body: 1.5-4 KB per teacher
//! token at top-20, against ~50 bytes here.

use distill_core::logprobs;
use distill_core::records::{TeacherSample, Usage};
use distill_core::varint::{self, Corrupt, Reader};

use crate::response::Parsed;

const VERSION: u8 = 1;

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            varint::put_bytes(out, s.as_bytes());
        }
    }
}

fn get_opt_str(r: &mut Reader) -> Result<Option<String>, Corrupt> {
    match r.get_u8()? {
        0 => Ok(None),
        _ => Ok(Some(r.get_str()?.to_string())),
    }
}

/// zstd-compressed binary form of `p`.
pub fn encode(p: &Parsed) -> Vec<u8> {
    let mut out = vec![VERSION];
    put_opt_str(&mut out, p.model.as_deref());
    match p.usage {
        None => out.push(0),
        Some(u) => {
            out.push(1);
            varint::put(&mut out, u.prompt_tokens);
            varint::put(&mut out, u.completion_tokens);
        }
    }
    varint::put(&mut out, p.samples.len() as u64);
    for s in &p.samples {
        varint::put_bytes(&mut out, s.text.as_bytes());
        put_opt_str(&mut out, s.finish_reason.as_deref());
        match &s.tokens {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                logprobs::encode_into(t, &mut out);
            }
        }
    }
    logprobs::compress(&out)
}

/// The inverse of [`encode`].
pub fn decode(packed: &[u8]) -> Result<Parsed, Corrupt> {
    let raw = logprobs::decompress(packed)?;
    let mut r = Reader::new(&raw);
    if r.get_u8()? != VERSION {
        return Err(Corrupt { at: 0, what: "unknown compact answer version" });
    }
    let model = get_opt_str(&mut r)?;
    let usage = match r.get_u8()? {
        0 => None,
        _ => Some(Usage { prompt_tokens: r.get()?, completion_tokens: r.get()? }),
    };
    let n = r.get()? as usize;
    let mut samples = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let text = r.get_str()?.to_string();
        let finish_reason = get_opt_str(&mut r)?;
        let tokens = match r.get_u8()? {
            0 => None,
            _ => {
                let rest = r.rest();
                let (t, used) = logprobs::decode_prefix(rest)?;
                r = Reader::new(&rest[used..]);
                Some(t)
            }
        };
        samples.push(TeacherSample { text, finish_reason, tokens });
    }
    Ok(Parsed { model, samples, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_answer_survives_the_round_trip() {
        let body = br#"{"model":"m","usage":{"prompt_tokens":5,"completion_tokens":2},"choices":[
            {"index":0,"message":{"content":"ab"},"finish_reason":"stop","logprobs":{"content":[
                {"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[{"token":"a","logprob":-0.5,"bytes":[97]},{"token":"c","logprob":-1.25}]},
                {"token":"b","logprob":-0.125,"bytes":[98],"top_logprobs":[]}]}},
            {"index":1,"message":{"content":"plain"},"finish_reason":null}]}"#;
        let parsed = crate::response::parse(body).unwrap();
        // The log-probs here are multiples of 1/1024, so even they come back exactly.
        assert_eq!(decode(&encode(&parsed)).unwrap(), parsed);
        let no_usage = Parsed { model: None, usage: None, ..parsed };
        assert_eq!(decode(&encode(&no_usage)).unwrap(), no_usage);
        assert!(decode(b"junk").is_err());
    }
}
