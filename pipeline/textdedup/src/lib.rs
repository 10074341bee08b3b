//! Text deduplication and decontamination over plain strings, written once for the prompts
//! stage (prompts) and the filter stage (teacher answers).
//!
//! - [`normalize`]: lower-case + whitespace collapse; word tokens with spans and hashes.
//! - [`exact_duplicates`]: texts equal after normalisation.
//! - [`MinHashDedup`]: MinHash signatures over word `k`-shingles and LSH banding; returns
//!   near-duplicate [`Cluster`]s (the smallest input index of each is the one kept).
//! - [`Decontaminator`]: n-gram overlap and docstring-substring matches against benchmark
//!   [`Reference`] texts, reporting the task matched and the overlapping [`Span`].
//!
//! Nothing here reads files or knows a benchmark's format: callers pass `(text)` slices and
//! keep their own ids, so the same code serves any stage. All results are deterministic for a
//! given config (seeded permutations, fixed hash functions, sorted merges), whatever the
//! number of rayon threads.
//!
//! ```
//! use distill_textdedup::{MinHashConfig, MinHashDedup};
//! let texts = ["Write a function that reverses a list in place.",
//!              "Write a function that reverses a list in place!",
//!              "Explain what a Python generator is."];
//! let clusters = MinHashDedup::new(&MinHashConfig::default()).unwrap().find_duplicates(&texts);
//! assert_eq!(clusters.len(), 1);
//! assert_eq!((clusters[0].keep, clusters[0].duplicates[0].0), (0, 1));
//! ```

pub mod benchmark_refs;
pub mod config;
pub mod decontam;
pub mod error;
pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod normalize;

pub use config::{DecontaminationConfig, DedupConfig};
pub use decontam::{DecontamConfig, Decontaminator, Match, MatchMethod, RefKind, Reference, Span};
pub use error::{Result, TextDedupError};
pub use exact::{duplicate_fingerprints, exact_duplicates, fingerprint, Fingerprint};
pub use lsh::{Cluster, MinHashDedup, Signatures};
pub use minhash::{jaccard, MinHashConfig, MinHasher};
