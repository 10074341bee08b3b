//! One teacher sample under judgement, with what the filters learn about it.

use std::collections::BTreeMap;
use std::sync::Arc;

use distill_core::records::{KeptSample, TeacherRecord};

use crate::extract::{extract, Extracted};

#[derive(Debug, Clone)]
pub struct Candidate {
    /// `<prompt id>#<sample index>`.
    pub id: String,
    /// Position in the run's order (records in id order, then samples in index order): the
    /// order of every output file.
    pub ordinal: u64,
    pub record: Arc<TeacherRecord>,
    pub index: usize,
    /// The prompt's language (`meta.language`, default `python`).
    pub language: String,
    pub task_type: String,
    pub extracted: Extracted,
    /// The solution with `if __name__ == "__main__":` blocks removed (set by the parse check).
    pub runnable: String,
    /// Individual test programs from this answer's test blocks: (setup, case).
    pub tests: Vec<(String, String)>,
    pub scores: BTreeMap<String, f64>,
    pub pass_vector: Vec<bool>,
}

impl Candidate {
    pub fn new(record: Arc<TeacherRecord>, index: usize, ordinal: u64) -> Self {
        let meta_str = |k: &str| record.prompt.meta.get(k).and_then(|v| v.as_str()).map(str::to_lowercase);
        let language = meta_str("language").unwrap_or_else(|| "python".into());
        let task_type = meta_str("task_type").unwrap_or_default();
        let extracted = extract(&record.samples[index].text, &language);
        Candidate {
            id: format!("{}#{}", record.id, index),
            ordinal,
            index,
            language,
            task_type,
            runnable: extracted.code.clone(),
            extracted,
            tests: Vec::new(),
            scores: BTreeMap::new(),
            pass_vector: Vec::new(),
            record,
        }
    }

    pub fn text(&self) -> &str {
        &self.record.samples[self.index].text
    }

    pub fn prompt_id(&self) -> &str {
        &self.record.id
    }

    pub fn is_python(&self) -> bool {
        self.language == "python"
    }

    pub fn into_kept(self) -> KeptSample {
        let s = &self.record.samples[self.index];
        KeptSample {
            id: self.id,
            prompt_id: self.record.id.clone(),
            prompt: self.record.prompt.clone(),
            model: self.record.model.clone(),
            temperature: self.record.temperature,
            completion: s.text.clone(),
            finish_reason: s.finish_reason.clone(),
            code: self.extracted.code,
            scores: self.scores,
            pass_vector: self.pass_vector,
        }
    }
}
