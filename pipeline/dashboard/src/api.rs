//! The routes. Everything under `/api/v1` answers JSON (errors too, see [`crate::error`]),
//! except the two event streams.
//!
//! | method, path | what |
//! |---|---|
//! | GET `/api/v1` | this list |
//! | GET `/api/v1/status` | the DAG: per stage `deps`, `state` (`up_to_date`, `stale` + `reasons`, `never_run`, `running` + progress), and the jobs |
//! | GET `/api/v1/stages/{stage}/stats`, `.../manifest` | a stage's `stats.json`, `manifest.json` |
//! | GET `/api/v1/funnel` | prompts -> answers -> each filter's drops by reason -> kept -> shard rows |
//! | GET `/api/v1/records/{kind}` | a page of `prompts`, `prompt-exclusions`, `answers`, `failed`, `kept`, `exclusions`: `offset`, `limit`, `id`, and the kind's fields (`filter`, `reason`, ...) |
//! | GET `/api/v1/records/answers/{id}/tokens?sample=N` | one teacher answer's tokens with log-probs and top-k |
//! | GET `/api/v1/shard-rows?split=&offset=&limit=` | a page of shard rows (light columns) |
//! | GET `/api/v1/shard-rows/{index}?split=&student=` | one row: tokens, teacher top-k as text; `student=1` (or `train`, `train-baseline`) adds the trained student's probabilities |
//! | GET `/api/v1/evals` | each benchmark's `summary.json` |
//! | GET `/api/v1/evals/{benchmark}/results` | a page of results: `task_id`, `passed`, `offset`, `limit` |
//! | GET `/api/v1/teacher/series?stage=teacher&max_points=2000` | the teacher's cumulative requests, cache hits, 429s, retries, tokens and cost over time (live while it runs), thinned to `max_points`; a sharded run's in `shards` (`[{shard: "0-of-2", lines, points}]`) |
//! | GET `/api/v1/train/{run}/metrics` | every metrics line so far (`run`: `train`, `train-baseline`) |
//! | GET `/api/v1/train/{run}/metrics/stream` | the same as server-sent events, live |
//! | GET, POST `/api/v1/jobs` | the jobs; start one: `{"target": "<stage>" or "run", "force": false}` (key needed) |
//! | GET `/api/v1/jobs/{id}`, POST `.../cancel` (key needed), GET `.../log` (events) | one job |
//! | GET `/api/v1/files/{stage}/{path}` | a file of a published stage folder (the report, a shard) |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{join_error, ApiError, ApiResult};
use crate::index::IndexCache;
use crate::jobs::{JobState, Jobs};
use crate::records::{self, PageQuery};
use crate::status::StatusCache;
use crate::tokens::FrameCache;
use crate::{guard, DashboardConfig, Pipeline};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<DashboardConfig>,
    pub status: StatusCache,
    pub jobs: Jobs,
    pub indexes: IndexCache,
    pub frames: FrameCache,
    pub limiter: Arc<guard::Limiter>,
    pub shard_meta: crate::shard_rows::ShardMeta,
    pub students: crate::student::StudentCache,
    vocab: Arc<std::sync::OnceLock<Option<crate::shard_rows::Vocab>>>,
}

impl AppState {
    /// Must be called inside the runtime (it starts the job worker and warms the indexes).
    pub fn new(cfg: DashboardConfig, pipeline: Arc<dyn Pipeline>) -> AppState {
        let state = AppState {
            limiter: guard::limiter(cfg.requests_per_second),
            cfg: Arc::new(cfg),
            status: StatusCache::new(pipeline.clone()),
            jobs: Jobs::start(pipeline),
            indexes: IndexCache::default(),
            frames: FrameCache::default(),
            shard_meta: Default::default(),
            students: Default::default(),
            vocab: Arc::new(std::sync::OnceLock::new()),
        };
        let warm = state.clone();
        tokio::task::spawn_blocking(move || warm.warm_indexes());
        state
    }

    /// Indexes every record file now, so the first page asked for is as fast as the rest.
    fn warm_indexes(&self) {
        let t0 = std::time::Instant::now();
        for k in records::KINDS {
            let path = self.cfg.work_dir.join(k.file);
            if path.is_file() {
                if let Err(e) = self.indexes.get(&path, k.facets) {
                    tracing::warn!("{e}");
                }
            }
        }
        for bench in eval_benchmarks(&self.cfg.work_dir) {
            let _ = self.indexes.get(&self.cfg.work_dir.join("eval").join(&bench).join("results.jsonl"), records::EVAL_FACETS);
        }
        self.frames.warm(&self.cfg.work_dir);
        let _ = self.vocab();
        tracing::info!(secs = t0.elapsed().as_secs_f64(), "record indexes built");
    }

    fn vocab(&self) -> Option<&crate::shard_rows::Vocab> {
        self.vocab.get_or_init(|| crate::shard_rows::load_vocab(&self.cfg.work_dir)).as_ref()
    }
}

pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/", get(endpoints))
        .route("/status", get(status))
        .route("/stages/{stage}/{file}", get(stage_file))
        .route("/funnel", get(funnel))
        .route("/records/answers/{id}/tokens", get(answer_tokens))
        .route("/records/{kind}", get(records_page))
        .route("/shard-rows", get(shard_rows_page))
        .route("/shard-rows/{index}", get(shard_row))
        .route("/evals", get(evals))
        .route("/evals/{benchmark}/results", get(eval_results))
        .route("/teacher/series", get(teacher_series))
        .route("/train/{run}/metrics", get(train_metrics))
        .route("/train/{run}/metrics/stream", get(train_metrics_stream))
        .route("/jobs", get(jobs_list).post(jobs_start))
        .route("/jobs/{id}", get(job_get))
        .route("/jobs/{id}/cancel", post(job_cancel))
        .route("/jobs/{id}/log", get(job_log))
        .route("/files/{*path}", get(file))
        .fallback(|| async { ApiError::not_found("no such endpoint; GET /api/v1 lists them") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::api_key_beyond_loopback));
    Router::new()
        .route("/", get(crate::page::index))
        .route("/assets/app.js", get(crate::page::app_js))
        .route("/assets/views.js", get(crate::page::views_js))
        .route("/assets/views.css", get(crate::page::views_css))
        .route("/assets/style.css", get(crate::page::style_css))
        .nest("/api/v1", api)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::rate_limit))
        .with_state(state)
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(p: Params) -> ApiResult<HashMap<String, String>> {
    p.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("query string: {e}")))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

async fn endpoints() -> Json<Value> {
    let doc = include_str!("api.rs");
    let rows: Vec<&str> = doc.lines().filter_map(|l| l.strip_prefix("//! | ")).filter(|l| !l.starts_with("method") && !l.starts_with("---")).collect();
    Json(json!({"version": 1, "endpoints": rows}))
}

async fn status(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let mut v = s.status.get().await?;
    v["jobs"] = json!(s.jobs.list());
    v["auth"] = json!({"key_configured": s.cfg.api_key.is_some(), "key_env": s.cfg.api_key_env, "reads_need_key": !s.cfg.bind.ip().is_loopback()});
    Ok(Json(v))
}

/// A DAG stage name from a path (anything else is a 404 that lists the stages).
async fn checked_stage(s: &AppState, stage: &str) -> ApiResult<()> {
    let names = s.status.stage_names().await?;
    if names.iter().any(|n| n == stage) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("'{stage}' is not a stage of this pipeline ({})", names.join(", "))))
    }
}

fn read_json(path: &std::path::Path) -> ApiResult<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found(format!("{} does not exist yet: run the stage", path.display())),
        _ => ApiError::internal(format!("{}: {e}", path.display())),
    })?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("{}: {e}; re-run the stage that writes it", path.display())))
}

async fn stage_file(State(s): State<AppState>, Path((stage, file)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let name = match file.as_str() {
        "stats" => "stats.json",
        "manifest" => "manifest.json",
        other => return Err(ApiError::not_found(format!("'{other}': a stage has `stats` and `manifest`"))),
    };
    checked_stage(&s, &stage).await?;
    let path = s.cfg.work_dir.join(&stage).join(name);
    Ok(Json(blocking(move || read_json(&path)).await?))
}

async fn funnel(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let work = s.cfg.work_dir.clone();
    blocking(move || {
        let stats: Vec<(&str, Option<Value>)> = ["prompts", "teacher", "filter", "shards"].into_iter().map(|st| (st, read_json(&work.join(st).join("stats.json")).ok())).collect();
        let f = distill_report::funnel::Funnel::from_stats(|stage| stats.iter().find(|(n, _)| *n == stage).and_then(|(_, v)| v.as_ref()));
        Ok(Json(json!(f)))
    })
    .await
}

async fn records_page(State(s): State<AppState>, Path(kind): Path<String>, q: Params) -> ApiResult<Json<Value>> {
    let k = records::kind(&kind)?;
    let q = records::parse_query(&params(q)?, k.facets, true)?;
    let (cache, work) = (s.indexes.clone(), s.cfg.work_dir.clone());
    let mut v = blocking(move || records::page(&cache, &work, k.file, k.facets, k.sorted_by_id, &q)).await?;
    v["kind"] = json!(kind);
    Ok(Json(v))
}

async fn answer_tokens(State(s): State<AppState>, Path(id): Path<String>, q: Params) -> ApiResult<Json<crate::tokens::SampleTokens>> {
    let q = params(q)?;
    let mut sample = 0usize;
    for (k, v) in &q {
        match k.as_str() {
            "sample" => sample = v.parse().map_err(|_| ApiError::bad_request(format!("sample: '{v}' is not a whole number >= 0")))?,
            other => return Err(ApiError::bad_request(format!("unknown parameter '{other}'; this takes sample"))),
        }
    }
    let (cache, work) = (s.frames.clone(), s.cfg.work_dir.clone());
    Ok(Json(blocking(move || crate::tokens::sample_tokens(&cache, &work, &id, sample)).await?))
}

/// `split` (train, validation) and the paging parameters of shard rows.
fn shard_query(q: &HashMap<String, String>) -> ApiResult<(Option<String>, PageQuery)> {
    let mut rest = q.clone();
    let split = shard_split(&mut rest)?;
    let page = records::parse_query(&rest, &[], false).map_err(|e| ApiError::bad_request(e.message.replace("offset, limit", "split, offset, limit")))?;
    Ok((split, page))
}

fn shard_split(q: &mut HashMap<String, String>) -> ApiResult<Option<String>> {
    let split = q.remove("split");
    if let Some(sp) = &split {
        if !matches!(sp.as_str(), "train" | "validation") {
            return Err(ApiError::bad_request(format!("split: '{sp}' is not train or validation")));
        }
    }
    Ok(split)
}

async fn shard_rows_page(State(s): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let (split, page) = shard_query(&params(q)?)?;
    let (meta, work) = (s.shard_meta.clone(), s.cfg.work_dir.clone());
    Ok(Json(blocking(move || crate::shard_rows::page(&meta, &work, split.as_deref(), page.offset, page.limit)).await?))
}

/// One row in full, serialised in the blocking task (a row is hundreds of kilobytes of JSON).
async fn shard_row(State(s): State<AppState>, Path(index): Path<String>, q: Params) -> ApiResult<Response> {
    let index: usize = index.parse().map_err(|_| ApiError::bad_request(format!("row index '{index}' is not a whole number >= 0")))?;
    let mut q = params(q)?;
    let split = shard_split(&mut q)?;
    let student = match q.remove("student").as_deref() {
        None | Some("0") | Some("") => None,
        Some("1") => Some(crate::student::RUNS[0]),
        Some(run) => Some(
            *crate::student::RUNS
                .iter()
                .find(|r| **r == run)
                .ok_or_else(|| ApiError::bad_request(format!("student: '{run}' is not 1, 0 or a training run ({})", crate::student::RUNS.join(", "))))?,
        ),
    };
    if let Some(other) = q.keys().next() {
        return Err(ApiError::bad_request(format!("unknown parameter '{other}'; this takes split, student")));
    }
    let st = s.clone();
    let body = blocking(move || {
        let work = &st.cfg.work_dir;
        let row = crate::shard_rows::read_row(&st.shard_meta, work, split.as_deref(), index)?;
        let scores = match student {
            Some(run) => {
                let model = st.students.get(work, run)?;
                let k = row.topk_ids.iter().map(Vec::len).max().unwrap_or(0);
                Some(crate::student::score(&model, run, work.join(run), &row.input_ids, k)?)
            }
            None => None,
        };
        let json = crate::shard_rows::RowJson { row: &row, vocab: st.vocab(), student: scores.as_ref() };
        serde_json::to_vec(&json).map_err(|e| ApiError::internal(format!("row {index}: {e}")))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Benchmarks with results (`eval/<name>/results.jsonl`), sorted.
fn eval_benchmarks(work: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(work.join("eval")) else { return Vec::new() };
    let mut out: Vec<String> = entries.flatten().filter(|e| e.path().join("summary.json").is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    out.sort();
    out
}

async fn evals(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let work = s.cfg.work_dir.clone();
    blocking(move || {
        let mut out = serde_json::Map::new();
        for b in eval_benchmarks(&work) {
            out.insert(b.clone(), read_json(&work.join("eval").join(&b).join("summary.json"))?);
        }
        Ok(Json(json!({"benchmarks": out})))
    })
    .await
}

async fn eval_results(State(s): State<AppState>, Path(benchmark): Path<String>, q: Params) -> ApiResult<Json<Value>> {
    let work = s.cfg.work_dir.clone();
    let known = eval_benchmarks(&work);
    // The name is checked against the folders that exist, so it can never be a path.
    if !known.contains(&benchmark) {
        return Err(ApiError::not_found(format!("no results for benchmark '{benchmark}' (have: {})", if known.is_empty() { "none yet".into() } else { known.join(", ") })));
    }
    let q = records::parse_query(&params(q)?, records::EVAL_FACETS, false)?;
    let cache = s.indexes.clone();
    let rel = format!("eval/{benchmark}/results.jsonl");
    let mut v = blocking(move || records::page(&cache, &work, &rel, records::EVAL_FACETS, false, &q)).await?;
    v["benchmark"] = json!(benchmark);
    Ok(Json(v))
}

async fn train_metrics(State(s): State<AppState>, Path(run): Path<String>) -> ApiResult<Json<Value>> {
    checked_stage(&s, &run).await?;
    let work = s.cfg.work_dir.clone();
    let running = crate::status::running(&work, &run).is_some();
    let lines = blocking(move || Ok(crate::metrics::read_all(&work, &run)?)).await?;
    Ok(Json(json!({"running": running, "metrics": lines})))
}

async fn teacher_series(State(s): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    use crate::teacher_series::{DEFAULT_POINTS, MAX_POINTS};
    let (mut stage, mut max_points) = ("teacher".to_string(), DEFAULT_POINTS);
    for (k, v) in params(q)? {
        match k.as_str() {
            "stage" => stage = v,
            "max_points" => {
                max_points = v
                    .parse()
                    .ok()
                    .filter(|n| (2..=MAX_POINTS).contains(n))
                    .ok_or_else(|| ApiError::bad_request(format!("max_points: '{v}' is not a whole number from 2 to {MAX_POINTS}")))?
            }
            other => return Err(ApiError::bad_request(format!("unknown parameter '{other}' (have: stage, max_points)"))),
        }
    }
    // The name is checked against the DAG's stages, so it can never be a path.
    checked_stage(&s, &stage).await?;
    let work = s.cfg.work_dir.clone();
    let running = crate::status::running(&work, &stage).is_some();
    let st = stage.clone();
    let series = blocking(move || Ok(crate::teacher_series::read(&work, &st, max_points)?)).await?;
    // `points`, `lines`: the series of an unsharded run (empty when `shards` has them).
    let plain = series.iter().find(|s| s.shard.is_none());
    let (points, lines) = plain.map(|s| (s.points.clone(), s.lines)).unwrap_or_default();
    let shards: Vec<&crate::teacher_series::Series> = series.iter().filter(|s| s.shard.is_some()).collect();
    Ok(Json(json!({"stage": stage, "running": running, "lines": lines, "points": points, "shards": shards})))
}

async fn train_metrics_stream(State(s): State<AppState>, Path(run): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    checked_stage(&s, &run).await?;
    let last: u64 = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stream = crate::metrics::stream(s.cfg.work_dir.clone(), run, last, Duration::from_millis(250));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn jobs_list(State(s): State<AppState>) -> Json<Value> {
    Json(json!({"jobs": s.jobs.list()}))
}

/// The body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartJob {
    target: String,
    #[serde(default)]
    force: bool,
}

async fn jobs_start(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    guard::require_key(&s, &headers)?;
    let ty = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ty.starts_with("application/json") {
        return Err(ApiError::bad_request(format!("body: Content-Type must be application/json (got '{ty}')")));
    }
    let req: StartJob =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}; expected {{\"target\": \"<stage>\" or \"run\", \"force\": false}}")))?;
    let names = s.status.stage_names().await?;
    if req.target != "run" && !names.contains(&req.target) {
        return Err(ApiError::bad_request(format!("target: '{}' is not a stage; give run or one of {}", req.target, names.join(", "))));
    }
    let info = s.jobs.submit(req.target, req.force);
    Ok((StatusCode::ACCEPTED, Json(json!(info))).into_response())
}

fn job_id(id: &str) -> ApiResult<u64> {
    id.parse().map_err(|_| ApiError::bad_request(format!("job id '{id}' is not a whole number")))
}

async fn job_get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = job_id(&id)?;
    let job = s.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(Json(json!(job.info())))
}

async fn job_cancel(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    guard::require_key(&s, &headers)?;
    let id = job_id(&id)?;
    match s.jobs.cancel(id) {
        None => Err(ApiError::not_found(format!("no job {id}"))),
        Some(Err(state)) => Err(ApiError::conflict(format!("job {id} already finished ({})", json!(state).as_str().unwrap_or("?")))),
        Some(Ok(info)) => Ok(Json(json!(info))),
    }
}

async fn job_log(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let job = s.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let from: u64 = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).map(|n| n + 1).unwrap_or(0);
    let (kept, rx) = job.follow(from);
    struct St {
        job: Arc<crate::jobs::Job>,
        backlog: std::collections::VecDeque<crate::jobs::LogLine>,
        rx: tokio::sync::broadcast::Receiver<crate::jobs::LogLine>,
        next: u64,
        done: bool,
    }
    let st = St { job, backlog: kept.into(), rx, next: from, done: false };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some((n, line)) = st.backlog.pop_front() {
                if n < st.next {
                    continue;
                }
                st.next = n + 1;
                return Some((Ok::<_, std::convert::Infallible>(Event::default().event("line").id(n.to_string()).data(line)), st));
            }
            match tokio::time::timeout(Duration::from_millis(500), st.rx.recv()).await {
                Ok(Ok(l)) => st.backlog.push_back(l),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    let (kept, _) = st.job.follow(st.next);
                    st.backlog.extend(kept);
                }
                Ok(Err(_)) | Err(_) => {
                    let info = st.job.info();
                    if info.state.finished() || info.state == JobState::Cancelled {
                        let (rest, _) = st.job.follow(st.next);
                        if rest.is_empty() {
                            st.done = true;
                            return Some((Ok(Event::default().event("end").data(json!(info).to_string())), st));
                        }
                        st.backlog.extend(rest);
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn file(State(s): State<AppState>, Path(path): Path<String>) -> ApiResult<Response> {
    let names = s.status.stage_names().await?;
    let work = s.cfg.work_dir.clone();
    let real = crate::files::resolve(&work, &names, &path)?;
    let bytes = blocking(move || std::fs::read(&real).map(|b| (b, real.clone())).map_err(|e| ApiError::internal(format!("{}: {e}", real.display())))).await?;
    Ok(([(header::CONTENT_TYPE, crate::files::content_type(&bytes.1))], bytes.0).into_response())
}
