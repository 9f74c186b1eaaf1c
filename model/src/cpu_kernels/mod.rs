//! The network's heavy operations on the CPU backend, where Burn's Flex kernels spend most of a
//! forward pass outside the arithmetic (profile in `docs/performance.md`): 3D convolution,
//! GroupNorm with what follows it, and attention. Each function here takes Burn tensors and
//! runs the kernel of this module when the backend is Flex (plain inference: no autodiff, f32),
//! and Burn's own operations otherwise (training, the GPU), so the network code calls one
//! function either way and both paths are exercised by the same tests.
//!
//! `DISPR_CPU_KERNELS=burn` turns the kernels off (Burn's operations everywhere): the
//! "before" of `scripts/bench-vs-pytorch.sh`, and a way to rule them out.

mod attention;
mod conv3d;
mod norm;
pub mod simd;

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::nn::conv::Conv3d;
use burn::nn::{GroupNorm, PaddingConfig3d};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

pub use conv3d::Conv3dShape;

/// Whether this module's kernels run for backend `B`: Flex, and not turned off.
pub fn enabled<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>() && switch()
}

/// On unless `DISPR_CPU_KERNELS=burn`, read once.
fn switch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| !std::env::var("DISPR_CPU_KERNELS").is_ok_and(|v| v.eq_ignore_ascii_case("burn")))
}

fn active<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    enabled::<B>() && x.dtype() == DType::F32
}

/// Makes glibc serve the forward pass's large buffers from its heap instead of a fresh mapping
/// each: call once at the start of a process that runs the network on the CPU.
///
/// glibc maps every allocation above its mmap threshold (at most 32 MiB) and unmaps it when it
/// is freed, so each one pays its page faults and the kernel's zeroing again. At batch 4 most
/// activations are 64-128 MiB: two `dispr-64` forward passes took 3.4 million page faults
/// against 0.5 million at batch 1, and batch 4 cost more than 4x batch 1. Measured on the
/// 2-core EPYC machine on 6 December 2026 (release, 2 threads, one pass after a warm-up):
///
/// | network, batch | glibc's default | heap only |
/// |---|---|---|
/// | dispr-64, 1 | 5.26 s, 375 MiB | 4.84 s, 422 MiB |
/// | dispr-64, 4 | 21.24 s (4.04x), 1165 MiB | 18.97 s (3.92x), 1422 MiB |
/// | dispr-64-ref, 1 | 10.29 s, 448 MiB | 10.58 s, 477 MiB |
/// | dispr-64-ref, 4 | 44.68 s (4.34x), 1380 MiB | 38.99 s (3.69x), 1493 MiB |
///
/// The price is a higher peak: freed memory stays with the process for the next pass. Not
/// called by the coordinator, whose report frees its parsing memory back to the system. A no-op
/// off glibc.
pub fn keep_large_buffers_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at any time, and
    // is called before the threads that allocate start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// `conv.forward(x)`.
pub fn conv3d<B: Backend>(conv: &Conv3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let padding = match conv.padding {
        PaddingConfig3d::Valid => [0, 0, 0],
        PaddingConfig3d::Explicit(d, h, w) => [d, h, w],
        PaddingConfig3d::Same => return conv.forward(x),
    };
    if !active(&x) || conv.groups != 1 || conv.dilation != [1, 1, 1] {
        return conv.forward(x);
    }
    let [batch, cin, d, h, w] = x.dims();
    let weight = conv.weight.val();
    let [cout, wcin, kd, kh, kw] = weight.dims();
    let shape = Conv3dShape {
        batch,
        cin,
        cout,
        input: [d, h, w],
        kernel: [kd, kh, kw],
        stride: conv.stride,
        padding,
    };
    if wcin != cin || !shape.is_valid() {
        // Let Burn report the mismatch in its words.
        return conv.forward(x);
    }
    let (x, weight) = (flex(x), flex(weight));
    let bias = conv.bias.as_ref().map(|b| flex(b.val()));
    let out = conv3d::conv3d(&shape, values(&x), values(&weight), bias.as_ref().map(values));
    let [od, oh, ow] = shape.output();
    tensor(out, [batch, cout, od, oh, ow])
}

/// The time embedding's part in a residual block's second normalisation.
pub enum Embedding<B: Backend> {
    /// None: the first normalisation, the attention's and the output's.
    None,
    /// `norm(h + e)`, `e`: [batch, channels].
    Add(Tensor<B, 2>),
    /// `norm(h) * (1 + scale) + shift`, each [batch, channels].
    ScaleShift(Tensor<B, 2>, Tensor<B, 2>),
}

/// `norm` applied with the embedding, then a SiLU when `then_silu`.
pub fn group_norm<B: Backend>(
    norm: &GroupNorm<B>,
    x: Tensor<B, 5>,
    embedding: Embedding<B>,
    then_silu: bool,
) -> Tensor<B, 5> {
    let dims = x.dims();
    let [b, c] = [dims[0], dims[1]];
    if !active(&x) || c != norm.num_channels || norm.num_groups == 0 || !c.is_multiple_of(norm.num_groups) {
        let col = |t: Tensor<B, 2>| t.reshape([b, c, 1, 1, 1]);
        let h = match embedding {
            Embedding::None => norm.forward(x),
            Embedding::Add(e) => norm.forward(x + col(e)),
            Embedding::ScaleShift(scale, shift) => norm.forward(x) * (col(scale) + 1.0) + col(shift),
        };
        return if then_silu { silu(h) } else { h };
    }
    let x = flex(x);
    let affine = match (&norm.gamma, &norm.beta) {
        (Some(g), Some(b)) => Some((flex(g.val()), flex(b.val()))),
        _ => None,
    };
    let (add, scale_shift) = match embedding {
        Embedding::None => (None, None),
        Embedding::Add(e) => (Some(flex(e)), None),
        Embedding::ScaleShift(s, t) => (None, Some((flex(s), flex(t)))),
    };
    let ops = norm::NormOps {
        groups: norm.num_groups,
        epsilon: norm.epsilon,
        affine: affine.as_ref().map(|(g, b)| (values(g), values(b))),
        add_before: add.as_ref().map(values),
        scale_shift: scale_shift.as_ref().map(|(s, t)| (values(s), values(t))),
        silu: then_silu,
    };
    tensor(norm::group_norm(values(&x), b, c, &ops), dims)
}

/// `softmax(q k^T / sqrt(C)) v` over [batch * heads, tokens, C]; `chunk` query rows at a time
/// on Burn's path.
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    chunk: usize,
) -> Tensor<B, 3> {
    if !active(&q) {
        return crate::attention::chunked_attention(q, k, v, chunk);
    }
    let dims @ [heads, n, c] = q.dims();
    let (q, k, v) = (flex(q), flex(k), flex(v));
    tensor(attention::attention(values(&q), values(&k), values(&v), heads, n, c), dims)
}

/// The Flex tensor inside `t`, contiguous from offset 0. Only called when [`enabled`] said `B`
/// is Flex.
fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let flex = match primitive.downcast::<FlexTensor>() {
        Ok(flex) => *flex,
        Err(_) => unreachable!("cpu_kernels: called for a backend other than Flex"),
    };
    let plain = flex.layout().is_contiguous() && flex.layout().start_offset() == 0;
    if plain { flex } else { flex.to_contiguous() }
}

/// The tensor's values (it is contiguous from offset 0: [`flex`]).
fn values(t: &FlexTensor) -> &[f32] {
    &t.storage::<f32>()[..t.layout().num_elements()]
}

/// A tensor of backend `B` (Flex) holding `data`.
fn tensor<B: Backend, const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    let flex: Box<dyn Any> = Box::new(FlexTensor::from_data(TensorData::new(data, shape)));
    match flex.downcast::<B::FloatTensorPrimitive>() {
        Ok(primitive) => Tensor::from_primitive(TensorPrimitive::Float(*primitive)),
        Err(_) => unreachable!("cpu_kernels: called for a backend other than Flex"),
    }
}

/// Runs `f` with this thread's scratch buffer (an im2col tile, a block of attention scores). One
/// per thread for the life of the process, reused by every task of every call: a buffer per
/// task (rayon's `for_each_init` makes one per split) cost a fresh allocation, its zeroing and
/// its page faults each time, which grew with the batch. Kernels never nest, so one suffices.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(f)
}

/// A raw pointer that may cross into rayon's tasks, each of which writes a disjoint part.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: every user writes only its own, disjoint range of the buffer, which outlives the tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `SendPtr`, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}
