//! Activation checkpointing per transformer block: a training forward and backward that keeps
//! only each block's input between the two passes, instead of every intermediate of every
//! block.
//!
//! 1. Forward, block by block, each block's output detached at once (its graph, and with it
//!    its intermediates, is freed); kept: the block inputs `h_i` (B, T, C) and the dropout
//!    state before each block.
//! 2. The head and the loss on `h_L` (a leaf variable) with their graph; backward gives the
//!    head's weight gradients and `g_L = dL/dh_L`.
//! 3. For i = L-1 .. 0: block i again from `h_i` (a leaf variable; dropout replayed from its
//!    saved state, so the masks are the same), and backward of `sum(block_i(h_i) * g_{i+1})`,
//!    whose gradient is the chain rule's: the block's weight gradients and `g_i = dL/dh_i`.
//! 4. The embeddings the same way with `g_0`.
//!
//! Gradients of a weight used in several segments (tied embeddings: the LM head and the token
//! embeddings) are summed. The result equals the plain backward's up to float summation order
//! (`tests/checkpoint.rs`). Memory: L block inputs plus one block's intermediates, instead of
//! L blocks' intermediates; time: one more forward of every block.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId, Var};

use crate::error::{Error, Result};
use crate::head_loss::HeadRows;
use crate::model::CausalLm;
use crate::nn::Dropout;

/// What [`forward_backward`] returns: the loss (detached), what the loss function returned
/// beside it, and the gradient of every variable of `vars` that the loss depends on, by id.
pub struct Checkpointed<R> {
    pub loss: Tensor,
    pub extra: R,
    pub grads: HashMap<TensorId, Tensor>,
}

/// The training forward of `ids` (B, T) (as [`CausalLm::forward_next_head`]: the head's rows
/// for positions 0..T-1 in the compute dtype), `loss` on them, and the backward, with
/// activations checkpointed per block (module docs). `loss` returns the scalar to
/// differentiate and anything else the caller wants back.
pub fn forward_backward<R>(
    model: &CausalLm,
    ids: &Tensor,
    mut dropout: Option<&mut Dropout>,
    vars: &[Var],
    loss: impl FnOnce(&HeadRows) -> Result<(Tensor, R)>,
) -> Result<Checkpointed<R>> {
    let seg = model.segments(ids.dim(1)?)?;
    let embed_dropout = dropout.as_deref().cloned();
    let mut h = seg.embed(ids, &mut dropout)?.detach();
    let mut inputs = Vec::with_capacity(seg.blocks());
    for i in 0..seg.blocks() {
        inputs.push((h.clone(), dropout.as_deref().cloned()));
        h = seg.block(i, &h, &mut dropout)?.detach();
    }

    let mut grads = HashMap::new();
    let top = Var::from_tensor(&h)?;
    let (total, extra) = loss(&seg.head_next(top.as_tensor())?)?;
    let store = total.backward()?;
    let mut g = take(&store, top.as_tensor(), vars, &mut grads)?;
    drop(store);

    for (i, (input, state)) in inputs.into_iter().enumerate().rev() {
        let x = Var::from_tensor(&input)?;
        let mut replay = state;
        let out = seg.block(i, x.as_tensor(), &mut replay.as_mut())?;
        let store = (out * &g)?.sum_all()?.backward()?;
        g = take(&store, x.as_tensor(), vars, &mut grads)?;
    }
    let mut replay = embed_dropout;
    let e = seg.embed(ids, &mut replay.as_mut())?;
    let store = (e * &g)?.sum_all()?.backward()?;
    add(&store, vars, &mut grads)?;
    Ok(Checkpointed { loss: total.detach(), extra, grads })
}

/// Adds `store`'s gradients of `vars` into `grads` (detached: the sums must not hold on to
/// the segment's graph) and returns the gradient of the segment's input `x`.
fn take(store: &GradStore, x: &Tensor, vars: &[Var], grads: &mut HashMap<TensorId, Tensor>) -> Result<Tensor> {
    add(store, vars, grads)?;
    match store.get(x) {
        Some(g) => Ok(g.detach()),
        None => Err(Error::Invalid("the loss does not depend on the model's hidden states".into())),
    }
}

fn add(store: &GradStore, vars: &[Var], grads: &mut HashMap<TensorId, Tensor>) -> Result<()> {
    for v in vars {
        if let Some(g) = store.get(v.as_tensor()) {
            let sum = match grads.remove(&v.id()) {
                Some(acc) => (acc + g)?.detach(),
                None => g.detach(),
            };
            grads.insert(v.id(), sum);
        }
    }
    Ok(())
}
