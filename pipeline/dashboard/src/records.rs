//! Record browsing: a page of a JSONL record file, filtered by the fields its kind allows,
//! through the file's [`LineIndex`] (a page reads its lines and nothing else).
//!
//! Files are sorted by id (see `distill_core::records`), so `?id=` is a binary search over the
//! index, a handful of reads; evaluation results keep their input order and are filtered by
//! `task_id` instead.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::index::{Facets, IndexCache, LineIndex};

/// One kind of record: its file under the work dir and its filterable fields.
pub struct Kind {
    pub name: &'static str,
    pub file: &'static str,
    pub facets: Facets,
    /// Whether lines are sorted by their `id` field (then `?id=` is a binary search).
    pub sorted_by_id: bool,
}

pub const KINDS: &[Kind] = &[
    Kind {
        name: "prompts",
        file: "prompts/prompts.jsonl",
        facets: &[("generator", "/meta/generator"), ("task_type", "/meta/task_type"), ("language", "/meta/language")],
        sorted_by_id: true,
    },
    Kind { name: "prompt-exclusions", file: "prompts/exclusions.jsonl", facets: &[("filter", "/filter"), ("reason", "/reason")], sorted_by_id: false },
    Kind { name: "answers", file: "teacher/responses.jsonl", facets: &[], sorted_by_id: true },
    Kind { name: "failed", file: "teacher/failed.jsonl", facets: &[("reason", "/reason")], sorted_by_id: true },
    Kind { name: "kept", file: "filter/kept.jsonl", facets: &[("prompt_id", "/prompt_id")], sorted_by_id: true },
    Kind { name: "exclusions", file: "filter/exclusions.jsonl", facets: &[("filter", "/filter"), ("reason", "/reason")], sorted_by_id: true },
];

/// Evaluation results of one benchmark (`eval/<benchmark>/results.jsonl`).
pub const EVAL_FACETS: Facets = &[("task_id", "/task_id"), ("passed", "/passed")];

pub fn kind(name: &str) -> ApiResult<&'static Kind> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        ApiError::not_found(format!("no record kind '{name}'; kinds: {}, shard-rows, and eval/<benchmark>/results", KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")))
    })
}

/// Paging and filters of a request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PageQuery {
    pub offset: usize,
    pub limit: usize,
    pub id: Option<String>,
    pub filters: Vec<(&'static str, String)>,
}

pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

/// `offset`, `limit` (1..=500), `id`, and the kind's facets; anything else is a 400 naming
/// what is allowed.
pub fn parse_query(params: &HashMap<String, String>, facets: Facets, allow_id: bool) -> ApiResult<PageQuery> {
    let mut q = PageQuery { offset: 0, limit: DEFAULT_LIMIT, id: None, filters: Vec::new() };
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    for name in names {
        let value = &params[name];
        match name.as_str() {
            "offset" => q.offset = value.parse().map_err(|_| ApiError::bad_request(format!("offset: '{value}' is not a whole number >= 0")))?,
            "limit" => {
                q.limit = value.parse().map_err(|_| ApiError::bad_request(format!("limit: '{value}' is not a whole number")))?;
                if !(1..=MAX_LIMIT).contains(&q.limit) {
                    return Err(ApiError::bad_request(format!("limit: {} is outside 1..={MAX_LIMIT}", q.limit)));
                }
            }
            "id" if allow_id => q.id = Some(value.clone()),
            other => match facets.iter().find(|(f, _)| *f == other) {
                Some((f, _)) => q.filters.push((f, value.clone())),
                None => {
                    let mut allowed = vec!["offset", "limit"];
                    if allow_id {
                        allowed.push("id");
                    }
                    allowed.extend(facets.iter().map(|(f, _)| *f));
                    return Err(ApiError::bad_request(format!("unknown parameter '{other}'; this listing takes {}", allowed.join(", "))));
                }
            },
        }
    }
    Ok(q)
}

/// Lines matching every filter, in file order (intersection of the facets' sorted lists).
fn matching(ix: &LineIndex, filters: &[(&'static str, String)]) -> Vec<u32> {
    let empty = Vec::new();
    let mut lists: Vec<&Vec<u32>> = filters.iter().map(|(f, v)| ix.facets.get(f).and_then(|m| m.get(v)).unwrap_or(&empty)).collect();
    lists.sort_by_key(|l| l.len());
    match lists.split_first() {
        None => (0..ix.starts.len() as u32).collect(),
        Some((first, rest)) => first.iter().copied().filter(|n| rest.iter().all(|l| l.binary_search(n).is_ok())).collect(),
    }
}

/// The `id` field of line `n`.
fn id_at(ix: &LineIndex, n: u32) -> distill_core::Result<String> {
    let (_, text) = ix.read_lines(&[n])?.remove(0);
    Ok(serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string)).unwrap_or_default())
}

/// Lines whose `id` is `id`, by binary search (the file is sorted by id).
fn lines_with_id(ix: &LineIndex, id: &str, limit: usize) -> distill_core::Result<Vec<u32>> {
    let (mut lo, mut hi) = (0u32, ix.starts.len() as u32);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if id_at(ix, mid)?.as_str() < id {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut out = Vec::new();
    while (lo as usize) < ix.starts.len() && out.len() < limit && id_at(ix, lo)? == id {
        out.push(lo);
        lo += 1;
    }
    Ok(out)
}

/// Counts per facet value (facets with at most 200 values; larger ones give only their size).
fn facet_counts(ix: &LineIndex) -> Value {
    let mut out = serde_json::Map::new();
    for (name, values) in &ix.facets {
        let v = if values.len() <= 200 {
            json!(values.iter().map(|(k, lines)| (k.clone(), lines.len())).collect::<BTreeMap<_, _>>())
        } else {
            json!({"distinct_values": values.len()})
        };
        out.insert(name.to_string(), v);
    }
    Value::Object(out)
}

/// A page of the file `rel` (relative to the work dir). Blocking.
pub fn page(cache: &IndexCache, work_dir: &Path, rel: &str, facets: Facets, sorted_by_id: bool, q: &PageQuery) -> ApiResult<Value> {
    let path = work_dir.join(rel);
    if !path.is_file() {
        return Err(ApiError::not_found(format!("{rel} does not exist yet: run the stage that writes it")));
    }
    let ix = cache.get(&path, facets)?;
    let lines: Vec<u32> = match &q.id {
        Some(id) if sorted_by_id => {
            let with_id = lines_with_id(&ix, id, MAX_LIMIT)?;
            if q.filters.is_empty() {
                with_id
            } else {
                let allowed = matching(&ix, &q.filters);
                with_id.into_iter().filter(|n| allowed.binary_search(n).is_ok()).collect()
            }
        }
        Some(_) => return Err(ApiError::bad_request(format!("{rel} is not sorted by id; filter it by its fields instead"))),
        None => matching(&ix, &q.filters),
    };
    let matched = lines.len();
    let chosen: Vec<u32> = lines.into_iter().skip(q.offset).take(q.limit).collect();
    let records: Vec<Value> = ix
        .read_lines(&chosen)?
        .into_iter()
        .map(|(n, text)| {
            let record = serde_json::from_str::<Value>(&text).unwrap_or_else(|e| json!({"unparsed": text, "error": e.to_string()}));
            json!({"line": n + 1, "record": record})
        })
        .collect();
    Ok(json!({
        "file": rel,
        "total": ix.starts.len(),
        "matching": matched,
        "offset": q.offset,
        "limit": q.limit,
        "filters": q.filters.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        "facets": facet_counts(&ix),
        "records": records,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn queries_are_validated_with_messages_that_name_the_parameter() {
        let facets: Facets = &[("filter", "/filter")];
        let q = parse_query(&params(&[("offset", "5"), ("limit", "7"), ("filter", "parse")]), facets, true).unwrap();
        assert_eq!((q.offset, q.limit, q.filters.len()), (5, 7, 1));
        let e = parse_query(&params(&[("limit", "0")]), facets, true).unwrap_err();
        assert!(e.message.contains("limit: 0 is outside 1..=500"), "{}", e.message);
        let e = parse_query(&params(&[("offset", "-1")]), facets, true).unwrap_err();
        assert!(e.message.contains("offset: '-1'"), "{}", e.message);
        let e = parse_query(&params(&[("colour", "red")]), facets, false).unwrap_err();
        assert_eq!(e.message, "unknown parameter 'colour'; this listing takes offset, limit, filter");
    }

    #[test]
    fn id_lookup_is_a_binary_search_and_filters_intersect() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        let text: String = (0..100)
            .map(|i| format!("{}\n", json!({"id": format!("{i:03}"), "filter": if i % 2 == 0 { "parse" } else { "length" }, "reason": if i % 3 == 0 { "x" } else { "y" }})))
            .collect();
        std::fs::write(&p, text).unwrap();
        let cache = IndexCache::default();
        let facets: Facets = &[("filter", "/filter"), ("reason", "/reason")];
        let q = PageQuery { offset: 0, limit: 50, id: Some("042".into()), filters: vec![] };
        let v = page(&cache, dir.path(), "e.jsonl", facets, true, &q).unwrap();
        assert_eq!(v["records"][0]["record"]["id"], "042");
        assert_eq!(v["matching"], 1);
        let q = PageQuery { offset: 2, limit: 3, id: None, filters: vec![("filter", "parse".into()), ("reason", "x".into())] };
        let v = page(&cache, dir.path(), "e.jsonl", facets, true, &q).unwrap();
        // Multiples of 6 below 100: 17 of them; the page is the 3rd to 5th.
        assert_eq!(v["matching"], 17);
        let ids: Vec<&str> = v["records"].as_array().unwrap().iter().map(|r| r["record"]["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["012", "018", "024"]);
        assert_eq!(v["facets"]["filter"]["parse"], 50);
    }
}
