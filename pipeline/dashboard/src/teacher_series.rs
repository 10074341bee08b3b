//! The teacher's requests, cache hits, rate limiting, tokens and cost over time.
//!
//! The teacher stage appends a line of cumulative counters to
//! `<work-dir>/.scratch/<stage>/series.jsonl` at most every second while it runs and publishes
//! the file with its outputs (see `distill_teacher::series`); like the training metrics
//! ([`crate::metrics::live_file_named`]) the live file is the scratch one when it is at least
//! as new as the published one. A run of hours has tens of thousands of lines: the answer is
//! thinned to at most `max_points` evenly spaced ones (the first and the last always kept),
//! which is all a chart can show.

use std::path::Path;

use serde_json::Value;

/// The series' file name, as the teacher stage writes it.
pub const SERIES: &str = "series.jsonl";

/// Points returned when the client does not say.
pub const DEFAULT_POINTS: usize = 2000;

/// Most points a client may ask for.
pub const MAX_POINTS: usize = 20_000;

/// The series of `stage` so far (empty if it never ran with a series), thinned to
/// `max_points`, and the number of lines in the file.
pub fn read(work_dir: &Path, stage: &str, max_points: usize) -> distill_core::Result<(Vec<Value>, usize)> {
    let Some(path) = crate::metrics::live_file_named(work_dir, stage, SERIES) else { return Ok((Vec::new(), 0)) };
    let (lines, _) = distill_core::jsonl::read_lenient(&path)?;
    let total = lines.len();
    Ok((thin(lines, max_points), total))
}

/// At most `max` evenly spaced items of `items`, the first and last included.
pub fn thin<T>(items: Vec<T>, max: usize) -> Vec<T> {
    let n = items.len();
    if n <= max || max < 2 {
        return if max == 0 {
            Vec::new()
        } else if max == 1 {
            items.into_iter().last().into_iter().collect()
        } else {
            items
        };
    }
    let keep: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    let mut next = 0;
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            (next < keep.len() && keep[next] == i).then(|| {
                next += 1;
                item
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_the_ends_and_spaces_the_rest() {
        assert_eq!(thin((0..10).collect(), 20), (0..10).collect::<Vec<_>>());
        assert_eq!(thin((0..10).collect(), 4), vec![0, 3, 6, 9]);
        assert_eq!(thin((0..10_001).collect::<Vec<_>>(), 2000).len(), 2000);
        assert_eq!(thin((0..5).collect(), 1), vec![4]);
    }
}
