//! The shards' Arrow/Parquet schema (version [`SCHEMA_VERSION`]), built explicitly.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `row_id` | string | `<prompt id>#<sample index>`, stable across runs |
//! | `prompt_id` | string | the prompt's id (the split is decided by it) |
//! | `prompt_text` | string | the text the student is conditioned on |
//! | `completion_text` | string | the teacher's answer, exactly |
//! | `input_ids` | list<u32> | student ids of prompt + completion (+ end-of-text) |
//! | `loss_mask` | list<u8> | 1 on completion positions |
//! | `teacher_topk_ids` | list<list<u32>> | per position: teacher's top-k as student ids, most probable first (empty: no soft label) |
//! | `teacher_topk_logprobs` | list<list<f32>> | matching log-probs |
//! | `teacher_token_logprob` | list<f32> | log-prob of the sampled token (0 where unknown) |
//! | `tail_mass` | list<f32> | `1 - sum(exp(top-k))`, the (k+1)-th bucket (0 where no soft label) |
//! | `hard_label_only` | bool | soft labels unusable for this row; train on the text only |
//! | `alignment` | string | `exact`, `exact_teacher_tokens` (the teacher's own split, all in the student vocabulary), or why not: `no_teacher_logprobs`, `teacher_bytes_mismatch`, `boundaries_differ`, `bad_teacher_logprob` |
//! | `split` | string | `train` or `validation` |
//! | `prompt_tokens` | u32 | number of prompt positions |
//! | `pass_vector` | list<bool> | which teacher-written tests the sample passed |
//! | `score_<name>` | f64, nullable | one column per filter score (`score_pass_rate`, `score_agreement`, ...) |
//!
//! Entry `i` of a per-position list describes `input_ids[i]` given `input_ids[..i]`.

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
    ];
    fields.extend(score_names.iter().map(|n| Field::new(format!("{SCORE_PREFIX}{n}"), DataType::Float64, true)));
    Arc::new(Schema::new(fields))
}

/// A short text form of the schema for the manifest: `[(name, type)]`.
pub fn describe(schema: &Schema) -> Vec<(String, String)> {
    schema.fields().iter().map(|f| (f.name().clone(), type_name(f.data_type()))).collect()
}

fn type_name(dt: &DataType) -> String {
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
