//! Golden tests for the distillation losses against a NumPy reference
//! (`fixtures/make_losses.py`, which wrote `fixtures/losses.json`), tolerance 1e-5 absolute,
//! plus the properties the losses must have whatever the inputs.

use candle_core::{DType, Device, Tensor, Var};
use distill_model::loss::{self, KdTargets, LossWeights, TokenCounts};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mat_f32(v: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

fn mat_u32(v: &Value) -> Tensor {
    let rows: Vec<Vec<u32>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()).collect();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

fn vec_f32(v: &Value) -> Tensor {
    Tensor::new(v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>(), &Device::Cpu).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= TOL, "{what}[{i}]: candle {g} vs numpy {w}");
    }
}

fn targets(f: &Value) -> KdTargets {
    let (kd_mask, ce_mask) = (vec_f32(&f["kd_mask"]), vec_f32(&f["ce_mask"]));
    KdTargets {
        topk_ids: mat_u32(&f["topk_ids"]),
        topk_logprobs: mat_f32(&f["topk_logprobs"]),
        topk_mask: None,
        sampled: Tensor::new(f["sampled"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap(),
        counts: TokenCounts::of_masks(&kd_mask, &ce_mask).unwrap(),
        kd_mask,
        ce_mask,
        chunks: None,
    }
}

/// The fixture's targets with the chunk case's KD mask (rows that continue a chunk carry none).
fn chunk_targets(f: &Value) -> KdTargets {
    let mut tg = targets(f);
    tg.kd_mask = vec_f32(&f["chunk_kd_mask"]);
    tg.counts = TokenCounts::of_masks(&tg.kd_mask, &tg.ce_mask).unwrap();
    tg
}

fn u32_vec(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn chunk_rows(f: &Value) -> Option<loss::ChunkRows> {
    loss::ChunkRows::new(u32_vec(&f["chunk_interior"]), u32_vec(&f["chunk_start"]), &Device::Cpu).unwrap()
}

fn weights(case: &Value) -> LossWeights {
    let w = &case["weights"];
    LossWeights {
        kd: w["kd"].as_f64().unwrap(),
        reverse_kl: w["reverse_kl"].as_f64().unwrap(),
        jsd: w["jsd"].as_f64().unwrap(),
        jsd_beta: case["jsd_beta"].as_f64().unwrap(),
        ce: w["ce"].as_f64().unwrap(),
        temperature: case["temperature"].as_f64().unwrap(),
        capture_temperature: case["capture_temperature"].as_f64().unwrap(),
    }
}

#[test]
fn the_fixture_is_what_its_script_writes() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/make_losses.py");
    let out = std::process::Command::new(distill_core::testing::reference_python()).arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let regenerated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(same_up_to_last_bits(&regenerated, &fixture()), "fixtures/losses.json is stale: re-run make_losses.py\n{regenerated}");
}

/// JSON equality where numbers may differ in their last bits (1e-12 relative): NumPy's
/// float64 reductions differ by an ulp between CPUs (SIMD paths), as seen on a sum in `jsd`.
fn same_up_to_last_bits(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_up_to_last_bits(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_up_to_last_bits(v, w))),
        _ => a == b,
    }
}

#[test]
fn every_loss_matches_the_numpy_reference() {
    let f = fixture();
    let logits = mat_f32(&f["logits"]);
    let tg = targets(&f);
    for case in f["cases"].as_array().unwrap() {
        let (t, tc, beta) = (case["temperature"].as_f64().unwrap(), case["capture_temperature"].as_f64().unwrap(), case["jsd_beta"].as_f64().unwrap());
        let logp = loss::teacher_log_probs(&tg.topk_logprobs, None, tc, t).unwrap();
        let logq = loss::student_log_probs(&logits, &tg.topk_ids, None, t).unwrap();
        let what = |n: &str| format!("{n} at T={t} Tc={tc}");
        let rows = &case["rows"];
        assert_close(&loss::forward_kl(&logp, &logq).unwrap().to_vec1().unwrap(), &floats(&rows["forward_kl"]), &what("forward_kl"));
        assert_close(&loss::reverse_kl(&logp, &logq).unwrap().to_vec1().unwrap(), &floats(&rows["reverse_kl"]), &what("reverse_kl"));
        assert_close(&loss::jsd(&logp, &logq, beta).unwrap().to_vec1().unwrap(), &floats(&rows["jsd"]), &what("jsd"));
        assert_close(&loss::cross_entropy(&logits, &tg.sampled).unwrap().to_vec1().unwrap(), &floats(&rows["ce"]), &what("ce"));

        let weights = weights(case);
        let parts = loss::distill_loss(&logits, &tg, &weights, true).unwrap();
        let means = &case["means"];
        let t = parts.terms().unwrap();
        for (name, got) in [("forward_kl", t.forward_kl), ("reverse_kl", t.reverse_kl), ("jsd", t.jsd), ("ce", t.ce)] {
            assert!((got - means[name].as_f64().unwrap()).abs() <= TOL, "{} mean: {got} vs {}", what(name), means[name]);
        }
        let total = parts.total.to_scalar::<f32>().unwrap() as f64;
        assert!((total - case["total"].as_f64().unwrap()).abs() <= TOL, "{}: {total} vs {}", what("total"), case["total"]);
    }
}

/// Chunk events (a teacher of another tokenizer): the later rows of a chunk add their sampled
/// token's log-prob to entry 0 of its first row.
#[test]
fn chunk_events_match_the_numpy_reference() {
    let f = fixture();
    let logits = mat_f32(&f["logits"]);
    let mut tg = chunk_targets(&f);
    tg.chunks = chunk_rows(&f);
    for case in f["chunk_cases"].as_array().unwrap() {
        let parts = loss::distill_loss(&logits, &tg, &weights(case), true).unwrap();
        let means = &case["means"];
        let t = parts.terms().unwrap();
        for (name, got) in [("forward_kl", t.forward_kl), ("reverse_kl", t.reverse_kl), ("jsd", t.jsd), ("ce", t.ce)] {
            assert!((got - means[name].as_f64().unwrap()).abs() <= TOL, "{name} at T={}: {got} vs {}", case["temperature"], means[name]);
        }
        let total = parts.total.to_scalar::<f32>().unwrap() as f64;
        assert!((total - case["total"].as_f64().unwrap()).abs() <= TOL, "total at T={}: {total} vs {}", case["temperature"], case["total"]);
    }
}

/// Under a KD-only loss a chunk's later rows learn through the chunk's event alone: their
/// logits get a gradient with chunks, none without.
#[test]
fn a_chunks_later_rows_get_their_gradient_from_its_first_row() {
    let f = fixture();
    let var = Var::from_tensor(&mat_f32(&f["logits"])).unwrap();
    let mut tg = chunk_targets(&f);
    let w = LossWeights { kd: 1.0, ce: 0.0, ..Default::default() };
    let grad_norms = |tg: &KdTargets| {
        let parts = loss::distill_loss(var.as_tensor(), tg, &w, false).unwrap();
        let g = parts.total.backward().unwrap().get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        g.iter().map(|row| row.iter().map(|x| x * x).sum::<f32>().sqrt()).collect::<Vec<f32>>()
    };
    let without = grad_norms(&tg);
    tg.chunks = chunk_rows(&f);
    let with = grad_norms(&tg);
    for row in [1, 2, 5] {
        assert_eq!(without[row], 0.0, "row {row} has no soft labels of its own");
        assert!(with[row] > 1e-4, "row {row} continues a chunk: {with:?}");
    }
}

/// Deterministic pseudo-random numbers for property tests (no RNG crate needed).
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn random_case(seed: u64, n: usize, v: usize, k: usize, scale: f32) -> (Tensor, Tensor, Tensor) {
    let mut s = seed;
    let logits: Vec<f32> = (0..n * v).map(|_| lcg(&mut s) * scale).collect();
    let teacher: Vec<f32> = (0..n * v).map(|_| lcg(&mut s) * scale).collect();
    let mut ids = Vec::new();
    let mut lps = Vec::new();
    for r in 0..n {
        let row = &teacher[r * v..(r + 1) * v];
        let lse = row.iter().map(|x| x.exp()).sum::<f32>().ln();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for &i in &order[..k] {
            ids.push(i as u32);
            lps.push(row[i] - lse);
        }
    }
    let dev = Device::Cpu;
    (Tensor::from_vec(logits, (n, v), &dev).unwrap(), Tensor::from_vec(ids, (n, k), &dev).unwrap(), Tensor::from_vec(lps, (n, k), &dev).unwrap())
}

#[test]
fn kl_and_jsd_are_never_negative() {
    for seed in 0..20u64 {
        let scale = [0.1f32, 1.0, 5.0, 20.0][seed as usize % 4];
        let (logits, ids, lps) = random_case(seed, 16, 50, 1 + seed as usize % 8, scale);
        for &(t, tc) in &[(1.0, 1.0), (2.0, 0.7), (0.5, 1.0)] {
            let logp = loss::teacher_log_probs(&lps, None, tc, t).unwrap();
            let logq = loss::student_log_probs(&logits, &ids, None, t).unwrap();
            for (name, x) in
                [("forward", loss::forward_kl(&logp, &logq).unwrap()), ("reverse", loss::reverse_kl(&logp, &logq).unwrap()), ("jsd", loss::jsd(&logp, &logq, 0.3).unwrap())]
            {
                let min = x.to_vec1::<f32>().unwrap().into_iter().fold(f32::INFINITY, f32::min);
                // Only float rounding may take an exact zero below it.
                assert!(min >= -1e-6, "{name} KL {min} < 0 (seed {seed}, scale {scale}, T {t})");
            }
            // A student equal to the teacher has zero divergence.
            let same = loss::forward_kl(&logp, &logp).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(same < 1e-6);
        }
    }
}

#[test]
fn jsd_endpoints_are_the_two_kls() {
    let (logits, ids, lps) = random_case(7, 12, 30, 5, 3.0);
    let logp = loss::teacher_log_probs(&lps, None, 1.0, 1.0).unwrap();
    let logq = loss::student_log_probs(&logits, &ids, None, 1.0).unwrap();
    let v = |t: Tensor| t.to_vec1::<f32>().unwrap();
    let fkl = v(loss::forward_kl(&logp, &logq).unwrap());
    let rkl = v(loss::reverse_kl(&logp, &logq).unwrap());
    // The general formula (0 < beta < 1) approaches the KLs at the ends: JSD(beta) / beta ->
    // KL(p || q) as beta -> 0, and JSD(beta) / (1 - beta) -> KL(q || p) as beta -> 1 (the
    // other term is O(beta^2)), so the endpoints (TRL's convention) continue the curve.
    // In f64, where a beta of 1e-7 is still far above rounding.
    let (p64, q64) = (logp.to_dtype(DType::F64).unwrap(), logq.to_dtype(DType::F64).unwrap());
    let v64 = |t: Tensor| t.to_vec1::<f64>().unwrap();
    let (fkl64, rkl64) = (v64(loss::forward_kl(&p64, &q64).unwrap()), v64(loss::reverse_kl(&p64, &q64).unwrap()));
    let b = 1e-7;
    let near0 = v64(loss::jsd(&p64, &q64, b).unwrap());
    let near1 = v64(loss::jsd(&p64, &q64, 1.0 - b).unwrap());
    for i in 0..fkl64.len() {
        assert!(fkl64[i] > 0.05 && rkl64[i] > 0.05, "row {i}: distributions too close to test");
        let (f, r) = (near0[i] / b, near1[i] / b);
        assert!((f - fkl64[i]).abs() < 1e-3 * fkl64[i], "row {i}: jsd(beta)/beta = {f}, forward KL {}", fkl64[i]);
        assert!((r - rkl64[i]).abs() < 1e-3 * rkl64[i], "row {i}: jsd(1-beta)/beta = {r}, reverse KL {}", rkl64[i]);
    }
    assert_eq!(v(loss::jsd(&logp, &logq, 0.0).unwrap()), fkl);
    assert_eq!(v(loss::jsd(&logp, &logq, 1.0).unwrap()), rkl);
    // In between, by convexity of KL in its second argument:
    // 0 <= JSD(beta) <= beta (1 - beta) (KL(p || q) + KL(q || p)), and at most the entropy
    // of a beta coin (ln 2 at beta = 0.5).
    for beta in [0.1, 0.5, 0.9] {
        let mid = v(loss::jsd(&logp, &logq, beta).unwrap());
        let coin = -(beta * beta.ln() + (1.0 - beta) * (1.0 - beta).ln());
        for i in 0..mid.len() {
            let bound = beta * (1.0 - beta) * (fkl[i] + rkl[i]) as f64;
            let m = mid[i] as f64;
            assert!(m >= -1e-6 && m <= bound * (1.0 + 1e-5) + 1e-6 && m <= coin + 1e-6, "beta {beta} row {i}: jsd {m}, bound {bound}, coin {coin}");
        }
    }
    assert!(loss::jsd(&logp, &logq, 1.5).is_err());
}

#[test]
fn padding_contributes_nothing_to_the_loss_or_its_gradient() {
    let (n, v, k) = (6, 20, 4);
    let (logits, ids, lps) = random_case(3, n, v, k, 2.0);
    let dev = Device::Cpu;
    let sampled = Tensor::new(&[1u32, 2, 3, 4, 5, 6], &dev).unwrap();
    let kd_mask = Tensor::new(&[1f32, 1., 0., 1., 0., 0.], &dev).unwrap();
    let ce_mask = Tensor::new(&[1f32, 1., 1., 1., 0., 0.], &dev).unwrap();
    let w = LossWeights { kd: 1.0, reverse_kl: 0.5, jsd: 0.5, jsd_beta: 0.4, ce: 0.7, temperature: 1.5, capture_temperature: 0.9 };
    let run = |logits: &Tensor, lps: &Tensor, sampled: &Tensor| {
        let var = Var::from_tensor(logits).unwrap();
        let tg = KdTargets {
            topk_ids: ids.clone(),
            topk_logprobs: lps.clone(),
            topk_mask: None,
            sampled: sampled.clone(),
            kd_mask: kd_mask.clone(),
            ce_mask: ce_mask.clone(),
            chunks: None,
            counts: TokenCounts::of_masks(&kd_mask, &ce_mask).unwrap(),
        };
        let parts = loss::distill_loss(var.as_tensor(), &tg, &w, true).unwrap();
        let grads = parts.total.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        (parts.total.to_scalar::<f32>().unwrap(), g)
    };
    let (base, g) = run(&logits, &lps, &sampled);
    // Rows 4 and 5 are padding for every term; garbage there changes nothing.
    let junk_logits = logits.slice_assign(&[4..6, 0..v], &(Tensor::ones((2, v), candle_core::DType::F32, &dev).unwrap() * 1e4).unwrap()).unwrap();
    let junk_lps = lps.slice_assign(&[4..6, 0..k], &Tensor::full(-0.01f32, (2, k), &dev).unwrap()).unwrap();
    let junk_sampled = Tensor::new(&[1u32, 2, 3, 4, 19, 0], &dev).unwrap();
    let (junk, gj) = run(&junk_logits, &junk_lps, &junk_sampled);
    assert_eq!(base, junk);
    assert_eq!(g[..4], gj[..4]);
    for row in &gj[4..] {
        assert!(row.iter().all(|x| *x == 0.0), "padding rows got gradient {row:?}");
    }
    // Row 2 counts only for CE: its KD targets are ignored.
    assert!(g[2].iter().any(|x| *x != 0.0));
}

#[test]
fn temperature_correction_is_exact_when_capture_and_train_temperatures_agree() {
    // Teacher log-probs captured at Tc = T, k = V: the corrected distribution is the teacher's.
    let dev = Device::Cpu;
    let lps = Tensor::new(&[[0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()]], &dev).unwrap();
    let logp = loss::teacher_log_probs(&lps, None, 0.8, 0.8).unwrap().to_vec2::<f32>().unwrap();
    for (a, b) in logp[0][..3].iter().zip([0.6f32, 0.3, 0.1]) {
        assert!((a - b.ln()).abs() < 1e-6);
    }
    // From Tc = 1 to T = 2: log-ratios between listed tokens scale by Tc / T exactly
    // (the tail is one approximated category; ratios do not depend on it).
    let logp = loss::teacher_log_probs(&lps, None, 1.0, 2.0).unwrap().to_vec2::<f32>().unwrap();
    let want = 0.5 * (0.6f64 / 0.3).ln();
    assert!(((logp[0][0] - logp[0][1]) as f64 - want).abs() < 1e-6);
    let want = 0.5 * (0.3f64 / 0.1).ln();
    assert!(((logp[0][1] - logp[0][2]) as f64 - want).abs() < 1e-6);
}

#[test]
fn absent_top_k_entries_change_nothing() {
    // Row 0 lists 3 tokens; padding it to K = 5 with masked entries (any ids, any numbers)
    // gives the same losses and gradients as the unpadded row.
    let dev = Device::Cpu;
    let logits = Tensor::new(&[[0.3f32, -1.0, 2.0, 0.5, 0.0, 1.2]], &dev).unwrap();
    let ids3 = Tensor::new(&[[2u32, 5, 3]], &dev).unwrap();
    let lp3 = Tensor::new(&[[-0.4f32, -1.6, -2.5]], &dev).unwrap();
    let ids5 = Tensor::new(&[[2u32, 5, 3, 0, 2]], &dev).unwrap();
    let lp5 = Tensor::new(&[[-0.4f32, -1.6, -2.5, -0.1, 0.0]], &dev).unwrap();
    let mask5 = Tensor::new(&[[1f32, 1., 1., 0., 0.]], &dev).unwrap();
    let one = Tensor::new(&[1f32], &dev).unwrap();
    let w = LossWeights { kd: 1.0, reverse_kl: 1.0, jsd: 1.0, jsd_beta: 0.3, ce: 0.0, temperature: 1.3, capture_temperature: 0.9 };
    let run = |ids: &Tensor, lp: &Tensor, mask: Option<Tensor>| {
        let var = Var::from_tensor(&logits).unwrap();
        let tg = KdTargets {
            topk_ids: ids.clone(),
            topk_logprobs: lp.clone(),
            topk_mask: mask,
            sampled: Tensor::new(&[0u32], &dev).unwrap(),
            kd_mask: one.clone(),
            ce_mask: one.clone(),
            chunks: None,
            counts: TokenCounts { kd: 1.0, ce: 1.0 },
        };
        let parts = loss::distill_loss(var.as_tensor(), &tg, &w, true).unwrap();
        let g = parts.total.backward().unwrap().get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let t = parts.terms().unwrap();
        (t.forward_kl, t.reverse_kl, t.jsd, g)
    };
    let a = run(&ids3, &lp3, None);
    let b = run(&ids5, &lp5, Some(mask5));
    assert!((a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6 && (a.2 - b.2).abs() < 1e-6, "{:?} vs {:?}", (a.0, a.1, a.2), (b.0, b.1, b.2));
    for (x, y) in a.3[0].iter().zip(&b.3[0]) {
        assert!((x - y).abs() < 1e-6);
    }
}
