//! MinHash LSH recall against exact Jaccard on a sample: of the pairs whose exact shingle
//! Jaccard is at or above the threshold, how many does LSH report?

use distill_textdedup::minhash::{estimated_jaccard, shingle_set};
use distill_textdedup::{jaccard, MinHashConfig, MinHashDedup};
use rand::{Rng, SeedableRng};

/// 300 base texts and 300 edited copies (1-5 of 40 words replaced): Jaccards spread over
/// the whole range around the threshold.
fn corpus(rng: &mut rand::rngs::StdRng) -> Vec<String> {
    let vocab: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
    let mut texts: Vec<Vec<String>> = (0..300).map(|_| (0..40).map(|_| vocab[rng.random_range(0..2000)].clone()).collect()).collect();
    for i in 0..300 {
        let mut copy = texts[i].clone();
        for _ in 0..rng.random_range(1..=5) {
            let at = rng.random_range(0..copy.len());
            copy[at] = vocab[rng.random_range(0..2000)].clone();
        }
        texts.push(copy);
    }
    texts.into_iter().map(|t| t.join(" ")).collect()
}

#[test]
fn lsh_finds_most_pairs_above_the_threshold_and_few_far_below() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let texts = corpus(&mut rng);
    let cfg = MinHashConfig { shingle_size: 3, threshold: 0.5, verify: false, ..Default::default() };
    let dedup = MinHashDedup::new(&cfg).unwrap();
    let sigs = dedup.signatures(&texts);
    let found: std::collections::HashSet<(u32, u32)> = dedup.candidate_pairs(&sigs).into_iter().collect();
    let sets: Vec<Vec<u64>> = texts.iter().map(|t| shingle_set(t, 3)).collect();
    let (bands, rows) = dedup.banding();
    let (mut above, mut above_found, mut far_below, mut far_below_found) = (0, 0, 0, 0);
    // Over pairs above the threshold: LSH finds each with probability 1 - (1 - J^r)^b, so the
    // number found should match the sum of those probabilities (a Poisson-binomial count).
    let (mut expected, mut variance) = (0.0f64, 0.0f64);
    let (mut clear, mut clear_found) = (0, 0);
    for i in 0..texts.len() {
        for j in i + 1..texts.len() {
            let jac = jaccard(&sets[i], &sets[j]);
            let hit = found.contains(&(i as u32, j as u32));
            if jac >= 0.5 {
                above += 1;
                above_found += usize::from(hit);
                let p = distill_textdedup::minhash::collision_probability(jac, bands, rows);
                expected += p;
                variance += p * (1.0 - p);
                if jac >= 0.7 {
                    clear += 1;
                    clear_found += usize::from(hit);
                }
            } else if jac < 0.2 {
                far_below += 1;
                far_below_found += usize::from(hit);
            }
        }
    }
    assert!(above > 100 && clear > 50, "the corpus must have pairs above the threshold: {above}, {clear}");
    let sigma = variance.sqrt();
    assert!((above_found as f64 - expected).abs() <= 4.0 * sigma + 2.0, "found {above_found} of {above} pairs with J >= 0.5; the S-curve predicts {expected:.1} ± {sigma:.1}");
    // Well above the threshold LSH misses almost nothing.
    let recall = clear_found as f64 / clear as f64;
    assert!(recall >= 0.97, "recall at J >= 0.7: {recall} ({clear_found}/{clear})");
    assert!(far_below_found * 1000 < far_below, "{far_below_found} of {far_below} dissimilar pairs collided");

    // Verified clusters are joined only by pairs whose estimate clears the threshold: every
    // duplicate has such a pair with another member of its cluster (its score against the kept
    // member may be lower, through a chain of such pairs).
    let verified = MinHashDedup::new(&MinHashConfig { verify: true, ..cfg }).unwrap().clusters(&sigs);
    assert!(!verified.is_empty());
    for c in &verified {
        let members: Vec<usize> = std::iter::once(c.keep).chain(c.duplicates.iter().map(|d| d.0)).collect();
        for &(m, _) in &c.duplicates {
            let linked = members.iter().any(|&o| o != m && estimated_jaccard(sigs.get(o), sigs.get(m)) >= cfg.threshold);
            assert!(linked, "duplicate {m} of cluster {} has no verified pair in it", c.keep);
        }
    }
}
