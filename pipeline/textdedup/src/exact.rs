//! Exact duplicates after [`normalize`](crate::normalize::normalize): texts equal up to case
//! and whitespace. The first occurrence (smallest index) of each normalised text is kept.

use std::collections::HashMap;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::lsh::Cluster;
use crate::normalize::normalize;

/// 128 bits of sha256 of the normalised text: equal for exact duplicates, and what a
/// streaming caller keeps per text instead of the text (16 bytes).
pub type Fingerprint = [u8; 16];

pub fn fingerprint(text: &str) -> Fingerprint {
    let digest = Sha256::digest(normalize(text).as_bytes());
    digest[..16].try_into().expect("sha256 has 32 bytes")
}

/// Clusters of texts whose normalised forms are equal, sorted by the kept index; each
/// duplicate carries similarity 1.0. Blank texts (nothing but whitespace) are one cluster too.
pub fn exact_duplicates<S: AsRef<str> + Sync>(texts: &[S]) -> Vec<Cluster> {
    let fingerprints: Vec<Fingerprint> = texts.par_iter().map(|t| fingerprint(t.as_ref())).collect();
    duplicate_fingerprints(&fingerprints)
}

/// [`exact_duplicates`] over fingerprints computed beforehand.
pub fn duplicate_fingerprints(fingerprints: &[Fingerprint]) -> Vec<Cluster> {
    let mut first: HashMap<&Fingerprint, usize> = HashMap::with_capacity(fingerprints.len());
    let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); fingerprints.len()];
    for (i, f) in fingerprints.iter().enumerate() {
        match first.get(f) {
            Some(&k) => members[k].push((i, 1.0)),
            None => {
                first.insert(f, i);
            }
        }
    }
    members.into_iter().enumerate().filter(|(_, m)| !m.is_empty()).map(|(keep, duplicates)| Cluster { keep, duplicates }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_whitespace_variants_are_exact_duplicates() {
        let texts = ["Write a  function\nthat adds.", "other", "write a function that adds.", "WRITE A FUNCTION THAT ADDS.  "];
        let c = exact_duplicates(&texts);
        assert_eq!(c, vec![Cluster { keep: 0, duplicates: vec![(2, 1.0), (3, 1.0)] }]);
    }
}
