//! Near-duplicate clusters by MinHash LSH banding.
//!
//! The `P`-long signature is cut into `b` bands of `r` rows (`b·r <= P`); two texts are a
//! candidate pair when all `r` rows of some band are equal, which happens with probability
//! `1 - (1 - J^r)^b` for Jaccard `J`: an S-curve that is steep around the threshold.
//!
//! Passes, like datatrove's MinHash pipeline but in memory:
//! 1. signatures, one text per rayon task (`n × P` `u32`s, flat);
//! 2. per band (in parallel): a 64-bit key per text, `(key, index)` pairs sorted, runs of equal
//!    keys are buckets; sorting instead of a hash map keeps the order deterministic;
//! 3. per bucket (in parallel): edges. Without verification each member is linked to the
//!    bucket's first member. With verification a member is linked to the first earlier
//!    "representative" whose estimated Jaccard is `>= threshold`, or becomes a representative
//!    itself, so a bucket of `m` near-identical texts costs `m` comparisons, not `m²/2`;
//! 4. union-find over the edges in band order; each root is the smallest index of its
//!    cluster, which is the text kept. Callers sort their input by id to make that stable.
//!
//! Clusters are transitive closures: if `A ~ B` and `B ~ C`, all three are one cluster.

use rayon::prelude::*;

use crate::error::Result;
use crate::minhash::{estimated_jaccard, MinHashConfig, MinHasher};
use crate::normalize::fmix64;

/// Signatures of `n` texts, `num_perm` values each, flat.
#[derive(Debug, Clone)]
pub struct Signatures {
    num_perm: usize,
    data: Vec<u32>,
    empty: Vec<bool>,
}

impl Signatures {
    /// Signatures computed one at a time elsewhere ([`MinHasher::signature_into`]), `num_perm`
    /// values each, concatenated.
    pub fn from_flat(num_perm: usize, data: Vec<u32>) -> Self {
        assert!(num_perm > 0 && data.len().is_multiple_of(num_perm), "signatures of {num_perm} values");
        let empty = data.chunks(num_perm).map(|s| s.iter().all(|&v| v == u32::MAX)).collect();
        Signatures { num_perm, data, empty }
    }

    pub fn len(&self) -> usize {
        self.empty.len()
    }

    pub fn is_empty(&self) -> bool {
        self.empty.is_empty()
    }

    pub fn get(&self, i: usize) -> &[u32] {
        &self.data[i * self.num_perm..(i + 1) * self.num_perm]
    }

    /// Whether text `i` had no word tokens (it then never matches anything here).
    pub fn is_blank(&self, i: usize) -> bool {
        self.empty[i]
    }
}

/// A near-duplicate cluster: the member kept (smallest input index) and the others, each
/// with its estimated Jaccard similarity to the kept one.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub keep: usize,
    pub duplicates: Vec<(usize, f64)>,
}

/// MinHash LSH near-duplicate detection with resolved settings.
#[derive(Debug, Clone)]
pub struct MinHashDedup {
    hasher: MinHasher,
    bands: usize,
    rows: usize,
    threshold: f64,
    verify: bool,
}

impl MinHashDedup {
    pub fn new(cfg: &MinHashConfig) -> Result<Self> {
        let (bands, rows) = cfg.resolve()?;
        Ok(MinHashDedup { hasher: MinHasher::new(cfg.num_perm, cfg.shingle_size, cfg.seed), bands, rows, threshold: cfg.threshold, verify: cfg.verify })
    }

    /// `(bands, rows)` in use.
    pub fn banding(&self) -> (usize, usize) {
        (self.bands, self.rows)
    }

    pub fn hasher(&self) -> &MinHasher {
        &self.hasher
    }

    /// Signatures of every text, computed in parallel.
    pub fn signatures<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Signatures {
        let p = self.hasher.num_perm();
        let mut data = vec![u32::MAX; texts.len() * p];
        data.par_chunks_mut(p).zip(texts.par_iter()).for_each(|(out, t)| self.hasher.signature_into(t.as_ref(), out));
        Signatures::from_flat(p, data)
    }

    /// Near-duplicate clusters of `texts` (indices into it), sorted by the kept index.
    pub fn find_duplicates<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Cluster> {
        let sigs = self.signatures(texts);
        self.clusters(&sigs)
    }

    /// Clusters from precomputed signatures.
    pub fn clusters(&self, sigs: &Signatures) -> Vec<Cluster> {
        let buckets = self.buckets(sigs);
        let edges: Vec<Vec<(u32, u32)>> = buckets.par_iter().map(|bucket| self.bucket_edges(sigs, bucket)).collect();
        let mut uf = UnionFind::new(sigs.len());
        for (a, b) in edges.into_iter().flatten() {
            uf.union(a as usize, b as usize);
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); sigs.len()];
        for i in 0..sigs.len() {
            let root = uf.find(i);
            if root != i {
                members[root].push(i);
            }
        }
        members
            .into_iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(keep, dups)| Cluster { keep, duplicates: dups.into_iter().map(|d| (d, estimated_jaccard(sigs.get(keep), sigs.get(d)))).collect() })
            .collect()
    }

    /// Every pair `(i, j)`, `i < j`, that shares at least one band (unverified: what
    /// datasketch's `MinHashLSH.query` returns), sorted and deduplicated.
    pub fn candidate_pairs(&self, sigs: &Signatures) -> Vec<(u32, u32)> {
        let mut pairs: Vec<(u32, u32)> =
            self.buckets(sigs).par_iter().flat_map_iter(|bucket| bucket.iter().enumerate().flat_map(move |(x, &i)| bucket[x + 1..].iter().map(move |&j| (i, j)))).collect();
        pairs.par_sort_unstable();
        pairs.dedup();
        pairs
    }

    /// Buckets of two or more texts, band after band; members in increasing index order.
    fn buckets(&self, sigs: &Signatures) -> Vec<Vec<u32>> {
        let per_band: Vec<Vec<Vec<u32>>> = (0..self.bands)
            .into_par_iter()
            .map(|band| {
                let lo = band * self.rows;
                let mut keyed: Vec<(u64, u32)> = (0..sigs.len()).filter(|&i| !sigs.is_blank(i)).map(|i| (band_key(&sigs.get(i)[lo..lo + self.rows]), i as u32)).collect();
                keyed.sort_unstable();
                let mut out = Vec::new();
                for run in keyed.chunk_by(|x, y| x.0 == y.0) {
                    if run.len() > 1 {
                        out.push(run.iter().map(|&(_, i)| i).collect());
                    }
                }
                out
            })
            .collect();
        per_band.into_iter().flatten().collect()
    }

    fn bucket_edges(&self, sigs: &Signatures, bucket: &[u32]) -> Vec<(u32, u32)> {
        if !self.verify {
            return bucket[1..].iter().map(|&m| (bucket[0], m)).collect();
        }
        let mut reps: Vec<u32> = Vec::new();
        let mut edges = Vec::new();
        for &m in bucket {
            let sig = sigs.get(m as usize);
            match reps.iter().find(|&&r| estimated_jaccard(sigs.get(r as usize), sig) >= self.threshold) {
                Some(&r) => edges.push((r, m)),
                None => reps.push(m),
            }
        }
        edges
    }
}

fn band_key(rows: &[u32]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &v in rows {
        h = fmix64(h ^ u64::from(v)).wrapping_add(0x632b_e59b_d9b4_e019);
    }
    h
}

/// Union-find whose root is always the smallest index of its set.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind { parent: (0..n).collect() }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]]; // path halving
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edited_copies_cluster_with_their_original_and_others_stay_apart() {
        let base = "write a python function that returns the longest strictly increasing subsequence of a list of integers and explain its time complexity in a short paragraph";
        let texts = vec![
            base.to_string(),
            "implement a binary search tree with insert delete and in order traversal methods and write unit tests for each of them using pytest".to_string(),
            base.replace("short paragraph", "short paragraphs"),
            base.to_uppercase(),
            String::new(),
            String::new(),
        ];
        let d = MinHashDedup::new(&MinHashConfig { threshold: 0.7, ..Default::default() }).unwrap();
        let clusters = d.find_duplicates(&texts);
        assert_eq!(clusters.len(), 1, "{clusters:?}");
        assert_eq!(clusters[0].keep, 0);
        let dups: Vec<usize> = clusters[0].duplicates.iter().map(|d| d.0).collect();
        assert_eq!(dups, vec![2, 3]);
        assert_eq!(clusters[0].duplicates[1].1, 1.0);
    }

    #[test]
    fn same_seed_same_clusters_regardless_of_threads() {
        let texts: Vec<String> = (0..400).map(|i| format!("task number {} asks for a function that sorts {} items by key {}", i % 50, i % 7, i % 3)).collect();
        let d = MinHashDedup::new(&MinHashConfig { shingle_size: 2, threshold: 0.6, ..Default::default() }).unwrap();
        let a = d.find_duplicates(&texts);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = pool.install(|| d.find_duplicates(&texts));
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }
}
