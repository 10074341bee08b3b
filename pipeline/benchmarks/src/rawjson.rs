//! Splitting a JSON object into its fields **without interpreting the values**.
//!
//! Why not serde_json: the EvalPlus files hold test inputs that serde_json cannot represent
//! faithfully. They contain integers beyond 64 bits (2,356 in HumanEval+, 723 in MBPP+) that
//! would be rounded through f64, and bare `Infinity` / `-Infinity` tokens (MBPP+), which Python's
//! `json` writes and reads but strict JSON forbids. The inputs are only ever handed to Python's
//! `json.loads`, so they are kept as the exact text of the file; the other fields are decoded with
//! serde_json from their raw text.

/// `(key, raw value text)` for each field of the top-level object in `text`, in file order.
pub(crate) fn object_fields(text: &str) -> Result<Vec<(String, &str)>, String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    i = skip_ws(b, i + 1);
    let mut fields = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Ok(fields);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected a key at byte {i}"));
        }
        let key_end = scan_string(b, i)?;
        let key: String = serde_json::from_str(&text[i..key_end]).map_err(|e| e.to_string())?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return Err(format!("expected ':' after key '{key}'"));
        }
        let start = skip_ws(b, i + 1);
        let end = scan_value(b, start)?;
        fields.push((key, &text[start..end]));
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(fields),
            _ => return Err(format!("expected ',' or '}}' at byte {i}")),
        }
    }
}

/// Number of elements of a raw JSON array (`[]` has 0).
pub(crate) fn array_len(raw: &str) -> Result<usize, String> {
    let b = raw.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Err("expected a JSON array".into());
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Ok(0);
    }
    let mut n = 0;
    loop {
        i = skip_ws(b, scan_value(b, i)?);
        n += 1;
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Ok(n),
            _ => return Err(format!("expected ',' or ']' at byte {i}")),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote; returns the index just past the closing quote.
fn scan_string(b: &[u8], mut i: usize) -> Result<usize, String> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unterminated string".into())
}

/// Returns the index just past the value starting at `b[i]`.
fn scan_value(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        None => Err("expected a value, found the end".into()),
        Some(b'"') => scan_string(b, i),
        Some(b'[') | Some(b'{') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = scan_string(b, j)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("unterminated array or object".into())
        }
        // A scalar: number, true/false/null, or Python's Infinity / -Infinity / NaN.
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b']' | b'}') && !b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j == i {
                Err(format!("expected a value at byte {i}"))
            } else {
                Ok(j)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_big_integers_and_infinity_verbatim() {
        let line = r#"{"task_id": "Mbpp/1", "x": [[-Infinity, 123456789012345678901234567890], {"a": "],}\""}], "atol": 1e-06}"#;
        let f = object_fields(line).unwrap();
        assert_eq!(f[0], ("task_id".to_string(), r#""Mbpp/1""#));
        assert_eq!(f[1].1, r#"[[-Infinity, 123456789012345678901234567890], {"a": "],}\""}]"#);
        assert_eq!(f[2], ("atol".to_string(), "1e-06"));
        assert_eq!(array_len(f[1].1).unwrap(), 2);
        assert_eq!(array_len(" [ ] ").unwrap(), 0);
        assert_eq!(array_len("[[1,2],[3],\"a,b\"]").unwrap(), 3);
    }

    #[test]
    fn malformed_objects_are_errors() {
        assert!(object_fields("[1]").is_err());
        assert!(object_fields(r#"{"a": [1, 2}"#).is_err());
        assert!(object_fields(r#"{"a" 1}"#).is_err());
        assert!(object_fields(r#"{"a": "x}"#).is_err());
    }
}
