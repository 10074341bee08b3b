//! Writes a random model folder of a preset's shape (the test fixture, with the preset's full
//! vocabulary so a token costs what it costs in the real model) for benchmarks outside Rust:
//!
//! ```text
//! cargo run -p distill-serve --example model_dir -- /tmp/gpt2 gpt2-124m [seed]
//! ```
//!
//! The folder is HF-shaped (`config.json`, `model.safetensors` with HF names, `tokenizer.json`),
//! so transformers' `GPT2LMHeadModel.from_pretrained` loads the same weights `distill serve` does
//! (benches/serve/run.py serves it both ways).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(preset)) = (args.next(), args.next()) else {
        return Err("usage: model_dir DIR PRESET [SEED]".into());
    };
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    distill_serve::fixture::write_model_dir_sized(std::path::Path::new(&dir), &preset, seed, true)?;
    println!("wrote {dir} ({preset}, seed {seed})");
    Ok(())
}
