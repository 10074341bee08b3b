//! The providers' batch endpoints, spoken with plain reqwest and serde types of our own
//! (async-openai's `Batch`/`OpenAIFile` types were not used: the client does not depend on
//! async-openai (see the crate docs), and the few fields read here are read leniently).
//!
//! - OpenAI: `POST /files` (multipart, `purpose=batch`), `POST /batches` (`input_file_id`,
//!   `endpoint`, `completion_window: "24h"`), `GET /batches/{id}`, `GET /batches?limit=100`
//!   (to find a batch by its input file after a kill), `GET /files/{id}/content` for the output
//!   and error files. A line: `{"custom_id","response":{"status_code","body"},"error"}`.
//! - Anthropic: `POST /messages/batches` (`{"requests":[{"custom_id","params"}]}`),
//!   `GET /messages/batches/{id}`, `GET /messages/batches/{id}/results`. A line:
//!   `{"custom_id","result":{"type":"succeeded","message"}|{"type":"errored","error"}|
//!   {"type":"expired"}|{"type":"canceled"}}`.
//!
//! Every call is retried on connection errors, 429 and 5xx (529 included) with the client's
//! backoff; any other status stops the run with the server's message.

use std::sync::Arc;

use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

use crate::config::Api;
use crate::error::Error;
use crate::limits;
use crate::response;
use crate::retry::Backoff;
use crate::send::Shared;

/// How one request of a batch ended, as the provider reports it.
#[derive(Debug)]
pub enum LineOutcome {
    /// An HTTP answer: the status and the body the online API would have sent.
    Http { status: u16, body: Vec<u8> },
    /// The batch expired before this request ran.
    Expired,
    /// Cancelled, or another batch-level error (code, message).
    Errored { code: String, message: String },
}

/// Where a batch stands.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The provider's status word (`in_progress`, `completed`, `expired`, `ended`, ...).
    pub status: String,
    /// Whether the batch is over (its results can be read).
    pub ended: bool,
    /// `completed`, `expired`, `failed` or `cancelled` once ended.
    pub outcome: &'static str,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    /// OpenAI: the output and error files.
    pub files: Vec<String>,
    /// Why a batch failed as a whole (OpenAI validation errors).
    pub errors: Vec<String>,
}

/// How one attempt of a call failed.
enum Failed {
    /// Retrying cannot help (a 4xx other than 408, 409, 429).
    Final(Error),
    /// A connection error, a timeout, 408, 409, 429 or a 5xx (529 included): the message and
    /// the server's `retry-after`.
    Transient(String, Option<std::time::Duration>),
}

async fn once(shared: &Arc<Shared>, method: &Method, path: &str, body: &Option<(String, Vec<u8>)>) -> Result<reqwest::Response, Failed> {
    let mut b = shared.request(method.clone(), path);
    if let Some((ct, bytes)) = body {
        b = b.header(CONTENT_TYPE, ct.as_str()).body(bytes.clone());
    }
    match b.send().await {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = limits::retry_after(resp.headers());
            let bytes = resp.bytes().await.unwrap_or_default();
            let (message, _) = response::error_message(&bytes);
            let message = shared.redact(format!("HTTP {status} from {method} {path}: {message}"));
            match status == 429 || status == 408 || status == 409 || status >= 500 {
                true => Err(Failed::Transient(message, retry_after)),
                false => Err(Failed::Final(Error::Fatal { status, message })),
            }
        }
        Err(e) => Err(Failed::Transient(format!("{method} {path}: {}", e.without_url()), None)),
    }
}

/// A call retried with the client's backoff while it fails transiently. Only for calls that
/// are harmless to repeat: see [`create`] for the ones that are paid for.
async fn call(shared: &Arc<Shared>, method: Method, path: &str, body: Option<(String, Vec<u8>)>) -> Result<reqwest::Response, Error> {
    let s = &shared.settings;
    let mut backoff = Backoff::new(s.backoff_base, s.backoff_max, rand::random());
    let mut k = 0;
    loop {
        let (message, retry_after) = match once(shared, &method, path, &body).await {
            Ok(resp) => return Ok(resp),
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Transient(m, r)) => (m, r),
        };
        if k >= s.max_retries {
            return Err(Error::Fatal { status: 0, message: format!("gave up after {} attempts; last: {message}", k + 1) });
        }
        tracing::debug!(attempt = k, "batch call will be retried: {message}");
        tokio::time::sleep(backoff.delay(k, retry_after)).await;
        k += 1;
    }
}

/// Creates a batch: a POST that is never blindly repeated, since one that timed out or got a
/// 5xx may have created the batch all the same. After such a failure `lookup` says whether the
/// batch exists (and its id); only if not is the POST sent again.
async fn create(shared: &Arc<Shared>, path: &str, body: (String, Vec<u8>), lookup: impl AsyncFn() -> Result<Option<String>, Error>) -> Result<String, Error> {
    let s = &shared.settings;
    let mut backoff = Backoff::new(s.backoff_base, s.backoff_max, rand::random());
    let body = Some(body);
    let mut k = 0;
    loop {
        let (message, retry_after) = match once(shared, &Method::POST, path, &body).await {
            Ok(resp) => {
                let bytes = resp.bytes().await.map_err(|e| Error::Fatal { status: 0, message: format!("POST {path}: {}", e.without_url()) })?;
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Fatal { status: 0, message: format!("POST {path}: an unreadable answer: {e}") })?;
                return field(&v, "id");
            }
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Transient(m, r)) => (m, r),
        };
        if let Some(id) = lookup().await? {
            tracing::info!("batch {id} was created although its creation failed ({message})");
            return Ok(id);
        }
        if k >= s.max_retries {
            return Err(Error::Fatal { status: 0, message: format!("gave up after {} attempts; last: {message}", k + 1) });
        }
        tracing::debug!(attempt = k, "batch creation will be retried: {message}");
        tokio::time::sleep(backoff.delay(k, retry_after)).await;
        k += 1;
    }
}

async fn call_json(shared: &Arc<Shared>, method: Method, path: &str, body: Option<(String, Vec<u8>)>) -> Result<Value, Error> {
    let resp = call(shared, method.clone(), path, body).await?;
    let bytes = resp.bytes().await.map_err(|e| Error::Fatal { status: 0, message: format!("{method} {path}: {}", e.without_url()) })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Fatal { status: 0, message: format!("{method} {path}: an unreadable answer: {e}") })
}

fn field(v: &Value, name: &str) -> Result<String, Error> {
    v[name].as_str().map(str::to_string).ok_or_else(|| Error::Fatal { status: 0, message: format!("the batch API answered without '{name}': {v}") })
}

/// OpenAI: uploads the input file; returns its id.
pub async fn upload(shared: &Arc<Shared>, lines: Vec<u8>) -> Result<String, Error> {
    let boundary = format!("distill-{:016x}", rand::random::<u64>());
    let mut body = Vec::with_capacity(lines.len() + 512);
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n").as_bytes());
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"distill-batch.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&lines);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let v = call_json(shared, Method::POST, "files", Some((format!("multipart/form-data; boundary={boundary}"), body))).await?;
    field(&v, "id")
}

/// OpenAI: creates the batch of an uploaded file; returns its id.
pub async fn create_openai(shared: &Arc<Shared>, input_file_id: &str, endpoint: &str) -> Result<String, Error> {
    let body = json!({"input_file_id": input_file_id, "endpoint": format!("/v1/{endpoint}"), "completion_window": "24h", "metadata": {"created_by": "distill"}});
    create(shared, "batches", ("application/json".into(), body.to_string().into_bytes()), async || find_by_input_file(shared, input_file_id).await).await
}

/// OpenAI: the batch made from `input_file_id`, if one exists (the newest 100 are looked at).
pub async fn find_by_input_file(shared: &Arc<Shared>, input_file_id: &str) -> Result<Option<String>, Error> {
    let v = call_json(shared, Method::GET, "batches?limit=100", None).await?;
    Ok(v["data"].as_array().into_iter().flatten().find(|b| b["input_file_id"].as_str() == Some(input_file_id)).and_then(|b| b["id"].as_str().map(str::to_string)))
}

/// Anthropic: message batches created at or after `since` (unix seconds) with `requests`
/// requests, newest first (the newest 100 are looked at).
pub async fn find_anthropic(shared: &Arc<Shared>, since: u64, requests: u64) -> Result<Vec<String>, Error> {
    let v = call_json(shared, Method::GET, "messages/batches?limit=100", None).await?;
    let total = |b: &Value| ["processing", "succeeded", "errored", "canceled", "expired"].iter().map(|k| b["request_counts"][*k].as_u64().unwrap_or(0)).sum::<u64>();
    let created = |b: &Value| b["created_at"].as_str().and_then(crate::limits::parse_rfc3339).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
    Ok(v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| total(b) == requests && created(b).is_some_and(|c| c + 5 >= since))
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect())
}

/// Anthropic: creates a message batch from its request lines; returns its id. After a failed
/// creation, a batch created since `since` with as many requests and not in `known` is taken
/// for it.
pub async fn create_anthropic(shared: &Arc<Shared>, lines: &[u8], requests: u64, since: u64, known: &std::collections::HashSet<String>) -> Result<String, Error> {
    let mut body = Vec::with_capacity(lines.len() + 32);
    body.extend_from_slice(b"{\"requests\":[");
    for (i, line) in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b"]}");
    let lookup = async || Ok(find_anthropic(shared, since, requests).await?.into_iter().find(|id| !known.contains(id)));
    create(shared, "messages/batches", ("application/json".into(), body), lookup).await
}

/// Where a batch stands.
pub async fn poll(shared: &Arc<Shared>, id: &str) -> Result<State, Error> {
    match shared.settings.api {
        Api::Openai => {
            let v = call_json(shared, Method::GET, &format!("batches/{id}"), None).await?;
            let status = v["status"].as_str().unwrap_or("").to_string();
            let outcome = match status.as_str() {
                "completed" => "completed",
                "expired" => "expired",
                "failed" => "failed",
                "cancelled" => "cancelled",
                _ => "",
            };
            let c = &v["request_counts"];
            let files = ["output_file_id", "error_file_id"].iter().filter_map(|k| v[*k].as_str().map(str::to_string)).collect();
            let errors = v["errors"]["data"].as_array().into_iter().flatten().filter_map(|e| e["message"].as_str().map(str::to_string)).collect();
            Ok(State {
                ended: !outcome.is_empty(),
                outcome,
                status,
                total: c["total"].as_u64().unwrap_or(0),
                done: c["completed"].as_u64().unwrap_or(0),
                failed: c["failed"].as_u64().unwrap_or(0),
                files,
                errors,
            })
        }
        Api::Anthropic => {
            let v = call_json(shared, Method::GET, &format!("messages/batches/{id}"), None).await?;
            let status = v["processing_status"].as_str().unwrap_or("").to_string();
            let c = &v["request_counts"];
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            let ended = status == "ended";
            let outcome = match (ended, n("expired"), n("canceled")) {
                (false, _, _) => "",
                (true, e, _) if e > 0 => "expired",
                (true, _, c) if c > 0 => "cancelled",
                _ => "completed",
            };
            let failed = n("errored") + n("expired") + n("canceled");
            Ok(State { ended, outcome, status, total: n("processing") + n("succeeded") + failed, done: n("succeeded"), failed, files: Vec::new(), errors: Vec::new() })
        }
    }
}

/// The HTTP status an Anthropic error type stands for (for the classifier).
fn anthropic_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// Reads an ended batch's results line by line (streamed: a results file of gigabytes is
/// never held whole) and hands `f` each request's custom id and outcome.
pub async fn results(shared: &Arc<Shared>, id: &str, state: &State, mut f: impl FnMut(&str, LineOutcome) -> Result<(), Error>) -> Result<(), Error> {
    let paths: Vec<String> = match shared.settings.api {
        Api::Openai => state.files.iter().map(|file| format!("files/{file}/content")).collect(),
        // The documented path, not the `results_url` of the answer: the key goes nowhere else.
        Api::Anthropic => vec![format!("messages/batches/{id}/results")],
    };
    for path in paths {
        let resp = call(shared, Method::GET, &path, None).await?;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut handle = |line: &[u8]| -> Result<(), Error> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let v: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("batch {id}: a result line that does not parse is skipped: {e}");
                    return Ok(());
                }
            };
            let Some(custom_id) = v["custom_id"].as_str() else { return Ok(()) };
            let outcome = match shared.settings.api {
                Api::Openai => match (&v["response"], &v["error"]) {
                    (r, _) if r.is_object() => {
                        LineOutcome::Http { status: r["status_code"].as_u64().unwrap_or(0) as u16, body: serde_json::to_vec(&r["body"]).expect("json serialises") }
                    }
                    (_, e) if e["code"].as_str() == Some("batch_expired") => LineOutcome::Expired,
                    (_, e) => LineOutcome::Errored { code: e["code"].as_str().unwrap_or("batch_error").into(), message: e["message"].as_str().unwrap_or("").into() },
                },
                Api::Anthropic => {
                    let r = &v["result"];
                    match r["type"].as_str() {
                        Some("succeeded") => LineOutcome::Http { status: 200, body: serde_json::to_vec(&r["message"]).expect("json serialises") },
                        Some("errored") => {
                            let kind = r["error"]["error"]["type"].as_str().or(r["error"]["type"].as_str()).unwrap_or("api_error");
                            LineOutcome::Http { status: anthropic_status(kind), body: serde_json::to_vec(&r["error"]).expect("json serialises") }
                        }
                        Some("expired") => LineOutcome::Expired,
                        other => LineOutcome::Errored { code: other.unwrap_or("unknown").to_string(), message: "the batch request was canceled".into() },
                    }
                }
            };
            f(custom_id, outcome)
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::Fatal { status: 0, message: format!("reading the results of batch {id}: {}", e.without_url()) })?;
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
                handle(&buf[start..start + nl])?;
                start += nl + 1;
            }
            buf.drain(..start);
        }
        handle(&buf)?;
    }
    Ok(())
}
