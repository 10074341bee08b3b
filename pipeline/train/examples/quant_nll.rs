//! Held-out NLL of a model folder with f32, int8 (Q8_0) and int4 (Q4_K) weights, on the
//! validation rows of a shards folder (and, as a larger sample, its train rows), computed by the trainer's own held-out evaluation
//! (`trainer::evaluate`: token-weighted CE over the completion positions, nats/token). Prints
//! one JSON line per quantization (benches/quant/run.py reads them):
//!
//! ```text
//! cargo run -p distill-train --example quant_nll -- datasets/default/train datasets/default/shards
//! ```

use std::path::Path;

use candle_core::Device;
use distill_model::{load_hf_dir, Quantization};
use distill_train::source::ShardData;
use distill_train::{data, trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model_dir), Some(shards)) = (args.next(), args.next()) else {
        return Err("usage: quant_nll MODEL_DIR SHARDS_DIR".into());
    };
    let (model_dir, shards) = (Path::new(&model_dir), Path::new(&shards));
    for q in [None, Some(Quantization::Q8_0), Some(Quantization::Q4K)] {
        let mut model = load_hf_dir(model_dir, &Device::Cpu)?;
        let stats = q.map(|q| model.quantize(q)).transpose()?;
        let cfg = model.config();
        let data = ShardData::open(&data::shard_files(shards)?, cfg.max_positions(), cfg.vocab_size())?;
        let t0 = std::time::Instant::now();
        let e = trainer::evaluate(&model, &data.validation, 8, 0, 1.0)?;
        let t = trainer::evaluate(&model, &data.train, 8, 0, 1.0)?;
        let line = serde_json::json!({
            "quantize": q.map_or("f32", |q| q.name()),
            "nll": e.ce,
            "tokens": e.ce_tokens,
            "nll_train_rows": t.ce,
            "train_tokens": t.ce_tokens,
            "matrices": stats.as_ref().map(|s| &s.matrices),
            "weight_bytes_quantized": stats.as_ref().map(|s| (s.dense_bytes, s.quantized_bytes)),
            "secs": t0.elapsed().as_secs_f64(),
        });
        println!("{line}");
    }
    Ok(())
}
