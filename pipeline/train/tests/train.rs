//! The train stage end to end on real Parquet shards from a real (tiny) teacher.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use distill_core::StageContext;
use distill_model::{load_hf_dir, AttentionBackward};
use distill_train::{param_count, run, train_documents, RunOptions, TrainConfig};

/// A tiny GPT-2 with dropout, written as an HF config file.
fn tiny_gpt2(dir: &Path) -> String {
    let p = dir.join("tiny-gpt2.json");
    let cfg = serde_json::json!({"model_type": "gpt2", "vocab_size": 512, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2,
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1});
    std::fs::write(&p, cfg.to_string()).unwrap();
    p.display().to_string()
}

fn config(model: String, steps: u64) -> TrainConfig {
    let mut c =
        TrainConfig { model, steps, batch_size: 4, grad_accum: 2, seq_len: 64, eval_every: 4, checkpoint_every: 3, keep_last: 2, log_every: 1, seed: 5, ..Default::default() };
    c.optimizer.lr = 3e-3;
    c.optimizer.warmup_steps = 2;
    c.loss.ce = 0.2;
    c
}

fn ctx<'a>(work: &'a Path, out: &str) -> StageContext<'a> {
    StageContext { stage: "train", work_dir: work, out_dir: work.join(out), scratch_dir: work.join(".scratch").join(out), shard: None, quiet: true }
}

fn opts(resume: bool, stop_after: Option<u64>) -> RunOptions {
    RunOptions { resume, stop_after, config_file: "test.toml".into() }
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_interrupted_and_resumed_run_gives_the_same_losses_and_weights() {
    let work = common::work_dir(40);
    let cfg = config(tiny_gpt2(work.path()), 8);
    let whole = ctx(work.path(), "whole");
    let stats = run(&whole, &cfg, &opts(false, None)).unwrap();
    assert_eq!(stats["completed"], true);

    let parts = ctx(work.path(), "parts");
    let first = run(&parts, &cfg, &opts(false, Some(5))).unwrap();
    assert_eq!(first["completed"], false);
    assert_eq!(first["steps"], 5);
    assert!(!parts.out_dir.join("model.safetensors").exists(), "no export from an unfinished run");
    // A crash in the middle of writing later checkpoints leaves a temporary folder and a
    // step folder without state.json: neither counts, and the next save removes both.
    let ckpts = parts.scratch_dir.join("checkpoints");
    for partial in [".step-00000006.tmp-4242424", "step-00000007"] {
        std::fs::create_dir_all(ckpts.join(partial)).unwrap();
        std::fs::write(ckpts.join(partial).join("model.safetensors"), b"half-written").unwrap();
    }
    let second = run(&parts, &cfg, &opts(true, None)).unwrap();
    assert_eq!(second["resumed_from"], 5);
    assert_eq!(second["completed"], true);

    let a = std::fs::read_to_string(whole.out_dir.join("metrics.jsonl")).unwrap();
    let b = std::fs::read_to_string(parts.out_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(a, b, "every logged loss is identical");
    assert_eq!(a.lines().filter(|l| l.contains("\"train\"")).count(), 8);
    // The checkpoint counts the tokens of the whole run, not those since the resume.
    let tokens_seen = |c: &StageContext| -> u64 {
        let state = std::fs::read_to_string(c.scratch_dir.join("checkpoints/step-00000008/state.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&state).unwrap()["tokens_seen"].as_u64().unwrap()
    };
    assert!(tokens_seen(&whole) > 0);
    assert_eq!(tokens_seen(&parts), tokens_seen(&whole));
    let wa = std::fs::read(whole.out_dir.join("model.safetensors")).unwrap();
    let wb = std::fs::read(parts.out_dir.join("model.safetensors")).unwrap();
    assert!(wa == wb, "final weights are bit-identical");

    // keep_last = 2: of the checkpoints at 3, 5, 6 and 8 only the newest two remain.
    let names: Vec<String> = std::fs::read_dir(parts.scratch_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, vec!["step-00000006", "step-00000008"]);

    // Resuming with a different config is refused, naming the fix.
    let mut other = cfg.clone();
    other.optimizer.lr = 1e-4;
    let err = run(&parts, &other, &opts(true, None)).unwrap_err().to_string();
    assert!(err.contains("different [train] config"), "{err}");
}

#[test]
fn keeping_attention_probabilities_gives_the_losses_and_weights_of_recomputing_them() {
    let work = common::work_dir(24);
    let mut cfg = config("qwen2-nano".into(), 3);
    let mut outputs = Vec::new();
    for recompute in [true, false] {
        cfg.recompute_attention = recompute;
        let c = ctx(work.path(), if recompute { "recomputed" } else { "kept" });
        run(&c, &cfg, &opts(false, None)).unwrap();
        outputs.push((std::fs::read_to_string(c.out_dir.join("metrics.jsonl")).unwrap(), std::fs::read(c.out_dir.join("model.safetensors")).unwrap()));
    }
    assert!(outputs[0].0.contains("\"train\""), "metrics have training lines");
    assert_eq!(outputs[0].0, outputs[1].0, "every logged loss is identical");
    assert!(outputs[0].1 == outputs[1].1, "final weights are bit-identical");
    // ... and the setting reaches the model the trainer builds, and its bf16-style views.
    let probe = TrainConfig { vocab_from_tokenizer: false, ..cfg };
    let lm = distill_train::build_model(&probe, None, &Device::Cpu).unwrap();
    assert_eq!(lm.model.attention_backward(), AttentionBackward::KeepProbs);
    assert_eq!(lm.compute_view(DType::F32).unwrap().attention_backward(), AttentionBackward::KeepProbs);
}

#[test]
fn kd_training_moves_the_student_towards_the_teacher_and_exports_an_hf_folder() {
    let work = common::work_dir(60);
    let mut cfg = config("llama-nano".into(), 30);
    cfg.eval_every = 10;
    cfg.checkpoint_every = 0;
    let c = ctx(work.path(), "kd");
    let stats = run(&c, &cfg, &opts(false, None)).unwrap();
    let evals: Vec<serde_json::Value> = metrics(&c.out_dir).into_iter().filter(|m| m["kind"] == "eval").collect();
    assert_eq!(evals.len(), 3);
    // The untrained student (same seed, same init) on the same held-out rows.
    let tok = distill_train::export::tokenizer_info(&work.path().join("tokenizer/tokenizer.json")).unwrap();
    let fresh = distill_train::build_model(&cfg, Some(&tok), &Device::Cpu).unwrap();
    let files = distill_train::data::shard_files(&work.path().join("shards")).unwrap();
    let data = distill_train::source::ShardData::open(&files, 1 << 20, fresh.model.config().vocab_size()).unwrap();
    let before = distill_train::trainer::evaluate(&fresh.model, &data.validation, 4, 0, 1.0).unwrap().kd;
    let after = evals[2]["val_kd"].as_f64().unwrap();
    assert!(after < before - 0.03, "held-out KL {before} -> {after} should fall");
    let train: Vec<f64> = metrics(&c.out_dir).iter().filter(|m| m["kind"] == "train").map(|m| m["forward_kl"].as_f64().unwrap()).collect();
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    assert!(mean(&train[25..]) < 0.9 * mean(&train[..5]), "train KL should fall: {train:?}");
    assert!(evals[2]["kd_tokens"].as_f64().unwrap() > 100.0);
    assert_eq!(stats["train_examples"], 48);
    assert_eq!(stats["validation_examples"], 12);

    // The HF folder: files, HF keys, and weights that reproduce the trained model's logits.
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "metrics.jsonl", "loss_curve.png"] {
        assert!(c.out_dir.join(f).exists(), "{f} missing");
    }
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["vocab_size"], 512);
    for key in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
        "max_position_embeddings",
        "eos_token_id",
    ] {
        assert!(config.get(key).is_some(), "config.json lacks {key}");
    }
    let gen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.out_dir.join("generation_config.json")).unwrap()).unwrap();
    assert_eq!(gen["eos_token_id"], 0);
    assert_eq!(gen["pad_token_id"], 1);
    assert_eq!(std::fs::read(c.out_dir.join("tokenizer.json")).unwrap(), std::fs::read(work.path().join("tokenizer/tokenizer.json")).unwrap());
    let loaded = load_hf_dir(&c.out_dir, &Device::Cpu).unwrap();
    let logits = loaded.forward(&Tensor::new(&[[5u32, 6, 7]], &Device::Cpu).unwrap()).unwrap();
    assert_eq!(logits.dims(), &[1, 3, 512]);
    let png = std::fs::read(c.out_dir.join("loss_curve.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

/// A model with more embedding rows than its tokenizer has tokens (Qwen2.5: 151,936 rows for
/// 151,665 tokens) trains and exports as it is: the extra rows are never a target, and the
/// soft labels' tail holds whatever mass the student gives them.
#[test]
fn a_model_with_more_embedding_rows_than_tokens_trains_and_exports_its_own_size() {
    let work = common::work_dir(24);
    let path = work.path().join("padded-gpt2.json");
    let padded = common::VOCAB as u64 + 64;
    let model = serde_json::json!({"model_type": "gpt2", "vocab_size": padded, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2});
    std::fs::write(&path, model.to_string()).unwrap();
    let mut cfg = config(path.display().to_string(), 4);
    cfg.vocab_from_tokenizer = false;
    cfg.checkpoint_every = 0;
    let c = ctx(work.path(), "padded");
    let stats = run(&c, &cfg, &opts(false, None)).unwrap();
    assert_eq!(stats["completed"], true);
    let evals: Vec<serde_json::Value> = metrics(&c.out_dir).into_iter().filter(|m| m["kind"] == "eval").collect();
    assert!(evals.iter().all(|e| e["val_kd"].as_f64().unwrap().is_finite() && e["val_ce"].as_f64().unwrap().is_finite()), "{evals:?}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["vocab_size"], padded);
    assert_eq!(load_hf_dir(&c.out_dir, &Device::Cpu).unwrap().forward(&Tensor::new(&[[5u32, 6]], &Device::Cpu).unwrap()).unwrap().dims(), &[1, 2, padded as usize]);
}

#[test]
fn plain_cross_entropy_on_documents_is_the_same_loop() {
    let work = tempfile::tempdir().unwrap();
    let tok = work.path().join("tokenizer.json");
    common::write_tokenizer(&tok);
    // Documents with a learnable pattern: counting sequences.
    let docs: Vec<Vec<u32>> = (0..60).map(|d| (0..30).map(|i| 2 + ((d + i) % 40) as u32).collect()).collect();
    let mut cfg = config("llama-nano".into(), 25);
    cfg.loss.kd = 0.0;
    cfg.loss.ce = 1.0;
    cfg.seq_len = 32;
    cfg.checkpoint_every = 0;
    cfg.eval_every = 0;
    let out = work.path().join("out");
    let stats = train_documents(&docs, &cfg, &tok, &out, &work.path().join("scratch"), true, &opts(false, None)).unwrap();
    let m = metrics(&out);
    let train: Vec<f64> = m.iter().filter(|x| x["kind"] == "train").map(|x| x["loss"].as_f64().unwrap()).collect();
    assert_eq!(train.len(), 25);
    assert!(train[0] > 5.5, "starts near ln(512) = 6.24, got {}", train[0]);
    assert!(train[24] < train[0] - 1.0, "CE falls: {train:?}");
    assert_eq!(m.last().unwrap()["kind"], "eval");
    assert_eq!(m.last().unwrap()["kd_tokens"], 0.0, "no soft labels in raw text");
    assert!(stats["validation_examples"].as_u64().unwrap() > 0);
    assert!(out.join("model.safetensors").exists());
}

#[test]
fn print_params_uses_the_tokenizer_vocabulary_and_matches_the_built_model() {
    let work = tempfile::tempdir().unwrap();
    let tok: PathBuf = work.path().join("tokenizer.json");
    common::write_tokenizer(&tok);
    let cfg = TrainConfig { model: "nano".into(), ..Default::default() };
    let (mc, n) = param_count(&cfg, Some(&tok)).unwrap();
    assert_eq!(mc.vocab_size(), 512);
    let built = distill_train::build_model(&cfg, Some(&distill_train::export::tokenizer_info(&tok).unwrap()), &Device::Cpu).unwrap();
    assert_eq!(built.num_params(), n);
    let (_, n124) = param_count(&TrainConfig { model: "gpt2-124m".into(), vocab_from_tokenizer: false, ..Default::default() }, None).unwrap();
    assert_eq!(n124, 124_439_808);
}

#[test]
fn malformed_rows_are_skipped_and_counted() {
    let work = common::work_dir(20);
    let mut rows = common::teacher_rows(3, 9);
    rows[0].loss_mask.pop(); // lists of different lengths
    rows[1].input_ids[2] = 9999; // outside the vocabulary
    common::write_shard(&work.path().join("shards/part-00002.parquet"), &rows);
    let cfg = config("llama-nano".into(), 2);
    let stats = run(&ctx(work.path(), "bad"), &cfg, &opts(false, None)).unwrap();
    assert_eq!(stats["skipped_rows"], 2);
    assert_eq!(stats["train_examples"].as_u64().unwrap() + stats["validation_examples"].as_u64().unwrap(), 21);
}

#[test]
fn a_missing_shards_folder_names_the_fix() {
    let work = tempfile::tempdir().unwrap();
    common::write_tokenizer(&work.path().join("tokenizer.json"));
    let cfg = TrainConfig { tokenizer: work.path().join("tokenizer.json").display().to_string(), ..Default::default() };
    let err = run(&ctx(work.path(), "x"), &cfg, &opts(false, None)).unwrap_err().to_string();
    assert!(err.contains("shards") && err.contains("run the shards stage"), "{err}");
}

/// Issue #15: shards much larger than a window are read a window of row groups at a time; an
/// epoch still deals every row exactly once, batches still hold similar lengths, and a run
/// resumed at any (epoch, batch) position deals exactly the batches an uninterrupted run would,
/// across windows and epochs.
#[test]
fn shards_larger_than_a_window_stream_and_resume_at_any_batch() {
    use distill_train::checkpoint::DataPosition;
    use distill_train::source::{ShardData, Source, WINDOW_ROWS};
    use distill_train::trainer::Feeder;

    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<common::Row> = (0..2600)
        .map(|i| {
            let n = 4 + (i * 7919) % 29;
            common::Row {
                id: format!("r{i:05}#0"),
                input_ids: (0..n).map(|j| 2 + ((i * 31 + j * 17) % 500) as u32).collect(),
                loss_mask: (0..n).map(|j| u8::from(j >= 2)).collect(),
                topk_ids: (0..n).map(|j| if j >= 2 { vec![3, 4] } else { vec![] }).collect(),
                topk_lps: (0..n).map(|j| if j >= 2 { vec![-0.1, -2.5] } else { vec![] }).collect(),
                hard: false,
                split: if i % 10 == 9 { "validation" } else { "train" },
            }
        })
        .collect();
    let mut files = Vec::new();
    for (f, part) in rows.chunks(900).enumerate() {
        let path = dir.path().join(format!("part-{f}.parquet"));
        common::write_shard_in_groups(&path, part, 100);
        files.push(path);
    }
    let data = ShardData::open(&files, 1 << 20, 512).unwrap();
    assert_eq!((data.train.len(), data.validation.len()), (2340, 260));
    let windows = data.train.windows(7, Some(0));
    assert!(windows.len() >= 2 && windows[..windows.len() - 1].iter().all(|w| w.len() >= WINDOW_ROWS), "{:?}", windows.iter().map(Vec::len).collect::<Vec<_>>());
    assert_ne!(windows, data.train.windows(7, Some(1)), "row groups are shuffled per epoch");

    let bs = 4;
    let ids = |b: Vec<distill_train::data::Example>| b.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let mut feeder = Feeder::new(&data.train, bs, 7, DataPosition::default()).unwrap();
    let per_epoch: usize = windows.iter().map(|w| distill_train::batch::batch_count(w.len(), bs)).sum();
    let mut dealt: Vec<Vec<String>> = Vec::new();
    for _ in 0..per_epoch + 20 {
        dealt.push(ids(feeder.next_batch().unwrap()));
    }
    let mut first_epoch: Vec<&String> = dealt[..per_epoch].iter().flatten().collect();
    first_epoch.sort();
    first_epoch.dedup();
    assert_eq!(first_epoch.len(), 2340, "every training row once per epoch");
    assert_eq!(feeder.position(), DataPosition { epoch: 1, batch: 20 });
    for k in [0, 1, 255, 256, 300, 500, per_epoch - 1, per_epoch] {
        let mut resumed = Feeder::new(&data.train, bs, 7, DataPosition { epoch: 0, batch: k }).unwrap();
        for want in &dealt[k..(k + 5).min(dealt.len())] {
            assert_eq!(&ids(resumed.next_batch().unwrap()), want, "resumed at batch {k}");
        }
    }
    // Batches built ahead (while the device runs a step) are not yet trained on: a checkpoint
    // taken then still names the first of them, and they are the ones the next step gets.
    let cpu = candle_core::Device::Cpu;
    let at = DataPosition { epoch: 0, batch: per_epoch - 1 };
    let mut ahead = Feeder::new(&data.train, bs, 7, at).unwrap();
    ahead.prefetch(3, &cpu).unwrap();
    assert_eq!(ahead.position(), at);
    let got = ahead.step_batches(3, &cpu).unwrap();
    assert_eq!(ahead.position(), DataPosition { epoch: 1, batch: 2 });
    let mut plain = Feeder::new(&data.train, bs, 7, at).unwrap();
    for b in got {
        let want = distill_train::batch::Batch::new(&plain.next_batch().unwrap().iter().collect::<Vec<_>>(), &cpu).unwrap();
        assert_eq!(b.ids.to_vec2::<u32>().unwrap(), want.ids.to_vec2::<u32>().unwrap());
    }
    // Length bucketing survives windowing.
    let len = |id: &str| rows.iter().find(|r| r.id == id).unwrap().input_ids.len();
    let spread = dealt.iter().map(|b| b.iter().map(|i| len(i)).max().unwrap() - b.iter().map(|i| len(i)).min().unwrap()).max().unwrap();
    assert!(spread <= 3, "spread {spread}");
}
