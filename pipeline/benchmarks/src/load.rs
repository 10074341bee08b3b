//! Reading the vendored files: checksum first, then one parser per file format.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::builtin;
use crate::error::{Error, Result};
use crate::infill;
use crate::rawjson;
use crate::source::{Benchmark, DataFile};
use crate::task::{last_docstring, mbpp_plus_text, mbpp_prompt, PlusTests, Task};

/// A loaded benchmark.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub benchmark: Benchmark,
    pub file: DataFile,
    /// Where it was read from.
    pub path: PathBuf,
    /// The verified sha256 of the file (what result files record).
    pub sha256: String,
    /// In dataset order (ascending task number).
    pub tasks: Vec<Task>,
}

impl Dataset {
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }
}

/// Where benchmark files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The copies compiled into the binary (`builtin.rs`): no files on disk needed.
    BuiltIn,
    /// A folder holding the files under their vendored names.
    Dir(PathBuf),
}

impl DataSource {
    /// A config's `data_dir` key: empty means the built-in copies.
    pub fn from_config(data_dir: &str) -> Self {
        if data_dir.is_empty() {
            DataSource::BuiltIn
        } else {
            DataSource::Dir(PathBuf::from(data_dir))
        }
    }

    /// Loads `benchmark`, after checking its file's sha256.
    pub fn load(&self, benchmark: Benchmark) -> Result<Dataset> {
        let file = benchmark.data_file();
        let (path, bytes) = match self {
            DataSource::BuiltIn => (Path::new("<built-in>/evals/data").join(file.file_name()), builtin::vendored_bytes(file)),
            DataSource::Dir(dir) => {
                let path = dir.join(file.file_name());
                let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                (path, bytes)
            }
        };
        let (text, sha256) = verified_text(&path, &bytes, file)?;
        let tasks = match benchmark {
            Benchmark::HumanEval => parse_humaneval(&path, &text, benchmark)?,
            Benchmark::HumanEvalPlus | Benchmark::MbppPlus => parse_plus(&path, &text, benchmark)?,
            Benchmark::MbppFull => parse_mbpp(&path, &text, benchmark, |_| true)?,
            Benchmark::MbppTest => parse_mbpp(&path, &text, benchmark, |id| (11..=510).contains(&id))?,
            Benchmark::MbppSanitized => parse_sanitized(&path, &text)?,
            Benchmark::HumanEvalInfillSingle | Benchmark::HumanEvalInfillMulti => infill::tasks(&parse_humaneval(&path, &text, Benchmark::HumanEval)?, benchmark),
        };
        Ok(Dataset { benchmark, file, path, sha256, tasks })
    }
}

/// Loads a benchmark from the copies compiled into the binary.
pub fn load(benchmark: Benchmark) -> Result<Dataset> {
    DataSource::BuiltIn.load(benchmark)
}

/// Loads a benchmark from `dir`, which holds the vendored files under their usual names.
pub fn load_from(dir: &Path, benchmark: Benchmark) -> Result<Dataset> {
    DataSource::Dir(dir.to_path_buf()).load(benchmark)
}

/// Checks a data file's sha256 and returns its (decompressed) text and the hash.
fn verified_text(path: &Path, bytes: &[u8], file: DataFile) -> Result<(String, String)> {
    let actual = distill_core::digest::sha256_hex(bytes);
    if actual != file.sha256() {
        return Err(Error::Checksum { path: path.to_path_buf(), expected: file.sha256().to_string(), actual });
    }
    let text = if file.gzipped() {
        let mut s = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut s).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        s
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Parse { path: path.to_path_buf(), line: 0, message: e.to_string() })?
    };
    Ok((text, actual))
}

fn parse_err(path: &Path, line: usize, message: impl ToString) -> Error {
    Error::Parse { path: path.to_path_buf(), line, message: message.to_string() }
}

/// Non-blank lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l))
}

#[derive(Deserialize)]
struct HumanEvalRecord {
    task_id: String,
    prompt: String,
    entry_point: String,
    canonical_solution: String,
    test: String,
}

fn parse_humaneval(path: &Path, text: &str, benchmark: Benchmark) -> Result<Vec<Task>> {
    lines(text)
        .map(|(n, line)| {
            let r: HumanEvalRecord = serde_json::from_str(line).map_err(|e| parse_err(path, n, e))?;
            Ok(Task {
                benchmark,
                text: last_docstring(&r.prompt),
                task_id: r.task_id,
                prompt: r.prompt,
                canonical_solution: r.canonical_solution,
                suffix: String::new(),
                tests: r.test,
                test_list: Vec::new(),
                test_setup: String::new(),
                entry_point: r.entry_point,
                plus: None,
            })
        })
        .collect()
}

/// HumanEval+ and MBPP+ lines: the inputs stay raw text (see `rawjson`).
fn parse_plus(path: &Path, text: &str, benchmark: Benchmark) -> Result<Vec<Task>> {
    lines(text)
        .map(|(n, line)| {
            let fields = rawjson::object_fields(line).map_err(|e| parse_err(path, n, e))?;
            let raw = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v).ok_or_else(|| parse_err(path, n, format!("missing field '{key}'")));
            let string = |key: &str| -> Result<String> { serde_json::from_str(raw(key)?).map_err(|e| parse_err(path, n, format!("{key}: {e}"))) };
            // One MBPP+ task has `"plus_input": {}`: no inputs.
            let inputs = |key: &str| -> Result<String> {
                let r = raw(key)?;
                Ok(if r.trim() == "{}" { "[]".to_string() } else { r.to_string() })
            };
            let base_input_json = inputs("base_input")?;
            let plus_input_json = inputs("plus_input")?;
            let count = |s: &str| rawjson::array_len(s).map_err(|e| parse_err(path, n, e));
            let plus = PlusTests {
                base_inputs: count(&base_input_json)?,
                plus_inputs: count(&plus_input_json)?,
                base_input_json,
                plus_input_json,
                atol: serde_json::from_str(raw("atol")?).map_err(|e| parse_err(path, n, format!("atol: {e}")))?,
            };
            let prompt = string("prompt")?;
            let (text, tests) = if benchmark == Benchmark::HumanEvalPlus { (last_docstring(&prompt), string("test")?) } else { (mbpp_plus_text(&prompt), string("assertion")?) };
            Ok(Task {
                benchmark,
                task_id: string("task_id")?,
                text,
                prompt,
                canonical_solution: string("canonical_solution")?,
                suffix: String::new(),
                tests,
                test_list: Vec::new(),
                test_setup: String::new(),
                entry_point: string("entry_point")?,
                plus: Some(plus),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct MbppRecord {
    task_id: u32,
    text: String,
    code: String,
    test_setup_code: String,
    test_list: Vec<String>,
}

fn parse_mbpp(path: &Path, text: &str, benchmark: Benchmark, keep: impl Fn(u32) -> bool) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    for (n, line) in lines(text) {
        let r: MbppRecord = serde_json::from_str(line).map_err(|e| parse_err(path, n, e))?;
        if keep(r.task_id) {
            tasks.push(mbpp_task(path, n, benchmark, r.task_id, r.text, r.code, r.test_setup_code, r.test_list)?);
        }
    }
    Ok(tasks)
}

#[derive(Deserialize)]
struct SanitizedRecord {
    task_id: u32,
    prompt: String,
    code: String,
    test_imports: Vec<String>,
    test_list: Vec<String>,
}

fn parse_sanitized(path: &Path, text: &str) -> Result<Vec<Task>> {
    let records: Vec<SanitizedRecord> = serde_json::from_str(text).map_err(|e| parse_err(path, e.line(), e))?;
    records.into_iter().map(|r| mbpp_task(path, 0, Benchmark::MbppSanitized, r.task_id, r.prompt, r.code, r.test_imports.join("\n"), r.test_list)).collect()
}

#[allow(clippy::too_many_arguments)]
fn mbpp_task(path: &Path, line: usize, benchmark: Benchmark, id: u32, text: String, code: String, test_setup: String, test_list: Vec<String>) -> Result<Task> {
    let first = test_list.first().ok_or_else(|| parse_err(path, line, format!("task {id} has no tests")))?;
    let entry_point = entry_point_of(&code, first).ok_or_else(|| parse_err(path, line, format!("task {id}: no function call in '{first}'")))?;
    Ok(Task {
        benchmark,
        task_id: format!("Mbpp/{id}"),
        prompt: mbpp_prompt(&text, first),
        text,
        canonical_solution: code,
        suffix: String::new(),
        tests: test_list.join("\n"),
        test_list,
        test_setup,
        entry_point,
        plus: None,
    })
}

/// The function an MBPP task tests: the first function the reference code defines that the
/// first assert calls; failing that, the first call in the assert that is not a builtin
/// wrapper (`set(`, `math.isclose(`, ...). Spaces before `(` occur (`is_Diff (12345)`).
fn entry_point_of(code: &str, assert_line: &str) -> Option<String> {
    let calls = calls_in(assert_line.trim_start().strip_prefix("assert")?);
    let defined = code.lines().filter_map(|l| {
        let rest = l.trim_start().strip_prefix("def ")?;
        Some(rest.split(|c: char| c == '(' || c.is_whitespace()).next()?.to_string())
    });
    for name in defined {
        if calls.contains(&name) {
            return Some(name);
        }
    }
    const WRAPPERS: [&str; 10] = ["set", "sorted", "list", "tuple", "round", "abs", "str", "isclose", "frozenset", "int"];
    calls.into_iter().find(|c| !WRAPPERS.contains(&c.as_str()))
}

/// Names called in a line of Python: identifiers (after any `module.`) followed by `(`.
fn calls_in(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut calls = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' || b[i] == b'\'' {
            // Skip string literals: their contents are data, not calls.
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if b.get(j) == Some(&b'(') {
                calls.push(line[start..i].rsplit('.').next().unwrap_or("").to_string());
            }
        } else {
            i += 1;
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_skip_wrappers() {
        assert_eq!(entry_point_of("", "assert set(similar_elements((3, 4), (5,))) == set((4,))").as_deref(), Some("similar_elements"));
        assert_eq!(entry_point_of("", "assert math.isclose(area(2), 4.0, rel_tol=0.001)").as_deref(), Some("area"));
        assert_eq!(entry_point_of("", "assert remove_Occ(\"hello(\",\"l\") == \"heo\"").as_deref(), Some("remove_Occ"));
        assert_eq!(entry_point_of("def helper(x):\n  pass\ndef is_Diff(n):\n  return helper(n)\n", "assert is_Diff (12345) == False").as_deref(), Some("is_Diff"));
        assert_eq!(entry_point_of("", "assert x == 1"), None);
    }
}
