//! Loading TOML configs so that **every** problem is reported at once, each with its file,
//! line and key, and a suggestion where one can be made:
//!
//! ```text
//! bad.toml:3: unknown key 'temperatur' in [teacher] (did you mean 'temperature'?)
//! bad.toml:7: key 'n' in [teacher]: invalid type: string "3", expected u32
//! ```
//!
//! How: serde stops at the first error, so the document is checked one key at a time. For a
//! key `k` under path `p` we deserialise the config type from a document holding only `p.k`;
//! every struct in a config is `#[serde(default, deny_unknown_fields)]`, so the only possible
//! error is about `k` itself (unknown, or of the wrong type). Tables are checked recursively.
//! Lines come from the spans of `toml`'s `DeTable` parser. Once every key passes, the whole
//! document is deserialised in one go; cross-field checks belong to each stage's conversion
//! into its runtime settings (see STYLE.md, "two layers of config").

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{Error, IoContext, Result};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path (`teacher.temperature`), empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Reads and checks a config file; see the module docs.
pub fn load<C: DeserializeOwned>(path: &Path) -> Result<C> {
    let text = std::fs::read_to_string(path).at(path)?;
    parse(&text, &path.display().to_string())
}

/// Checks and deserialises config text; `file` names it in messages.
pub fn parse<C: DeserializeOwned>(text: &str, file: &str) -> Result<C> {
    let line_of = |offset: usize| text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1;
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let problems = syntax_errors
            .iter()
            .map(|e| ConfigProblem {
                file: file.to_string(),
                line: e.span().map(|s| line_of(s.start)),
                key: String::new(),
                message: format!("TOML syntax error: {}", e.message().trim()),
            })
            .collect();
        return Err(Error::Config { problems });
    }
    let mut problems = Vec::new();
    let mut path = Vec::new();
    check_table::<C>(doc.get_ref(), &mut path, file, &line_of, &mut problems);
    problems.sort_by_key(|p| p.line);
    if !problems.is_empty() {
        return Err(Error::Config { problems });
    }
    toml::from_str::<C>(text).map_err(|e| Error::Config {
        problems: vec![ConfigProblem { file: file.to_string(), line: e.span().map(|s| line_of(s.start)), key: String::new(), message: e.message().trim().to_string() }],
    })
}

/// The 1-based line of the dotted `key` (`filter.consistency.min_pass_rate`) in config `text`:
/// the key's own line, else that of the deepest table on its path that the file spells out (a
/// value left at its default has no line of its own), else `None`.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return None;
    }
    let line_of = |offset: usize| text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1;
    let mut table = doc.get_ref();
    let mut line = None;
    for part in key.split('.') {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == part) else { break };
        line = Some(line_of(k.span().start));
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    line
}

/// Gives each problem without a line the line of its key in `text` (see [`line_of_key`]) and
/// `file` as its file; sorts them by line.
pub fn locate(problems: &mut [ConfigProblem], text: &str, file: &str) {
    for p in problems.iter_mut() {
        p.file = file.to_string();
        if p.line.is_none() && !p.key.is_empty() {
            p.line = line_of_key(text, &p.key);
        }
    }
    problems.sort_by_key(|p| p.line);
}

fn check_table<C: DeserializeOwned>(table: &DeTable<'_>, path: &mut Vec<String>, file: &str, line_of: &dyn Fn(usize) -> usize, problems: &mut Vec<ConfigProblem>) {
    for (key, value) in table.iter() {
        let name = key.get_ref().to_string();
        path.push(name.clone());
        let line = line_of(key.span().start);
        let probe = match value.get_ref() {
            // A table is first probed empty: is the key itself known?
            DeValue::Table(_) => toml::Value::Table(toml::Table::new()),
            other => to_value(other),
        };
        match toml::Value::try_into::<C>(nest(path, probe)) {
            Ok(_) => {
                if let DeValue::Table(inner) = value.get_ref() {
                    check_table::<C>(inner, path, file, line_of, problems);
                }
            }
            Err(e) => problems.push(describe(e.message(), path, line, file)),
        }
        path.pop();
    }
}

/// Wraps `leaf` in tables along `path`: `["teacher","n"]` -> `{teacher = {n = leaf}}`.
fn nest(path: &[String], leaf: toml::Value) -> toml::Value {
    path.iter().rev().fold(leaf, |inner, key| {
        let mut t = toml::Table::new();
        t.insert(key.clone(), inner);
        toml::Value::Table(t)
    })
}

fn to_value(v: &DeValue<'_>) -> toml::Value {
    match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => i.to_string().replace('_', "").parse::<i64>().map(toml::Value::Integer).unwrap_or_else(|_| toml::Value::String(i.to_string())),
        DeValue::Float(f) => toml::Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => toml::Value::Array(a.iter().map(|x| to_value(x.get_ref())).collect()),
        DeValue::Table(t) => toml::Value::Table(t.iter().map(|(k, v)| (k.get_ref().to_string(), to_value(v.get_ref()))).collect()),
    }
}

fn describe(message: &str, path: &[String], line: usize, file: &str) -> ConfigProblem {
    let key = path.last().cloned().unwrap_or_default();
    let section = if path.len() > 1 { format!("[{}]", path[..path.len() - 1].join(".")) } else { "the top level".to_string() };
    let message = message.trim();
    let text = if let Some(expected) = message.strip_prefix("unknown field `").and_then(|m| m.split_once("`, expected ")) {
        let candidates: Vec<&str> = expected.1.split('`').skip(1).step_by(2).collect();
        let hint = suggestion(&key, &candidates).map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_else(|| format!(" (known keys: {})", candidates.join(", ")));
        format!("unknown key '{key}' in {section}{hint}")
    } else if message.starts_with("unknown field `") {
        format!("unknown key '{key}' in {section} (this section takes no keys)")
    } else {
        format!("key '{key}' in {section}: {message}")
    };
    ConfigProblem { file: file.to_string(), line: Some(line), key: path.join("."), message: text }
}

fn suggestion<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().map(|c| (strsim::damerau_levenshtein(key, c), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 4)).min().map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Teacher {
        model: String,
        temperature: f64,
        n: u32,
        stop: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Conf {
        name: String,
        teacher: Teacher,
    }

    fn problems(text: &str) -> Vec<String> {
        match parse::<Conf>(text, "bad.toml") {
            Err(Error::Config { problems }) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected config problems, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_partial_file_loads_with_defaults() {
        let c: Conf = parse("[teacher]\nmodel = \"m\"\n", "ok.toml").unwrap();
        assert_eq!(c.teacher.model, "m");
        assert_eq!(c.teacher.n, 0);
        assert_eq!(c.name, "");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "name = \"x\"\n[teacher]\ntemperatur = 0.2\nn = \"3\"\nmodel = \"m\"\nbogus = 1\n[nosuch]\na = 1\n";
        let mut p = problems(text);
        p.sort();
        assert_eq!(
            p,
            vec![
                "bad.toml:3: unknown key 'temperatur' in [teacher] (did you mean 'temperature'?)",
                "bad.toml:4: key 'n' in [teacher]: invalid type: string \"3\", expected u32",
                "bad.toml:6: unknown key 'bogus' in [teacher] (known keys: model, temperature, n, stop)",
                "bad.toml:7: unknown key 'nosuch' in the top level (known keys: name, teacher)",
            ]
        );
    }

    #[test]
    fn a_key_is_found_on_its_own_line_or_on_its_section_header() {
        let text = "name = \"x\"\n\n[filter.consistency]\nmin_pass_rate = 2.0\n\n[train]\nsteps = 3\n";
        assert_eq!(line_of_key(text, "filter.consistency.min_pass_rate"), Some(4));
        assert_eq!(line_of_key(text, "train.steps"), Some(7));
        // Left at its default: the section's header.
        assert_eq!(line_of_key(text, "train.batch_size"), Some(6));
        assert_eq!(line_of_key(text, "eval.timeout"), None);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("[teacher]\nmodel = \n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("bad.toml:2: TOML syntax error"), "{p:?}");
    }

    #[test]
    fn arrays_and_floats_given_as_integers_are_checked() {
        let c: Conf = parse("[teacher]\nstop = [\"a\", \"b\"]\ntemperature = 1\n", "ok.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.teacher.stop, vec!["a", "b"]);
        assert_eq!(c.teacher.temperature, 1.0);
        let p = problems("[teacher]\nstop = [1]\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("bad.toml:2: key 'stop' in [teacher]: invalid type: integer"), "{p:?}");
    }
}
