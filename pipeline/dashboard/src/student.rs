//! The trained student's probabilities on a shard row (`GET /api/v1/shard-rows/{i}?student=1`).
//!
//! The model is the train stage's published HF folder (`train/`, or `train-baseline/` for the
//! CE-only run: `config.json`, `model.safetensors`), loaded with the model crate's own loader
//! ([`distill_model::load_hf_dir`], as `distill serve` and `eval` load it) on the CPU, on the
//! first request that asks for it; it is loaded again when the train stage rewrites its
//! weights (length or modification time).
//!
//! A row of T tokens runs one forward pass, logits (1, T, V). As in training (see
//! `distill_train::batch`), the logits at position j - 1 predict token j, so position j gets
//!
//! - `token_logprob[j] = log_softmax(logits[j - 1])[input_ids[j]]` (null at j = 0), the
//!   student's log-probability of the token actually there, next to the teacher's
//!   `teacher_token_logprob[j]`;
//! - `topk_ids[j]`, `topk_logprobs[j]`: the student's own top-k of that distribution (k = the
//!   row's teacher k, at least 5), spelled in `topk_text[j]` when the tokenizer is known.
//!
//! A row longer than the model's positions is scored on its first `scored` positions (the rest
//! null), as the trainer truncates it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use candle_core::{Device, Tensor};
use distill_model::CausalLm;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};
use crate::shard_rows::Vocab;

/// The runs whose model a request may name (`student=1` is `train`).
pub const RUNS: &[&str] = &["train", "train-baseline"];

/// The smallest top-k the student's lists have.
const MIN_K: usize = 5;

struct Loaded {
    stamp: (u64, Option<SystemTime>),
    model: Arc<CausalLm>,
}

/// The loaded students, one per run folder.
#[derive(Default, Clone)]
pub struct StudentCache {
    inner: Arc<Mutex<HashMap<String, Loaded>>>,
}

fn weights_stamp(dir: &Path) -> Option<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(dir.join("model.safetensors")).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

impl StudentCache {
    /// The student of `run` (one of [`RUNS`]), loaded now if it is not yet or its weights
    /// changed. A 404 that says what to run when there is none. Blocking.
    pub fn get(&self, work_dir: &Path, run: &str) -> ApiResult<Arc<CausalLm>> {
        let dir = work_dir.join(run);
        let Some(stamp) = weights_stamp(&dir).filter(|_| dir.join("config.json").is_file()) else {
            return Err(ApiError::not_found(format!(
                "no trained student: {}/model.safetensors and config.json do not exist yet; run the {run} stage (the dashboard's 'run {run}', or `distill {run}`)",
                dir.display()
            )));
        };
        // The lock is held while loading: a second request waits for the first one's model.
        let mut cache = self.inner.lock().expect("student cache lock");
        if let Some(l) = cache.get(run).filter(|l| l.stamp == stamp) {
            return Ok(l.model.clone());
        }
        let t0 = std::time::Instant::now();
        let model = distill_model::load_hf_dir(&dir, &Device::Cpu)
            .map_err(|e| ApiError::internal(format!("{}: cannot load the trained student: {e}; re-run the {run} stage (--force)", dir.display())))?;
        tracing::info!(run, secs = t0.elapsed().as_secs_f64(), "student loaded for shard rows");
        let model = Arc::new(model);
        cache.insert(run.to_string(), Loaded { stamp, model: model.clone() });
        Ok(model)
    }
}

/// The student's probabilities on one row (see the module docs).
pub struct StudentScores {
    pub run: String,
    pub model_dir: PathBuf,
    pub k: usize,
    pub scored: usize,
    pub token_logprob: Vec<Option<f32>>,
    pub topk_ids: Vec<Vec<u32>>,
    pub topk_logprobs: Vec<Vec<f32>>,
}

/// Scores `input_ids` with `model`; `teacher_k` is the row's longest teacher top-k. Blocking.
pub fn score(model: &CausalLm, run: &str, model_dir: PathBuf, input_ids: &[u32], teacher_k: usize) -> ApiResult<StudentScores> {
    let vocab = model.config().vocab_size();
    if let Some(&bad) = input_ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(ApiError::bad_request(format!(
            "student: the row has token id {bad} but the model in {} has a vocabulary of {vocab}: the shards were made with another tokenizer than the student's; re-run shards and {run}",
            model_dir.display()
        )));
    }
    let k = teacher_k.max(MIN_K).min(vocab);
    let scored = input_ids.len().min(model.config().max_positions());
    let mut out = StudentScores {
        run: run.to_string(),
        model_dir,
        k,
        scored,
        token_logprob: vec![None; input_ids.len()],
        topk_ids: vec![Vec::new(); input_ids.len()],
        topk_logprobs: vec![Vec::new(); input_ids.len()],
    };
    if scored < 2 {
        return Ok(out);
    }
    let input_ids = &input_ids[..scored];
    let err = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("student: {e}"));
    let dev = Device::Cpu;
    // Tensor ops throughout (candle is built optimised in the dev profile, this crate is not:
    // a per-position loop here took a quarter of a second for 512 positions of a 4,096 vocabulary).
    // (the token's log-prob, the top-k ids and their log-probs, per position from 1)
    type Scores = (Vec<f32>, Vec<Vec<u32>>, Vec<Vec<f32>>);
    let scores = || -> distill_model::Result<Scores> {
        let ids = Tensor::new(input_ids, &dev)?.unsqueeze(0)?; // (1, T)
        let logits = distill_model::loss::align(&model.forward(&ids)?)?.squeeze(0)?; // (T - 1, V): row j - 1 predicts token j
        let lp = distill_model::generate::log_probs(&logits)?; // (T - 1, V)
        let next = Tensor::new(&input_ids[1..], &dev)?.unsqueeze(1)?; // (T - 1, 1)
        let token = lp.gather(&next, 1)?.squeeze(1)?.to_vec1::<f32>()?; // (T - 1,)
        let order = lp.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?; // (T - 1, k)
        let top = lp.gather(&order, 1)?; // (T - 1, k)
        Ok((token, order.to_vec2::<u32>()?, top.to_vec2::<f32>()?))
    };
    let (token, topk_ids, topk_logprobs) = scores().map_err(|e| err(&e))?;
    for (j, ((lp, ids), top)) in token.into_iter().zip(topk_ids).zip(topk_logprobs).enumerate() {
        out.token_logprob[j + 1] = Some(lp);
        out.topk_ids[j + 1] = ids;
        out.topk_logprobs[j + 1] = top;
    }
    Ok(out)
}

#[derive(Serialize)]
pub struct ScoresJson<'a> {
    run: &'a str,
    model_dir: String,
    k: usize,
    scored: usize,
    token_logprob: &'a [Option<f32>],
    topk_ids: &'a [Vec<u32>],
    topk_logprobs: &'a [Vec<f32>],
    #[serde(skip_serializing_if = "Option::is_none")]
    topk_text: Option<Vec<Vec<&'a str>>>,
}

impl StudentScores {
    /// The `student` object of a row's JSON.
    pub fn json<'a>(&'a self, vocab: Option<&'a Vocab>) -> ScoresJson<'a> {
        ScoresJson {
            run: &self.run,
            model_dir: self.model_dir.display().to_string(),
            k: self.k,
            scored: self.scored,
            token_logprob: &self.token_logprob,
            topk_ids: &self.topk_ids,
            topk_logprobs: &self.topk_logprobs,
            topk_text: vocab.map(|v| self.topk_ids.iter().map(|ids| ids.iter().map(|&i| v.text(i)).collect()).collect()),
        }
    }
}
