//! Infilling prompts: how the code before and after a masked block reach the model.
//!
//! The model sees `<pre> prefix <suf> suffix <mid>` (PSM) or `<pre> <suf> suffix <mid> prefix`
//! (SPM), the two orders the shards stage trains on (`pipeline/shards/src/fim.rs`), with the
//! student tokenizer's FIM tokens by default (`[eval] fim_tokens`); what it writes up to its
//! end-of-text (or a stop sequence) is the middle. An endpoint model gets the same text as a
//! raw completion prompt, so set `fim_tokens` to its own spelling (StarCoder:
//! `<fim_prefix>`, `<fim_suffix>`, `<fim_middle>`).

use serde::Serialize;

/// The FIM prompt format of the infilling benchmarks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FimFormat {
    /// Prefix, suffix and middle tokens.
    pub tokens: [String; 3],
    /// Suffix-prefix-middle order instead of prefix-suffix-middle.
    pub spm: bool,
}

impl FimFormat {
    /// The text the model continues with the middle.
    pub fn prompt(&self, prefix: &str, suffix: &str) -> String {
        let [pre, suf, mid] = &self.tokens;
        if self.spm {
            format!("{pre}{suf}{suffix}{mid}{prefix}")
        } else {
            format!("{pre}{prefix}{suf}{suffix}{mid}")
        }
    }

    /// The format in words, for `summary.json`'s conventions.
    pub fn describe(&self) -> String {
        let [pre, suf, mid] = &self.tokens;
        if self.spm {
            format!("{pre}{suf} + suffix + {mid} + prefix (SPM); the model writes the middle")
        } else {
            format!("{pre} + prefix + {suf} + suffix + {mid} (PSM); the model writes the middle")
        }
    }
}

/// The student tokenizer's FIM tokens (the tokenizer stage writes these).
pub fn default_tokens() -> [String; 3] {
    ["<|fim_prefix|>".into(), "<|fim_suffix|>".into(), "<|fim_middle|>".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orders_put_the_sides_where_the_shards_stage_does() {
        let psm = FimFormat { tokens: default_tokens(), spm: false };
        assert_eq!(psm.prompt("def f():\n", "\n    return 1\n"), "<|fim_prefix|>def f():\n<|fim_suffix|>\n    return 1\n<|fim_middle|>");
        let spm = FimFormat { spm: true, ..psm };
        assert_eq!(spm.prompt("def f():\n", "\n    return 1\n"), "<|fim_prefix|><|fim_suffix|>\n    return 1\n<|fim_middle|>def f():\n");
        assert!(spm.describe().contains("SPM"));
    }
}
