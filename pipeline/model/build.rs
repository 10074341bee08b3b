//! With the `cuda` feature, compiles `kernels/*.cu` to PTX (nvcc; `CUDA_COMPUTE_CAP`, default
//! 90) for `src/cuda_kernels.rs` to load at run time. Without it, does nothing.

use std::path::PathBuf;
use std::process::Command;

/// The `kernels/<name>.cu` files, each compiled to `<name>.ptx`.
const KERNELS: [&str; 9] = ["attention", "flash", "vocab", "adamw", "clip", "norm", "mlp", "embed", "add"];

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var_os("CUDA_ROOT").map(|r| PathBuf::from(r).join("bin/nvcc")).filter(|p| p.exists()).unwrap_or_else(|| "nvcc".into());
    for name in KERNELS {
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", &format!("-arch=sm_{cap}"), &format!("kernels/{name}.cu"), "-o"])
            .arg(out_dir.join(format!("{name}.ptx")))
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e} (the cuda feature needs nvcc: see scripts/build-cuda.sh)", nvcc.display()));
        assert!(status.success(), "nvcc failed on kernels/{name}.cu");
    }
}
