//! Prompt templates: data files under `prompts/templates/*.toml` (format documented at the top
//! of `prompts/templates/python.toml`), checked when loaded so that a bad template fails the
//! stage with its file and line before any work is done.
//!
//! Placeholders are `{{name}}`; single braces are literal text (code is full of them). The
//! placeholders a template may use depend on its `source`; see [`SPEC_PLACEHOLDERS`] and
//! [`CORPUS_PLACEHOLDERS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::builtin::DataText;
use crate::error::{PromptsError, Result};

pub const TASK_TYPES: [&str; 6] = ["implement_from_spec", "complete_function", "fix_bug", "explain", "refactor", "write_tests"];
pub const DIFFICULTIES: [&str; 4] = ["easy", "medium", "hard", "any"];
pub const SPEC_PLACEHOLDERS: [&str; 6] = ["language", "spec", "function_name", "signature", "stub", "difficulty"];
pub const CORPUS_PLACEHOLDERS: [&str; 7] = ["language", "code", "buggy_code", "stub", "name", "kind", "difficulty"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Filled from a problem spec (`prompts/specs.jsonl`).
    Spec,
    /// Filled from a function or class of the code corpus.
    Corpus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    id: String,
    task_type: String,
    language: String,
    source: Source,
    #[serde(default = "any")]
    difficulty: String,
    #[serde(default)]
    asks_for_tests: bool,
    #[serde(default)]
    seed_kinds: Vec<String>,
    text: String,
}

fn any() -> String {
    "any".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[serde(default)]
    template: Vec<RawTemplate>,
}

/// A checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    pub task_type: String,
    pub language: String,
    pub source: Source,
    pub difficulty: String,
    pub asks_for_tests: bool,
    /// Corpus templates: which definitions may fill it (function, method, class; empty: all).
    pub seed_kinds: Vec<String>,
    pub text: String,
    /// The placeholders the text uses.
    pub placeholders: BTreeSet<String>,
    /// Where it was defined (file, line of its `id`).
    pub file: PathBuf,
    pub line: usize,
}

impl Template {
    /// The text with every placeholder replaced; `values` must hold each one (checked at load
    /// time against the source's placeholder list, and the generators fill all of those).
    pub fn render(&self, values: &BTreeMap<&str, String>) -> String {
        let mut out = String::with_capacity(self.text.len() + 256);
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open..].find("}}") else { break };
            out.push_str(&rest[..open]);
            let name = rest[open + 2..open + close].trim();
            out.push_str(values.get(name).map(String::as_str).unwrap_or_default());
            rest = &rest[open + close + 2..];
        }
        out.push_str(rest);
        out.trim().to_string()
    }
}

/// Loads the template files (see [`crate::builtin::template_files`]), checking each template
/// and that ids are unique across files; sorted by id.
pub fn load(files: &[DataText]) -> Result<Vec<Template>> {
    let mut out: Vec<Template> = Vec::new();
    for f in files {
        for t in parse(f)? {
            if let Some(prev) = out.iter().find(|p| p.id == t.id) {
                return Err(PromptsError::Template {
                    path: t.file.clone(),
                    line: t.line,
                    message: format!("template id '{}' is already used at {}:{}; ids must be unique", t.id, prev.file.display(), prev.line),
                });
            }
            out.push(t);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Loads every `*.toml` under `dir` (sorted by name).
pub fn load_dir(dir: &Path) -> Result<Vec<Template>> {
    load(&crate::builtin::template_files(Some(dir))?)
}

/// Loads and checks one template file.
pub fn load_file(path: &Path) -> Result<Vec<Template>> {
    parse(&DataText::read(path)?)
}

/// Checks the templates of one file.
fn parse(file: &DataText) -> Result<Vec<Template>> {
    let (path, text) = (file.path.as_path(), file.text.as_ref());
    let line_of = |offset: usize| text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1;
    let parsed: TemplateFile = toml::from_str(text).map_err(|e| PromptsError::Template {
        path: path.to_path_buf(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        message: format!("{} (see the format at the top of prompts/templates/python.toml)", e.message().trim()),
    })?;
    let mut search_from = 0;
    let mut out = Vec::new();
    for raw in parsed.template {
        // The template's own line: where its id is written (ids are unique, checked below).
        let start = find_id(text, &raw.id, search_from).unwrap_or(search_from);
        search_from = start;
        let line = line_of(start);
        let err = |line: usize, message: String| PromptsError::Template { path: path.to_path_buf(), line, message };
        if !TASK_TYPES.contains(&raw.task_type.as_str()) {
            return Err(err(line, format!("template '{}': unknown task_type '{}' (known: {})", raw.id, raw.task_type, TASK_TYPES.join(", "))));
        }
        if !DIFFICULTIES.contains(&raw.difficulty.as_str()) {
            return Err(err(line, format!("template '{}': unknown difficulty '{}' (known: {})", raw.id, raw.difficulty, DIFFICULTIES.join(", "))));
        }
        if raw.language.trim().is_empty() || raw.text.trim().is_empty() {
            return Err(err(line, format!("template '{}': language and text must not be empty", raw.id)));
        }
        if let Some(k) = raw.seed_kinds.iter().find(|k| !["function", "method", "class"].contains(&k.as_str())) {
            return Err(err(line, format!("template '{}': unknown seed kind '{k}' (known: function, method, class)", raw.id)));
        }
        if !raw.seed_kinds.is_empty() && raw.source != Source::Corpus {
            return Err(err(line, format!("template '{}': seed_kinds applies only to source = \"corpus\"", raw.id)));
        }
        let allowed: &[&str] = match raw.source {
            Source::Spec => &SPEC_PLACEHOLDERS,
            Source::Corpus => &CORPUS_PLACEHOLDERS,
        };
        let mut placeholders = BTreeSet::new();
        for name in placeholder_names(&raw.text) {
            if !allowed.contains(&name.as_str()) {
                let at = text[start..].find(&format!("{{{{{name}}}}}")).map_or(line, |o| line_of(start + o));
                let known_elsewhere = SPEC_PLACEHOLDERS.contains(&name.as_str()) || CORPUS_PLACEHOLDERS.contains(&name.as_str());
                let why = if known_elsewhere { "is not available for" } else { "is unknown for" };
                return Err(err(at, format!("template '{}': placeholder {{{{{name}}}}} {why} source = {:?} (use one of: {})", raw.id, raw.source, allowed.join(", "))));
            }
            placeholders.insert(name);
        }
        out.push(Template {
            id: raw.id,
            task_type: raw.task_type,
            language: raw.language.to_lowercase(),
            source: raw.source,
            difficulty: raw.difficulty,
            asks_for_tests: raw.asks_for_tests,
            seed_kinds: raw.seed_kinds,
            text: raw.text,
            placeholders,
            file: path.to_path_buf(),
            line,
        });
    }
    Ok(out)
}

fn find_id(text: &str, id: &str, from: usize) -> Option<usize> {
    let rest = &text[from..];
    ["\"", "'"].iter().filter_map(|q| rest.find(&format!("{q}{id}{q}"))).min().map(|o| {
        // Back to the start of that line.
        text[..from + o].rfind('\n').map_or(0, |nl| nl + 1)
    })
}

/// Names inside `{{ }}`, in order of appearance.
fn placeholder_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        match rest[open..].find("}}") {
            Some(close) => {
                names.push(rest[open + 2..open + close].trim().to_string());
                rest = &rest[open + close + 2..];
            }
            None => break,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn the_shipped_templates_load() {
        let dir = distill_core::testing::repo_root().join("prompts/templates");
        let ts = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let types: BTreeSet<&str> = ts.iter().map(|t| t.task_type.as_str()).collect();
        assert_eq!(types.len(), TASK_TYPES.len(), "every task type has a template: {types:?}");
        assert!(ts.iter().any(|t| t.language != "python"));
    }

    #[test]
    fn an_unknown_placeholder_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let body = "[[template]]\nid = \"a\"\ntask_type = \"explain\"\nlanguage = \"python\"\nsource = \"corpus\"\ntext = \"\"\"\nExplain\n{{code}} and {{colour}}\n\"\"\"\n";
        let p = write(dir.path(), "t.toml", body);
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:8:", p.display())) && e.contains("{{colour}}") && e.contains("unknown"), "{e}");
        let p = write(dir.path(), "u.toml", &body.replace("{{colour}}", "{{signature}}"));
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains(":8:") && e.contains("not available for source = Corpus"), "{e}");
        let p = write(dir.path(), "v.toml", &body.replace("task_type = \"explain\"", "task_type = \"golf\""));
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("unknown task_type 'golf'"), "{e}");
        let p = write(dir.path(), "w.toml", "[[template]]\nid = 3\n");
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("w.toml:2:"), "{e}");
    }

    #[test]
    fn render_fills_placeholders_and_keeps_single_braces() {
        let t = Template {
            id: "x".into(),
            task_type: "explain".into(),
            language: "python".into(),
            source: Source::Corpus,
            difficulty: "any".into(),
            asks_for_tests: false,
            seed_kinds: Vec::new(),
            text: "\nExplain {{ code }} in {{language}}: {a: 1}\n".into(),
            placeholders: BTreeSet::new(),
            file: PathBuf::new(),
            line: 1,
        };
        let v = BTreeMap::from([("code", "f()".to_string()), ("language", "Python".to_string())]);
        assert_eq!(t.render(&v), "Explain f() in Python: {a: 1}");
    }
}
