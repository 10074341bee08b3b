//! The shards' Arrow/Parquet schema (version [`SCHEMA_VERSION`]): the one place the column
//! types are written down. The shards stage writes files with [`schema`]; the trainer checks
//! the columns it reads against it with [`check`] before casting them; the manifest's column
//! list is [`describe`] of it; and a test (`tests/readme_columns.rs`) holds README.md's column
//! table ("The Parquet shards", which also says what each column means) to it.
//!
//! Column names are `distill_core::records::shard_columns`. Entry `i` of a per-position list
//! describes `input_ids[i]` given `input_ids[..i]`; where a position has no soft label its
//! top-k lists are empty and its log-prob and tail mass 0. The `score_<name>` columns are
//! nullable: a sample may lack a score.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use distill_core::records::shard_columns as col;

pub use col::{SCHEMA_VERSION, SCORE_PREFIX};

/// The item field of lists: named `element`, as the Parquet spec and pyarrow name it.
pub fn item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("element", dt, false))
}

pub fn list_of(dt: DataType) -> DataType {
    DataType::List(item(dt))
}

/// The schema for a set of score names (sorted; each becomes `score_<name>`).
pub fn schema(score_names: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new(col::ROW_ID, DataType::Utf8, false),
        Field::new(col::PROMPT_ID, DataType::Utf8, false),
        Field::new(col::PROMPT_TEXT, DataType::Utf8, false),
        Field::new(col::COMPLETION_TEXT, DataType::Utf8, false),
        Field::new(col::INPUT_IDS, list_of(DataType::UInt32), false),
        Field::new(col::LOSS_MASK, list_of(DataType::UInt8), false),
        Field::new(col::TEACHER_TOPK_IDS, list_of(list_of(DataType::UInt32)), false),
        Field::new(col::TEACHER_TOPK_LOGPROBS, list_of(list_of(DataType::Float32)), false),
        Field::new(col::TEACHER_TOKEN_LOGPROB, list_of(DataType::Float32), false),
        Field::new(col::TAIL_MASS, list_of(DataType::Float32), false),
        Field::new(col::HARD_LABEL_ONLY, DataType::Boolean, false),
        Field::new(col::ALIGNMENT, DataType::Utf8, false),
        Field::new(col::SPLIT, DataType::Utf8, false),
        Field::new(col::PROMPT_TOKENS, DataType::UInt32, false),
        Field::new(col::PASS_VECTOR, list_of(DataType::Boolean), false),
        Field::new(col::CHUNK_STARTS, list_of(DataType::UInt32), false),
        Field::new(col::CHUNK_LENGTHS, list_of(DataType::UInt32), false),
        Field::new(col::SOFT_LABEL_BYTE_SHARE, DataType::Float32, false),
        Field::new(col::TEACHER_MASS_CAPTURED, DataType::Float32, false),
        Field::new(col::FIM, DataType::Utf8, false),
    ];
    fields.extend(score_names.iter().map(|n| Field::new(format!("{SCORE_PREFIX}{n}"), DataType::Float64, true)));
    Arc::new(Schema::new(fields))
}

/// A short text form of the schema for the manifest: `[(name, type)]`.
pub fn describe(schema: &Schema) -> Vec<(String, String)> {
    schema.fields().iter().map(|f| (f.name().clone(), type_name(f.data_type()))).collect()
}

/// The type of a column as README.md's table writes it (`list<uint32>`, `string`, ...).
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::List(f) => format!("list<{}>", type_name(f.data_type())),
        DataType::Utf8 => "string".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "bool".into(),
        other => other.to_string(),
    }
}

/// Checks that `actual` has each of `columns` with the type [`schema`] gives it: what a reader
/// does before it casts the columns it needs (extra columns, and columns it does not ask for,
/// are not its business). `Err`: what is wrong and the fix, for a person.
pub fn check(actual: &Schema, columns: &[&str]) -> Result<(), String> {
    let expected = schema(&[]);
    for &name in columns {
        let want = expected.field_with_name(name).map_err(|_| format!("'{name}' is not a shard column"))?.data_type();
        let field = actual.field_with_name(name).map_err(|_| format!("missing column '{name}' (shards from an older schema? re-run the shards stage)"))?;
        if !same_shape(field.data_type(), want) {
            return Err(format!("column '{name}' is {}, the shards stage writes {} (re-run the shards stage)", type_name(field.data_type()), type_name(want)));
        }
    }
    Ok(())
}

/// Equal types, ignoring the name and nullability of list items: writers differ there (the
/// shards stage writes non-null `element`s, Arrow's builders nullable `item`s) and every such
/// file reads the same way.
fn same_shape(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) => same_shape(x.data_type(), y.data_type()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, dt: DataType) -> Schema {
        Schema::new(vec![Field::new(col::ROW_ID, DataType::Utf8, false), Field::new(name, dt, true)])
    }

    #[test]
    fn the_written_schema_passes_its_own_check() {
        let s = schema(&["pass_rate".into()]);
        let all: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).filter(|n| !n.starts_with(SCORE_PREFIX)).collect();
        assert_eq!(check(&s, &all), Ok(()));
    }

    #[test]
    fn list_items_may_be_named_and_nullable_as_any_writer_likes() {
        let nullable_item = DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)));
        assert_eq!(check(&with(col::INPUT_IDS, nullable_item), &[col::ROW_ID, col::INPUT_IDS]), Ok(()));
    }

    #[test]
    fn a_missing_column_or_another_type_names_the_column_and_the_fix() {
        let err = check(&with(col::INPUT_IDS, list_of(DataType::UInt32)), &[col::LOSS_MASK]).unwrap_err();
        assert!(err.contains("missing column 'loss_mask'") && err.contains("re-run the shards stage"), "{err}");
        let err = check(&with(col::INPUT_IDS, list_of(DataType::UInt8)), &[col::INPUT_IDS]).unwrap_err();
        assert_eq!(err, "column 'input_ids' is list<uint8>, the shards stage writes list<uint32> (re-run the shards stage)");
    }
}
