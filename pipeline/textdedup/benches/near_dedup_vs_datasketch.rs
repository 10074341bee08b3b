//! Near-dedup of 100,000 synthetic prompts: this crate's MinHash LSH against datasketch's
//! `MinHashLSH` (benches/prompts_datasketch.py) with the same shingles, permutations and
//! bands, in one run.
//!
//! Printed: wall time of each (signatures + LSH insert + query for every document), the time
//! ratio, the agreement of the candidate pairs the two report, and each one's recall against
//! exact Jaccard on a sample (all pairs among ~2,000 documents: 1,000 random edited copies, their
//! originals).
//!
//! Run: `cargo bench -p distill-textdedup --bench near_dedup_vs_datasketch`
//! (`DOCS=20000` for a quicker run; the reference Python is `.venv/bin/python`).

use std::collections::HashSet;
use std::io::Write;
use std::process::Command;
use std::time::Instant;

use distill_textdedup::minhash::shingle_set;
use distill_textdedup::{jaccard, MinHashConfig, MinHashDedup};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const OPENERS: &[&str] = &[
    "Write a Python function that",
    "Implement a function which",
    "Given a list of integers,",
    "Create a class that",
    "Fix the bug in the following code so that it",
    "Write unit tests for a function that",
    "Explain how the following function",
    "Refactor this code so that it",
];

/// Word-like tokens from syllables, so shingles look like prose rather than numbers.
fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
    const SYL: &[&str] = &["ka", "lo", "mi", "ter", "an", "sor", "vec", "li", "st", "de", "qu", "ex", "pro", "ma", "ri", "on"];
    let mut words: Vec<String> = (0..n).map(|_| (0..rng.random_range(1..=3)).map(|_| SYL[rng.random_range(0..SYL.len())]).collect::<String>()).collect();
    words.sort();
    words.dedup();
    words
}

/// `n` prompts: 70% originals (an opener + 20-60 random words), 30% edited copies of an
/// earlier original (half with 1-2, half with 3-10 word substitutions, insertions or deletions). Returns the texts and,
/// for each copy, the index of its original.
fn synthetic(n: usize, seed: u64) -> (Vec<String>, Vec<(usize, usize)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let vocab = vocabulary(&mut rng, 5000);
    let mut words: Vec<Vec<String>> = Vec::with_capacity(n);
    let mut copies = Vec::new();
    for i in 0..n {
        if i > 100 && rng.random_bool(0.3) {
            let orig = rng.random_range(0..i);
            let mut w = words[orig].clone();
            // Half light edits (clear duplicates), half heavier ones (around and below the threshold).
            let edits = if rng.random_bool(0.5) { rng.random_range(1..=2) } else { rng.random_range(3..=10) };
            for _ in 0..edits {
                let at = rng.random_range(0..w.len());
                match rng.random_range(0..3) {
                    0 => w[at] = vocab[rng.random_range(0..vocab.len())].clone(),
                    1 => w.insert(at, vocab[rng.random_range(0..vocab.len())].clone()),
                    _ if w.len() > 10 => {
                        w.remove(at);
                    }
                    _ => {}
                }
            }
            copies.push((i, orig));
            words.push(w);
        } else {
            let mut w: Vec<String> = OPENERS[rng.random_range(0..OPENERS.len())].split(' ').map(String::from).collect();
            w.extend((0..rng.random_range(20..=60)).map(|_| vocab[rng.random_range(0..vocab.len())].clone()));
            words.push(w);
        }
    }
    (words.into_iter().map(|w| w.join(" ")).collect(), copies)
}

fn main() {
    let n: usize = std::env::var("DOCS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let cfg = MinHashConfig { shingle_size: 5, num_perm: 128, threshold: 0.7, verify: false, ..Default::default() };
    let dedup = MinHashDedup::new(&cfg).expect("valid config");
    let (bands, rows) = dedup.banding();
    let (texts, copies) = synthetic(n, 7);

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let input = dir.join("prompts.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for t in &texts {
            serde_json::to_writer(&mut f, &serde_json::json!({ "text": t })).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }

    // Ours: signatures, banding, candidate pairs (what datasketch's insert + query give), and
    // the verified clusters the stages use.
    let t0 = Instant::now();
    let sigs = dedup.signatures(&texts);
    let t_sig = t0.elapsed().as_secs_f64();
    let pairs = dedup.candidate_pairs(&sigs);
    let ours_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let clusters = MinHashDedup::new(&MinHashConfig { verify: true, ..cfg.clone() }).unwrap().clusters(&sigs);
    let clusters_secs = t_sig + t1.elapsed().as_secs_f64();

    // datasketch, same parameters.
    let py = distill_core::testing::reference_python();
    let script = distill_core::testing::repo_root().join("benches/prompts_datasketch.py");
    let out_pairs = dir.join("datasketch_pairs.txt");
    let output = Command::new(&py)
        .arg(&script)
        .args(["--input", input.to_str().unwrap(), "--out", out_pairs.to_str().unwrap()])
        .args(["--num-perm", &cfg.num_perm.to_string(), "--bands", &bands.to_string(), "--rows", &rows.to_string()])
        .args(["--shingle", &cfg.shingle_size.to_string()])
        .output()
        .expect("run the datasketch script");
    assert!(output.status.success(), "datasketch script failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    let ds_secs = report["seconds"].as_f64().unwrap();
    let ds_pairs: HashSet<(u32, u32)> = std::fs::read_to_string(&out_pairs)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let our_pairs: HashSet<(u32, u32)> = pairs.iter().copied().collect();
    let both = our_pairs.intersection(&ds_pairs).count();

    // Recall against exact Jaccard on a sample: 1,000 random copies with their originals.
    let mut rng = StdRng::seed_from_u64(99);
    let mut sample: Vec<usize> = Vec::new();
    for _ in 0..2000.min(copies.len()) {
        let (c, o) = copies[rng.random_range(0..copies.len())];
        sample.extend([c, o]);
    }
    sample.sort_unstable();
    sample.dedup();
    let sets: Vec<Vec<u64>> = sample.iter().map(|&i| shingle_set(&texts[i], cfg.shingle_size)).collect();
    let mut cluster_of = vec![usize::MAX; texts.len()];
    for c in &clusters {
        cluster_of[c.keep] = c.keep;
        for d in &c.duplicates {
            cluster_of[d.0] = c.keep;
        }
    }
    let (mut truth, mut ours_hit, mut ds_hit, mut clus_hit) = (0usize, 0usize, 0usize, 0usize);
    for x in 0..sample.len() {
        for y in x + 1..sample.len() {
            if jaccard(&sets[x], &sets[y]) >= cfg.threshold {
                let p = (sample[x] as u32, sample[y] as u32);
                truth += 1;
                ours_hit += usize::from(our_pairs.contains(&p));
                ds_hit += usize::from(ds_pairs.contains(&p));
                clus_hit += usize::from(cluster_of[sample[x]] != usize::MAX && cluster_of[sample[x]] == cluster_of[sample[y]]);
            }
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;

    // Agreement by exact Jaccard of the pair: every pair either side reported, in three bands.
    let all_sets: Vec<Vec<u64>> = {
        use rayon::prelude::*;
        texts.par_iter().map(|t| shingle_set(t, cfg.shingle_size)).collect()
    };
    let bands_of = [(0.8, 1.01, "J >= 0.8"), (cfg.threshold - 0.1, 0.8, "0.6 <= J < 0.8"), (0.0, cfg.threshold - 0.1, "J < 0.6")];
    let mut strata = [(0usize, 0usize, 0usize); 3]; // (ours, datasketch, both)
    for p in our_pairs.union(&ds_pairs) {
        let j = jaccard(&all_sets[p.0 as usize], &all_sets[p.1 as usize]);
        let k = bands_of.iter().position(|(lo, hi, _)| j >= *lo && j < *hi).unwrap_or(2);
        let (o, d) = (our_pairs.contains(p), ds_pairs.contains(p));
        strata[k].0 += usize::from(o);
        strata[k].1 += usize::from(d);
        strata[k].2 += usize::from(o && d);
    }

    println!("near-dedup of {n} synthetic prompts: k={} words, num_perm={}, threshold={}, bands={bands}, rows={rows}", cfg.shingle_size, cfg.num_perm, cfg.threshold);
    println!("threads: {}", rayon::current_num_threads());
    println!("| | seconds (signatures) | seconds (total) | candidate pairs | recall vs exact Jaccard >= {} ({truth} pairs in sample) |", cfg.threshold);
    println!("|---|---:|---:|---:|---:|");
    println!("| distill-textdedup (signatures + LSH pairs) | {t_sig:.3} | {ours_secs:.3} | {} | {:.1}% |", our_pairs.len(), pct(ours_hit, truth));
    println!("| distill-textdedup (verified clusters) | {t_sig:.3} | {clusters_secs:.3} | - | {:.1}% |", pct(clus_hit, truth));
    println!(
        "| datasketch {} MinHashLSH | {:.3} | {ds_secs:.3} | {} | {:.1}% |",
        report["version"].as_str().unwrap_or("?"),
        report["signature_seconds"].as_f64().unwrap_or(f64::NAN),
        ds_pairs.len(),
        pct(ds_hit, truth)
    );
    println!();
    println!("time ratio (datasketch / ours): {:.1}x", ds_secs / ours_secs);
    println!();
    println!("| reported pairs by exact Jaccard | ours | datasketch | both |");
    println!("|---|---:|---:|---:|");
    for ((_, _, name), (o, d, b)) in bands_of.iter().zip(strata) {
        println!("| {name} | {o} | {d} | {b} |");
    }
    println!(
        "pair agreement: {both} in both; {:.1}% of datasketch's pairs found by ours, {:.1}% of ours found by datasketch, Jaccard of the pair sets {:.3}",
        pct(both, ds_pairs.len()),
        pct(both, our_pairs.len()),
        both as f64 / (our_pairs.len() + ds_pairs.len() - both).max(1) as f64
    );
}
