//! Batch APIs of the test server, with a clock the test controls.
//!
//! - OpenAI: `POST /v1/files` (multipart, `purpose` and `file`), `GET /v1/files/{id}/content`,
//!   `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches` (newest first).
//! - Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`,
//!   `GET /v1/messages/batches/{id}/results`, `GET /v1/messages/batches` (newest first).
//!
//! A batch runs `batch_step` of its requests each time it is looked at (`GET` of the batch;
//! 0 = all at once), so a test decides how long it stays in flight. With
//! `batch_expire_after = Some(k)` it expires once `k` requests ran: the rest come back
//! `batch_expired` (OpenAI, in the error file) or `expired` (Anthropic). Each request is
//! answered by the same generator as online (`[[status:N]]` gives status N: in OpenAI's error
//! file, or an `errored` result), so a batch answer equals the online answer to the same body.
//! [`crate::Counters::batch_submissions`] counts how often each `custom_id` was submitted.
//! `batch_create_faults = k` makes the next `k` creations create their batch and answer 500.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::{answer_bytes, check_key, error_response, hex_digest, marker, prompt_text, Dialect, Shared};

/// One batch.
struct Batch {
    id: String,
    /// Chat or Completions (OpenAI), Messages (Anthropic).
    dialect: Dialect,
    endpoint: String,
    input_file_id: Option<String>,
    requests: Vec<(String, Value)>,
    ran: usize,
    /// OpenAI: output lines; Anthropic: every result line.
    output: Vec<Value>,
    /// OpenAI: error-file lines.
    errors: Vec<Value>,
    /// `in_progress`, `completed`, `expired`, `failed` (OpenAI) / `in_progress`, `ended`.
    status: &'static str,
    expired: usize,
    validation: Vec<String>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    created_at: u64,
}

/// Files and batches.
#[derive(Default)]
pub struct Batches {
    files: HashMap<String, Vec<u8>>,
    batches: Vec<Batch>,
    next: u64,
}

impl Batches {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:06}", self.next)
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_openai).get(list_openai))
        .route("/v1/batches/{id}", get(get_openai))
        .route("/v1/messages/batches", post(create_anthropic).get(list_anthropic))
        .route("/v1/messages/batches/{id}", get(get_anthropic))
        .route("/v1/messages/batches/{id}/results", get(results_anthropic))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn authorize(shared: &Shared, headers: &HeaderMap, dialect: Dialect) -> Result<(), Box<Response>> {
    let config = shared.config.lock().expect("config lock").clone();
    check_key(shared, &config, headers, dialect)
}

fn not_found(dialect: Dialect, what: &str) -> Response {
    error_response(dialect, 404, &format!("No such {what}"), "invalid_request_error", "not_found")
}

/// The parts of a `multipart/form-data` body, by field name.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    let boundary = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = HashMap::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from);
    let mut at = find(body, &delim, 0)? + delim.len();
    loop {
        if body[at..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = String::from_utf8_lossy(&body[at..head_end]).to_string();
        let next = find(body, &delim, head_end + 4)?;
        // The content ends before the CRLF that precedes the next delimiter.
        let content = &body[head_end + 4..next.saturating_sub(2).max(head_end + 4)];
        let name = head.split(';').find_map(|p| p.trim().strip_prefix("name=")).map(|n| n.trim_matches('"').to_string())?;
        parts.insert(name, content.to_vec());
        at = next + delim.len();
    }
    Some(parts)
}

async fn upload(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Chat) {
        return *r;
    }
    let Some(parts) = multipart(&headers, &body) else {
        return error_response(Dialect::Chat, 400, "expected multipart/form-data with 'purpose' and 'file'", "invalid_request_error", "invalid_multipart");
    };
    if parts.get("purpose").map(|p| p.as_slice()) != Some(b"batch") {
        return error_response(Dialect::Chat, 400, "purpose must be 'batch'", "invalid_request_error", "invalid_purpose");
    }
    let Some(file) = parts.get("file") else { return error_response(Dialect::Chat, 400, "no 'file' part", "invalid_request_error", "missing_file") };
    let mut b = shared.batches.lock().expect("batches lock");
    let id = b.id("file-");
    let bytes = file.len();
    b.files.insert(id.clone(), file.clone());
    axum::Json(json!({"id": id, "object": "file", "bytes": bytes, "created_at": now(), "filename": "batch.jsonl", "purpose": "batch"})).into_response()
}

async fn file_content(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Chat) {
        return *r;
    }
    let b = shared.batches.lock().expect("batches lock");
    match b.files.get(&id) {
        Some(bytes) => {
            shared.counters.batch_downloads.fetch_add(1, Relaxed);
            (StatusCode::OK, bytes.clone()).into_response()
        }
        None => not_found(Dialect::Chat, "file"),
    }
}

/// Whether this creation's answer is to be "lost" (`batch_create_faults`).
fn lose_answer(shared: &Shared) -> bool {
    let mut c = shared.config.lock().expect("config lock");
    let lose = c.batch_create_faults > 0;
    c.batch_create_faults = c.batch_create_faults.saturating_sub(1);
    lose
}

fn note_in_progress(shared: &Shared, b: &Batches) {
    let n = b.batches.iter().filter(|x| x.status == "in_progress").count() as u64;
    shared.counters.most_batches_in_progress.fetch_max(n, Relaxed);
}

fn count_submissions(shared: &Shared, requests: &[(String, Value)]) {
    shared.counters.batches_created.fetch_add(1, Relaxed);
    let mut subs = shared.counters.batch_submissions.lock().expect("counters lock");
    for (id, _) in requests {
        *subs.entry(id.clone()).or_default() += 1;
    }
}

async fn create_openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Chat) {
        return *r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return error_response(Dialect::Chat, 400, "invalid JSON", "invalid_request_error", "invalid_json") };
    let (Some(file_id), Some(endpoint)) = (req["input_file_id"].as_str(), req["endpoint"].as_str()) else {
        return error_response(Dialect::Chat, 400, "input_file_id and endpoint are required", "invalid_request_error", "missing");
    };
    let dialect = match endpoint {
        "/v1/chat/completions" => Dialect::Chat,
        "/v1/completions" => Dialect::Completions,
        _ => return error_response(Dialect::Chat, 400, &format!("unsupported endpoint {endpoint}"), "invalid_request_error", "invalid_endpoint"),
    };
    let mut b = shared.batches.lock().expect("batches lock");
    let Some(input) = b.files.get(file_id).cloned() else { return not_found(Dialect::Chat, "file") };
    let mut requests = Vec::new();
    let mut validation = Vec::new();
    for (i, line) in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()).enumerate() {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v["url"].as_str() == Some(endpoint) && v["method"].as_str() == Some("POST") && v["custom_id"].is_string() => {
                requests.push((v["custom_id"].as_str().expect("checked").to_string(), v["body"].clone()))
            }
            Ok(_) => validation.push(format!("line {}: needs custom_id, method POST and url {endpoint}", i + 1)),
            Err(e) => validation.push(format!("line {}: {e}", i + 1)),
        }
    }
    let id = b.id("batch_");
    count_submissions(&shared, &requests);
    let status = if validation.is_empty() { "in_progress" } else { "failed" };
    let batch = Batch {
        id,
        dialect,
        endpoint: endpoint.into(),
        input_file_id: Some(file_id.into()),
        requests,
        ran: 0,
        output: Vec::new(),
        errors: Vec::new(),
        status,
        expired: 0,
        validation,
        output_file_id: None,
        error_file_id: None,
        created_at: now(),
    };
    let v = openai_object(&batch);
    b.batches.push(batch);
    note_in_progress(&shared, &b);
    if lose_answer(&shared) {
        return error_response(Dialect::Chat, 500, "injected: the answer to a batch creation was lost", "server_error", "internal");
    }
    axum::Json(v).into_response()
}

fn openai_object(b: &Batch) -> Value {
    let failed = b.errors.len();
    json!({"id": b.id, "object": "batch", "endpoint": b.endpoint, "input_file_id": b.input_file_id, "completion_window": "24h",
           "status": b.status, "output_file_id": b.output_file_id, "error_file_id": b.error_file_id, "created_at": b.created_at,
           "errors": if b.validation.is_empty() { Value::Null } else { json!({"object": "list", "data": b.validation.iter().map(|m| json!({"code": "invalid_line", "message": m})).collect::<Vec<_>>()}) },
           "request_counts": {"total": b.requests.len(), "completed": b.output.len(), "failed": failed}})
}

/// Runs the next requests of a batch (its clock ticks once per look).
fn advance(shared: &Shared, b: &mut Batch, files: &mut Vec<(String, Vec<u8>)>, next_id: &mut dyn FnMut() -> String) {
    if b.status != "in_progress" {
        return;
    }
    let config = shared.config.lock().expect("config lock").clone();
    let step = if config.batch_step == 0 { b.requests.len() } else { config.batch_step as usize };
    let end = (b.ran + step).min(b.requests.len());
    let limit = config.batch_expire_after.map_or(usize::MAX, |k| k as usize);
    while b.ran < end && b.ran < limit {
        let (custom_id, body) = &b.requests[b.ran];
        b.ran += 1;
        let digest = hex_digest(&serde_json::to_vec(body).expect("json"));
        let text = prompt_text(body, b.dialect);
        let anthropic = b.dialect == Dialect::Messages;
        let (status, answer) = match marker(&text, "status").and_then(|c| c.parse::<u16>().ok()) {
            Some(code) => {
                let kind = crate::anthropic_error_type(code);
                let body = match anthropic {
                    true => json!({"type": "error", "error": {"type": kind, "message": format!("injected status {code} for this prompt")}}),
                    false => json!({"error": {"message": format!("injected status {code} for this prompt"), "type": "invalid_request_error", "code": "injected", "param": null}}),
                };
                (code, body)
            }
            None => {
                let bytes = answer_bytes(&config, b.dialect, body, text, &digest);
                *shared.counters.answers.lock().expect("counters lock").entry(digest.clone()).or_default() += 1;
                shared.counters.answered.fetch_add(1, Relaxed);
                (200, serde_json::from_slice(&bytes).expect("answers are JSON"))
            }
        };
        let line = match (anthropic, status) {
            (true, 200) => json!({"custom_id": custom_id, "result": {"type": "succeeded", "message": answer}}),
            (true, _) => json!({"custom_id": custom_id, "result": {"type": "errored", "error": answer}}),
            (false, _) => json!({"id": format!("batch_req_{}", &digest[..16]), "custom_id": custom_id,
                                 "response": {"status_code": status, "request_id": digest[..16].to_string(), "body": answer}, "error": null}),
        };
        if status == 200 || anthropic {
            b.output.push(line);
        } else {
            b.errors.push(line);
        }
    }
    let expire = b.ran >= limit && b.ran < b.requests.len();
    if !(expire || b.ran == b.requests.len()) {
        return;
    }
    if expire {
        for (custom_id, _) in &b.requests[b.ran..] {
            b.expired += 1;
            match b.dialect {
                Dialect::Messages => b.output.push(json!({"custom_id": custom_id, "result": {"type": "expired"}})),
                _ => b.errors.push(json!({"id": format!("batch_req_x{}", b.expired), "custom_id": custom_id, "response": null,
                                          "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})),
            }
        }
    }
    match b.dialect {
        Dialect::Messages => b.status = "ended",
        _ => {
            b.status = if expire { "expired" } else { "completed" };
            let jsonl = |lines: &[Value]| lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
            if !b.output.is_empty() {
                let id = next_id();
                files.push((id.clone(), jsonl(&b.output)));
                b.output_file_id = Some(id);
            }
            if !b.errors.is_empty() {
                let id = next_id();
                files.push((id.clone(), jsonl(&b.errors)));
                b.error_file_id = Some(id);
            }
        }
    }
}

/// Looks a batch up, advancing its clock, and renders it with `render`.
fn look(shared: &Shared, id: &str, render: fn(&Batch) -> Value) -> Option<Value> {
    let mut guard = shared.batches.lock().expect("batches lock");
    let store = &mut *guard;
    let pos = store.batches.iter().position(|b| b.id == id)?;
    let mut files = Vec::new();
    let mut next = store.next;
    let mut next_id = || {
        next += 1;
        format!("file-{next:06}")
    };
    advance(shared, &mut store.batches[pos], &mut files, &mut next_id);
    store.next = next;
    store.files.extend(files);
    Some(render(&store.batches[pos]))
}

async fn get_openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Chat) {
        return *r;
    }
    match look(&shared, &id, openai_object) {
        Some(v) => axum::Json(v).into_response(),
        None => not_found(Dialect::Chat, "batch"),
    }
}

async fn list_openai(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Chat) {
        return *r;
    }
    let b = shared.batches.lock().expect("batches lock");
    let data: Vec<Value> = b.batches.iter().rev().filter(|b| b.dialect != Dialect::Messages).take(100).map(openai_object).collect();
    axum::Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

fn anthropic_object(b: &Batch) -> Value {
    let count = |t: &str| b.output.iter().filter(|l| l["result"]["type"] == t).count();
    let ended = b.status == "ended";
    json!({"id": b.id, "type": "message_batch", "processing_status": b.status, "created_at": crate::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(b.created_at)),
           "request_counts": {"processing": b.requests.len() - b.output.len(), "succeeded": count("succeeded"), "errored": count("errored"), "canceled": 0, "expired": count("expired")},
           "results_url": if ended { json!(format!("/v1/messages/batches/{}/results", b.id)) } else { Value::Null }})
}

async fn create_anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Messages) {
        return *r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return error_response(Dialect::Messages, 400, "invalid JSON", "", "") };
    let Some(list) = req["requests"].as_array() else { return error_response(Dialect::Messages, 400, "requests: Field required", "", "") };
    let mut requests = Vec::new();
    for r in list {
        match (r["custom_id"].as_str(), r["params"].is_object()) {
            (Some(id), true) if !id.is_empty() && id.len() <= 64 => requests.push((id.to_string(), r["params"].clone())),
            _ => return error_response(Dialect::Messages, 400, "each request needs a custom_id (1-64 characters) and params", "", ""),
        }
    }
    let mut b = shared.batches.lock().expect("batches lock");
    let id = b.id("msgbatch_");
    count_submissions(&shared, &requests);
    let batch = Batch {
        id,
        dialect: Dialect::Messages,
        endpoint: "/v1/messages".into(),
        input_file_id: None,
        requests,
        ran: 0,
        output: Vec::new(),
        errors: Vec::new(),
        status: "in_progress",
        expired: 0,
        validation: Vec::new(),
        output_file_id: None,
        error_file_id: None,
        created_at: now(),
    };
    let v = anthropic_object(&batch);
    b.batches.push(batch);
    note_in_progress(&shared, &b);
    if lose_answer(&shared) {
        return error_response(Dialect::Messages, 500, "injected: the answer to a batch creation was lost", "", "");
    }
    axum::Json(v).into_response()
}

async fn list_anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Messages) {
        return *r;
    }
    let b = shared.batches.lock().expect("batches lock");
    let data: Vec<Value> = b.batches.iter().rev().filter(|b| b.dialect == Dialect::Messages).take(100).map(anthropic_object).collect();
    axum::Json(json!({"data": data, "has_more": false})).into_response()
}

async fn get_anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Messages) {
        return *r;
    }
    match look(&shared, &id, anthropic_object) {
        Some(v) => axum::Json(v).into_response(),
        None => not_found(Dialect::Messages, "message batch"),
    }
}

async fn results_anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorize(&shared, &headers, Dialect::Messages) {
        return *r;
    }
    let b = shared.batches.lock().expect("batches lock");
    match b.batches.iter().find(|x| x.id == id) {
        Some(batch) if batch.status == "ended" => {
            shared.counters.batch_downloads.fetch_add(1, Relaxed);
            let body: String = batch.output.iter().map(|l| format!("{l}\n")).collect();
            (StatusCode::OK, body).into_response()
        }
        Some(_) => error_response(Dialect::Messages, 400, "the batch has not ended", "", ""),
        None => not_found(Dialect::Messages, "message batch"),
    }
}
