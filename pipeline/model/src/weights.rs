//! Weights in and out: fresh seeded initialisation, HF `model.safetensors` load and save
//! (same names both ways), and the safetensors helpers the trainer uses for optimizer state.
//!
//! Initialisation follows HF's `_init_weights`: weight matrices and embeddings N(0, std) with
//! `std = initializer_range`, GPT-2's residual projections N(0, std / sqrt(2 L)), norms 1,
//! biases 0. Each tensor's values come from an RNG seeded by (seed, tensor name), so the same
//! seed gives the same model whatever order tensors are visited in, on any machine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::ModelConfig;
use crate::error::{Error, IoContext, Result};
use crate::model::CausalLm;

/// A model whose weights are trainable [`Var`]s.
pub struct TrainableLm {
    pub model: CausalLm,
    pub varmap: VarMap,
}

impl TrainableLm {
    /// A freshly initialised model (see the module docs), deterministic for `seed`.
    pub fn init(config: &ModelConfig, device: &Device, seed: u64) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = CausalLm::new(config, vb)?;
        let lm = TrainableLm { model, varmap };
        lm.reinit(seed)?;
        Ok(lm)
    }

    /// Loads an HF folder (`config.json` + weights, see [`read_hf_weights`]) as trainable
    /// weights.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let varmap = VarMap::new();
        let model = CausalLm::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        let lm = TrainableLm { model, varmap };
        lm.set_weights(read_hf_weights(dir, device)?, dir)?;
        Ok(lm)
    }

    /// Every trainable tensor by HF name, sorted by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("var map lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of parameters actually built (tied weights counted once).
    pub fn num_params(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Re-draws every weight from the seeded initialisation.
    pub fn reinit(&self, seed: u64) -> Result<()> {
        let cfg = self.model.config();
        let std = cfg.initializer_range();
        let proj_std = std / (2.0 * cfg.num_layers() as f64).sqrt();
        let gpt2 = matches!(cfg, ModelConfig::Gpt2(_));
        for (name, var) in self.vars() {
            let n = var.elem_count();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.contains("norm") || name.contains(".ln_") {
                vec![1.0; n]
            } else {
                let s = if gpt2 && name.ends_with("c_proj.weight") { proj_std } else { std };
                normal(n, s, seed ^ fnv1a(&name))
            };
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// Sets every var from a safetensors file; all must be present with the right shapes.
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let (tensors, _) = read_safetensors(path, self.model.device())?;
        self.set_weights(normalize_names(tensors), path)
    }

    /// Sets every var from `tensors` (HF names), read from `path` (named in errors).
    fn set_weights(&self, tensors: HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        for (name, var) in self.vars() {
            match tensors.get(&name) {
                Some(t) if t.dims() == var.dims() => var.set(&t.to_dtype(DType::F32)?)?,
                Some(t) => return Err(Error::Invalid(format!("{}: tensor '{name}' has shape {:?}, the model config wants {:?}", path.display(), t.dims(), var.dims()))),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(Error::Invalid(format!("{}: {} tensors missing (first: {}); does config.json match this checkpoint?", path.display(), missing.len(), missing[0])));
        }
        Ok(())
    }

    /// The same model computing in `dtype` (mixed precision): every weight is the f32 master
    /// [`Var`] cast to `dtype`, a differentiable op, so gradients land on the f32 masters. Build
    /// it after each optimizer step (the cast reads the current values).
    pub fn compute_view(&self, dtype: DType) -> Result<CausalLm> {
        self.view_over(self.vars(), dtype)
    }

    /// The same model over other tensors of the same names and shapes (the optimizer's bf16
    /// compute copies), each cast to `dtype` unless it is already: backward's gradients land
    /// on `vars`, in their dtype.
    pub fn view_over(&self, vars: Vec<(String, Var)>, dtype: DType) -> Result<CausalLm> {
        let backend = CastVars { vars: vars.into_iter().collect() };
        let vb = VarBuilder::from_backend(Box::new(backend), dtype, self.model.device().clone());
        let mut view = CausalLm::new(self.model.config(), vb)?;
        view.set_attention_backward(self.model.attention_backward());
        view.set_flash_attention(self.model.flash_attention());
        Ok(view)
    }

    /// Writes the weights as HF `model.safetensors` (f32, metadata `format = pt`).
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        let tensors: BTreeMap<String, Tensor> = self.vars().into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
        write_safetensors(path, &tensors, &BTreeMap::from([("format".to_string(), "pt".to_string())]))
    }
}

/// Loads an HF folder for inference (no gradients): `config.json` + weights (see
/// [`read_hf_weights`]).
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<CausalLm> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let tensors = read_hf_weights(dir, device)?.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?))).collect::<Result<HashMap<_, _>>>()?;
    CausalLm::new(&config, VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// The files holding an HF model folder's weights: `model.safetensors`, or the index
/// `model.safetensors.index.json` followed by the shards its `weight_map` names (as
/// `save_pretrained` writes checkpoints over its `max_shard_size`).
pub fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() || !index.exists() {
        return Ok(vec![single]);
    }
    let mut files = vec![index.clone()];
    for file in shard_map(&index)?.into_values().collect::<std::collections::BTreeSet<_>>() {
        if file.contains('/') || file.contains("..") {
            return Err(Error::Invalid(format!("{}: shard '{file}' is not a file name in the model folder", index.display())));
        }
        files.push(dir.join(file));
    }
    Ok(files)
}

/// An index's `weight_map`: tensor name -> shard file name.
fn shard_map(index: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(index).at(index)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json { path: index.to_path_buf(), source })?;
    serde_json::from_value(v["weight_map"].clone()).map_err(|e| Error::Invalid(format!("{}: \"weight_map\" is not an object of tensor name -> shard file ({e})", index.display())))
}

/// The weights of an HF model folder ([`hf_weight_files`]) by HF name, in their stored dtypes.
pub fn read_hf_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let files = hf_weight_files(dir)?;
    let Some((index, shards)) = files.split_first().filter(|(first, _)| first.extension().is_some_and(|e| e == "json")) else {
        let (tensors, _) = read_safetensors(&files[0], device)?;
        return Ok(normalize_names(tensors));
    };
    let mut out = HashMap::new();
    for shard in shards {
        out.extend(read_safetensors(shard, device)?.0);
    }
    for (name, shard) in shard_map(index)? {
        if !out.contains_key(&name) {
            return Err(Error::Invalid(format!("{}: '{name}' is listed but not in its shard {shard}", index.display())));
        }
    }
    Ok(normalize_names(out))
}

/// OpenAI-era GPT-2 files name tensors `h.0.attn...` / `wte.weight` without `transformer.`;
/// HF's current code writes the prefix. Also drops GPT-2's non-parameter mask buffers.
fn normalize_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let unprefixed = tensors.contains_key("wte.weight") && !tensors.contains_key("transformer.wte.weight");
    tensors
        .into_iter()
        .filter(|(k, _)| !(k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias")))
        .map(|(k, t)| if unprefixed && !k.starts_with("lm_head") { (format!("transformer.{k}"), t) } else { (k, t) })
        .collect()
}

/// Writes tensors (any float or integer dtype candle has) and string metadata, atomically
/// (temp file + rename).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut raw: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let t = t.flatten_all()?;
        let (dtype, bytes) = match t.dtype() {
            DType::F32 => (safetensors::Dtype::F32, t.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
            DType::F64 => (safetensors::Dtype::F64, t.to_vec1::<f64>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
            DType::U32 => (safetensors::Dtype::U32, t.to_vec1::<u32>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
            DType::I64 => (safetensors::Dtype::I64, t.to_vec1::<i64>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
            // Half precisions (and anything else) are stored as f32: checkpoints are master weights.
            _ => (safetensors::Dtype::F32, t.to_dtype(DType::F32)?.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        let shape = tensors[name].dims().to_vec();
        raw.push((name.clone(), dtype, shape, bytes));
    }
    let views = raw
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// Reads every tensor (f32, f16, bf16, f64, u32, i64 kept in their dtype) and the metadata.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<(HashMap<String, Tensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).at(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Invalid(format!("{}: not a safetensors file: {e}", path.display())))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            safetensors::Dtype::U32 => DType::U32,
            safetensors::Dtype::I64 => DType::I64,
            other => return Err(Error::Invalid(format!("{}: tensor '{name}' has unsupported dtype {other:?}", path.display()))),
        };
        out.insert(name, Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)?);
    }
    Ok((out, metadata))
}

/// A tensor of N(0, std) draws from an RNG seeded with `seed`: the same values on every
/// machine and device (tests compare the CPU and CUDA paths on such inputs).
pub fn normal_tensor(shape: impl Into<candle_core::Shape>, std: f64, seed: u64, device: &Device) -> Result<Tensor> {
    let shape = shape.into();
    Ok(Tensor::from_vec(normal(shape.elem_count(), std, seed), shape, device)?)
}

/// `n` draws of N(0, std) from an RNG seeded with `seed` (Box-Muller).
fn normal(n: usize, std: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// FNV-1a, a stable hash of tensor names for per-tensor seeds.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Hands out the trainable vars cast to the builder's dtype (see [`TrainableLm::view_over`]).
struct CastVars {
    vars: HashMap<String, Var>,
}

impl candle_nn::var_builder::SimpleBackend for CastVars {
    fn get(&self, s: candle_core::Shape, name: &str, _: candle_nn::Init, dtype: DType, _: &Device) -> candle_core::Result<Tensor> {
        let var = self.vars.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no trainable tensor named {name}")))?;
        if var.shape() != &s {
            candle_core::bail!("tensor {name}: shape {:?}, expected {:?}", var.dims(), s.dims());
        }
        var.as_tensor().to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> candle_core::Result<Tensor> {
        let var = self.vars.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no trainable tensor named {name}")))?;
        var.as_tensor().to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }
}
