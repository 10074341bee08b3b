//! Serves a tiny random model (the test fixture) until Ctrl-C, to try the API by hand:
//!
//! ```text
//! cargo run -p distill-serve --example tiny_server -- 8080
//! curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "logprobs": true, "top_logprobs": 2}'
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(8080);
    let dir = tempfile::tempdir()?;
    distill_serve::fixture::write_model_dir(dir.path(), "llama-nano", 7)?;
    let cfg = distill_serve::ServeConfig { model_dir: dir.path().display().to_string(), model_name: "tiny".into(), port, ..Default::default() };
    distill_serve::serve_forever(&cfg)?;
    Ok(())
}
