//! README.md's shard column table ("The Parquet shards") is what the shards stage writes: the
//! same columns, in the same order, with the same types as `distill_shards::schema`.

use distill_shards::schema::{describe, schema, SCHEMA_VERSION};

/// The `(column, type)` rows of the table under `## The Parquet shards`.
fn readme_table() -> (String, Vec<(String, String)>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let section = text.split("\n## The Parquet shards\n").nth(1).expect("README has a '## The Parquet shards' section");
    let section = section.split("\n## ").next().unwrap();
    let rows = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect();
    (section.to_string(), rows)
}

#[test]
fn the_readme_column_table_matches_the_written_schema() {
    let (section, rows) = readme_table();
    // One score column stands for all of them, as `score_<name>` in the table.
    let want = describe(&schema(&["<name>".to_string()]));
    assert_eq!(rows, want, "README.md's shard columns differ from distill_shards::schema (fix the README table)");
    let words = section.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains(&format!("Schema version {SCHEMA_VERSION}:")), "README.md should name schema version {SCHEMA_VERSION}");
}
