//! CUDA C for gradtape's GPU kernels, generated from the ops' own expressions, and its
//! compilation by NVRTC with a cache on disk.
//!
//! There are few kernel shapes (tinygrad's lesson, as on the CPU): copy a strided view, map one
//! operand, zip two (broadcast by strides, or with a host scalar), cast, fill, and reduce rows.
//! An op contributes only its expression: `exp(v)` for `exp`, `p + q` for `add`, written beside
//! its Rust element function in `crate::ops`. Strided and broadcast operands are read through a
//! [`KLayout`] (shape, strides, offset), so views never need a copy first.
//!
//! NVRTC takes about a quarter of a second per program, so each source is compiled once per
//! process and GPU architecture and its PTX kept on disk (`$GRADTAPE_KERNEL_CACHE`, or
//! `~/.cache/gradtape/kernels`), keyed by a hash of the source and the architecture: a second
//! run loads it in microseconds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use cudarc::driver::DeviceRepr;
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};
use crate::shape::Layout;

/// The most dimensions a kernel reads through a [`KLayout`].
pub(crate) const MAX_RANK: usize = 8;

/// A view as the kernels see it: `rank == 0` means contiguous from `offset` (the fast path),
/// otherwise element `i` (row-major over `shape`) is at `offset + Σ index_d · strides_d`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct KLayout {
    shape: [u64; MAX_RANK],
    strides: [i64; MAX_RANK],
    offset: i64,
    rank: i32,
}

// SAFETY: plain old data with the same `repr(C)` layout as the `Layout` struct in PRELUDE.
unsafe impl DeviceRepr for KLayout {}

impl KLayout {
    /// `l` read as `shape` (a broadcast view when `l`'s shape differs), or the error for more
    /// than [`MAX_RANK`] dimensions.
    pub(crate) fn of(op: &'static str, l: &Layout) -> Result<KLayout> {
        let mut k = KLayout {
            shape: [1; MAX_RANK],
            strides: [0; MAX_RANK],
            offset: l.offset as i64,
            rank: 0,
        };
        if l.is_contiguous() {
            return Ok(k);
        }
        // Dimensions of size 1 never move the index: leave them out, which also lets views
        // of higher rank with broadcast axes fit.
        let dims: Vec<(usize, isize)> = l
            .shape
            .iter()
            .zip(&l.strides)
            .filter(|(&n, _)| n != 1)
            .map(|(&n, &s)| (n, s))
            .collect();
        if dims.len() > MAX_RANK {
            return Err(Error::shape(
                op,
                format!(
                    "the GPU kernels read views of at most {MAX_RANK} dimensions (of size > 1); \
                     this one has shape {:?} and strides {:?}",
                    l.shape, l.strides
                ),
            ));
        }
        for (d, (n, s)) in dims.iter().enumerate() {
            k.shape[d] = *n as u64;
            k.strides[d] = *s as i64;
        }
        // A view whose only dimension is contiguous is contiguous (rank 1, stride 1).
        k.rank = if dims.len() == 1 && dims[0].1 == 1 {
            0
        } else {
            dims.len().max(1) as i32
        };
        Ok(k)
    }
}

/// Shared by every program: the view reader and the grid-stride loop.
const PRELUDE: &str = r#"
typedef unsigned long long u64;
typedef long long i64;
#define MAX_RANK 8
struct Layout { u64 shape[MAX_RANK]; i64 strides[MAX_RANK]; i64 offset; int rank; };
__device__ __forceinline__ i64 at(const Layout& l, u64 i) {
    if (l.rank == 0) return l.offset + (i64)i;
    i64 off = l.offset;
    for (int d = l.rank - 1; d >= 0; --d) {
        u64 n = l.shape[d];
        off += (i64)(i % n) * l.strides[d];
        i /= n;
    }
    return off;
}
#define FOR_EACH(i, n) for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (n); \
                            i += (u64)gridDim.x * blockDim.x)
template <typename T> __device__ __forceinline__ T sign_(T v) { return v != v ? v : (T)((v > (T)0) - (v < (T)0)); }
"#;

/// `y[i] = x[view i]`: a strided view made contiguous.
pub(crate) fn copy(t: &str) -> (String, String) {
    let name = format!("copy_{}", suffix(t));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const {t}* x, Layout lx, {t}* y, u64 n) {{\n\
         FOR_EACH(i, n) {{ y[i] = x[at(lx, i)]; }}\n}}\n"
    );
    (name, src)
}

/// `y[i] = expr(v)` with `v = x[view i]` of type `t`, stored as `u` (C's conversion: a
/// float becomes a bool as `!= 0`).
pub(crate) fn unary(op: &str, expr: &str, t: &str, u: &str) -> (String, String) {
    let name = format!("{op}_{}_{}", suffix(t), suffix(u));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const {t}* x, Layout lx, {u}* y, u64 n) {{\n\
         FOR_EACH(i, n) {{ {t} v = x[at(lx, i)]; y[i] = ({u})({expr}); }}\n}}\n"
    );
    (name, src)
}

/// `y[i] = expr(p, q)` over two views (broadcast by zero strides) of `t`, giving `u`; and the
/// same with one side a scalar passed by value (`side` 0: the scalar is `q`, 1: it is `p`).
pub(crate) fn binary(op: &str, expr: &str, t: &str, u: &str) -> (String, String) {
    let name = format!("{op}_{}_{}", suffix(t), suffix(u));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const {t}* a, Layout la, const {t}* b, \
         Layout lb, {u}* y, u64 n) {{\n\
         FOR_EACH(i, n) {{ {t} p = a[at(la, i)]; {t} q = b[at(lb, i)]; y[i] = ({u})({expr}); }}\n}}\n\
         extern \"C\" __global__ void {name}_scalar(const {t}* a, Layout la, {t} s, int side, \
         {u}* y, u64 n) {{\n\
         FOR_EACH(i, n) {{ {t} x = a[at(la, i)]; {t} p = side ? s : x; {t} q = side ? x : s; \
         y[i] = ({u})({expr}); }}\n}}\n"
    );
    (name, src)
}

/// Where a fused kernel's statement reads an operand: a leaf, or an earlier statement's
/// register (the boundary maps the fusion program's operands to these).
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Leaf(usize),
    Reg(usize),
}

/// How a fused kernel takes a leaf: an array read at `i`, one element of a device array, or a
/// value passed by value (a Rust number beside device tensors).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum LeafKind {
    Array,
    Element,
    Value,
}

/// One fusion group of a compiled graph (`gradtape::function`) as one kernel of type `t`:
/// instruction `k` is the statement `r{k} = expr` of its primitive's CUDA expression, in a
/// scope of its own where `v` (or `p` and `q`) are its operands: a leaf as `leaves` says, or
/// an earlier register. Each register in `outputs` is written to its array. The kernel is
/// compiled without contracting multiplies and adds (see [`compile_uncached`]), so each
/// statement rounds as the op's own kernel does.
pub(crate) fn fused(
    insts: &[(&str, usize, [Slot; 2])],
    leaves: &[LeafKind],
    outputs: &[usize],
    t: &str,
) -> (String, String) {
    let operand = |o: Slot| match o {
        Slot::Leaf(j) => match leaves[j] {
            LeafKind::Array => format!("l{j}[i]"),
            LeafKind::Element => format!("l{j}[0]"),
            LeafKind::Value => format!("l{j}"),
        },
        Slot::Reg(r) => format!("r{r}"),
    };
    let mut body = String::new();
    for (k, &(expr, arity, args)) in insts.iter().enumerate() {
        let bind = match arity {
            1 => format!("{t} v = {};", operand(args[0])),
            _ => format!(
                "{t} p = {}; {t} q = {};",
                operand(args[0]),
                operand(args[1])
            ),
        };
        body += &format!("    {t} r{k}; {{ {bind} r{k} = ({t})({expr}); }}\n");
    }
    for (o, r) in outputs.iter().enumerate() {
        body += &format!("    o{o}[i] = r{r};\n");
    }
    let params: Vec<String> = leaves
        .iter()
        .enumerate()
        .map(|(j, kind)| match kind {
            LeafKind::Value => format!("{t} l{j}"),
            _ => format!("const {t}* l{j}"),
        })
        .chain((0..outputs.len()).map(|o| format!("{t}* o{o}")))
        .chain(["u64 n".to_string()])
        .collect();
    let name = format!(
        "fused_{}_{:016x}",
        suffix(t),
        fnv1a(&[&body, &params.join(",")])
    );
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}({}) {{\n  FOR_EACH(i, n) {{\n{body}  }}\n}}\n",
        params.join(", ")
    );
    (name, src)
}

/// `y[i] = c[view i] ? a : b`, where `a` and `b` are views of `t` or (`a_scalar`, `b_scalar`)
/// values passed by value (the `0.0` of a gradient rule).
pub(crate) fn select(t: &str, a_scalar: bool, b_scalar: bool) -> (String, String) {
    let name = format!("select_{}_{}{}", suffix(t), a_scalar as u8, b_scalar as u8);
    let param = |v: &str, scalar: bool| {
        if scalar {
            format!("{t} {v}s")
        } else {
            format!("const {t}* {v}, Layout l{v}")
        }
    };
    let read = |v: &str, scalar: bool| {
        if scalar {
            format!("{v}s")
        } else {
            format!("{v}[at(l{v}, i)]")
        }
    };
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const bool* c, Layout lc, {}, {}, {t}* y, \
         u64 n) {{\n\
         FOR_EACH(i, n) {{ y[i] = c[at(lc, i)] ? {} : {}; }}\n}}\n",
        param("a", a_scalar),
        param("b", b_scalar),
        read("a", a_scalar),
        read("b", b_scalar),
    );
    (name, src)
}

/// `y[i] = i` (arange on the device, for one_hot).
pub(crate) fn iota(t: &str) -> (String, String) {
    let name = format!("iota_{}", suffix(t));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}({t}* y, u64 n) {{\n\
         FOR_EACH(i, n) {{ y[i] = ({t})i; }}\n}}\n"
    );
    (name, src)
}

/// `y[view_y i] = x[view_x i]`: writes a tensor into a view of a larger one (concat's parts,
/// the zero-padded adjoint of a slice).
pub(crate) fn copy_into(t: &str) -> (String, String) {
    let name = format!("copy_into_{}", suffix(t));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const {t}* x, Layout lx, {t}* y, Layout ly, \
         u64 n) {{\n\
         FOR_EACH(i, n) {{ y[at(ly, i)] = x[at(lx, i)]; }}\n}}\n"
    );
    (name, src)
}

/// Gather along an axis of a contiguous `[outer, dim, inner]` tensor by int64 indices (checked
/// on the host before): `y[o, j, k] = p[o, idx[j], k]`; and its adjoint, scatter-add, whose
/// repeated indices add up with atomics (so the order of the float additions varies).
pub(crate) fn gather(t: &str) -> (String, String) {
    let name = format!("gather_{}", suffix(t));
    let mut src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}(const {t}* p, const long long* idx, {t}* y, \
         u64 nidx, u64 inner, u64 dim, u64 n) {{\n\
         FOR_EACH(i, n) {{ u64 k = i % inner; u64 j = (i / inner) % nidx; u64 o = i / (inner * nidx);\n\
         y[i] = p[(o * dim + (u64)idx[j]) * inner + k]; }}\n}}\n"
    );
    // CUDA's atomicAdd takes float and double (not signed 64-bit integers).
    if t == "float" || t == "double" {
        src.push_str(&format!(
            "extern \"C\" __global__ void {name}_add(const {t}* u, const long long* idx, {t}* y, \
             u64 nidx, u64 inner, u64 dim, u64 n) {{\n\
             FOR_EACH(i, n) {{ u64 k = i % inner; u64 j = (i / inner) % nidx; \
             u64 o = i / (inner * nidx);\n\
             atomicAdd(&y[(o * dim + (u64)idx[j]) * inner + k], u[i]); }}\n}}\n"
        ));
    }
    (name, src)
}

/// `y[i] = v` for every element.
pub(crate) fn fill(t: &str) -> (String, String) {
    let name = format!("fill_{}", suffix(t));
    let src = format!(
        "{PRELUDE}extern \"C\" __global__ void {name}({t}* y, u64 n, {t} v) {{\n\
         FOR_EACH(i, n) {{ y[i] = v; }}\n}}\n"
    );
    (name, src)
}

/// Threads per block of the row reductions.
pub(crate) const REDUCE_THREADS: u32 = 256;

/// `y[r] = x[r*m] ⊕ ... ⊕ x[r*m + m-1]`, one block per row, combining with `combine(a, b)`
/// from `init`; accumulates in `t` (float32 in float32, as TensorFlow does).
pub(crate) fn reduce_rows(op: &str, init: &str, combine: &str, t: &str) -> (String, String) {
    let name = format!("{op}_{}", suffix(t));
    let threads = REDUCE_THREADS;
    let src = format!(
        "{PRELUDE}__device__ __forceinline__ {t} combine_({t} a, {t} b) {{ return {combine}; }}\n\
         extern \"C\" __global__ void {name}(const {t}* x, {t}* y, u64 m) {{\n\
         __shared__ {t} part[{threads}];\n\
         const {t}* row = x + (u64)blockIdx.x * m;\n\
         {t} acc = {init};\n\
         for (u64 j = threadIdx.x; j < m; j += {threads}) acc = combine_(acc, row[j]);\n\
         part[threadIdx.x] = acc;\n\
         __syncthreads();\n\
         for (unsigned s = {threads} / 2; s > 0; s >>= 1) {{\n\
           if (threadIdx.x < s) part[threadIdx.x] = combine_(part[threadIdx.x], part[threadIdx.x + s]);\n\
           __syncthreads();\n\
         }}\n\
         if (threadIdx.x == 0) y[blockIdx.x] = part[0];\n}}\n"
    );
    (name, src)
}

/// The CUDA C type of a dtype's elements.
pub(crate) fn c_type(dtype: crate::dtype::DType) -> &'static str {
    use crate::dtype::DType;
    match dtype {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I64 => "long long",
        DType::Bool => "bool",
    }
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Keeps the kernel `make()` generates while recording is on (see
/// [`super::record_kernel_sources`]); one relaxed load otherwise.
#[inline]
pub(crate) fn note(make: impl FnOnce() -> (String, String)) {
    if RECORDING.load(Ordering::Relaxed) {
        let (name, src) = make();
        RECORDED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, src);
    }
}

pub(crate) fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

pub(crate) fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

pub(crate) fn recorded() -> Vec<(String, String)> {
    let r = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    r.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
}

/// `v` of `dtype` as a CUDA C constant (infinities and the int64 minimum have no literal).
pub(crate) fn c_literal(v: f64, dtype: crate::dtype::DType) -> String {
    use crate::dtype::DType;
    match dtype {
        DType::F32 if v.is_infinite() => {
            format!(
                "__int_as_float({:#x})",
                if v > 0.0 { 0x7f80_0000u32 } else { 0xff80_0000 }
            )
        }
        DType::F64 if v.is_infinite() => format!(
            "__longlong_as_double({:#x}LL)",
            if v > 0.0 {
                0x7ff0_0000_0000_0000u64
            } else {
                0xfff0_0000_0000_0000
            }
        ),
        DType::F32 => format!("{:e}f", v as f32),
        DType::F64 => format!("{v:e}"),
        DType::I64 if v <= i64::MIN as f64 => "(-9223372036854775807LL - 1)".into(),
        DType::I64 => format!("{}LL", v as i64),
        DType::Bool => (if v != 0.0 { "true" } else { "false" }).into(),
    }
}

fn suffix(t: &str) -> &'static str {
    match t {
        "float" => "f32",
        "double" => "f64",
        "long long" => "i64",
        "bool" => "bool",
        _ => "t",
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions, for the disk cache's names.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The folder of compiled kernels, or `None` when there is no place for one.
fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GRADTAPE_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gradtape").join("kernels"))
}

/// `source` compiled to PTX for `arch` (`compute_90`), from the disk cache when it was
/// compiled before. The cache is best effort: a folder that cannot be written only costs the
/// compilation next time.
///
/// # Errors
/// When NVRTC rejects the source (a bug in a generated kernel: the message has NVRTC's log).
pub(crate) fn compile(op: &'static str, source: &str, arch: &str) -> Result<Ptx> {
    // the options are part of the key: PTX compiled with other options is not reused
    let key = format!("{:016x}", fnv1a(&[source, arch, "--fmad=false"]));
    let dir = cache_dir();
    if let Some(d) = &dir {
        // The source is kept beside its PTX and compared, so a hash collision recompiles.
        let (cu, ptx) = (d.join(format!("{key}.cu")), d.join(format!("{key}.ptx")));
        if let (Ok(s), Ok(p)) = (std::fs::read_to_string(&cu), std::fs::read_to_string(&ptx)) {
            if s == source {
                return Ok(Ptx::from_src(p));
            }
        }
    }
    let ptx = compile_uncached(op, source, arch)?;
    if let Some(d) = dir {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&d)?;
            // Written under temporary names and renamed, so a reader never sees half a file.
            let tmp = d.join(format!("{key}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, ptx.to_src())?;
            std::fs::rename(&tmp, d.join(format!("{key}.ptx")))?;
            std::fs::write(&tmp, source)?;
            std::fs::rename(&tmp, d.join(format!("{key}.cu")))
        };
        let _ = write();
    }
    Ok(ptx)
}

/// NVRTC on `source`, with no cache. Needs only `libnvrtc` (no driver, no GPU), so the tests
/// compile every generated kernel on machines without a GPU too.
pub(crate) fn compile_uncached(op: &'static str, source: &str, arch: &str) -> Result<Ptx> {
    // SAFETY: only opens the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::device(
            op,
            "no NVRTC could be loaded (libnvrtc.so, from the CUDA toolkit's lib64 folder); \
             gradtape compiles its GPU kernels with it",
        ));
    }
    let arch = intern(arch);
    cudarc::nvrtc::compile_ptx_with_opts(
        source,
        CompileOptions {
            arch: Some(arch),
            // No contraction of a multiply and an add into one rounding: the host kernels do
            // not contract either (no FMA is enabled), and a fused group's statements must
            // round as the ops' own kernels do.
            fmad: Some(false),
            ..Default::default()
        },
    )
    .map_err(|e| Error::device(op, format!("NVRTC could not compile a kernel: {e:?}")))
}

/// NVRTC's options want `&'static str`: each architecture name is leaked once.
fn intern(arch: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.iter().find(|n| **n == arch) {
        return n;
    }
    let n: &'static str = Box::leak(arch.to_string().into_boxed_str());
    names.push(n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PRELUDE's `at()`, line for line in Rust.
    fn at(l: &KLayout, mut i: u64) -> i64 {
        if l.rank == 0 {
            return l.offset + i as i64;
        }
        let mut off = l.offset;
        for d in (0..l.rank as usize).rev() {
            let n = l.shape[d];
            off += (i % n) as i64 * l.strides[d];
            i /= n;
        }
        off
    }

    /// Where row-major element `i` of a view is, from the layout itself.
    fn reference(l: &Layout, mut i: usize) -> isize {
        let mut off = l.offset as isize;
        for d in (0..l.shape.len()).rev() {
            off += (i % l.shape[d]) as isize * l.strides[d];
            i /= l.shape[d];
        }
        off
    }

    #[test]
    fn the_kernels_read_every_kind_of_view_where_the_cpu_does() {
        let base = Layout::contiguous(&[2, 3, 4]);
        let mut sliced = base.clone();
        sliced.offset = 5;
        sliced.shape[2] = 2;
        let mut reversed = Layout::contiguous(&[6]);
        reversed.offset = 5;
        reversed.strides[0] = -1;
        let views = [
            base.clone(),
            base.permute(&[2, 0, 1]),
            base.permute(&[1, 0, 2]),
            Layout::contiguous(&[3, 1, 4]).broadcast_to(&[2, 3, 5, 4]),
            Layout::contiguous(&[]).broadcast_to(&[3, 2]),
            Layout::contiguous(&[1, 1]).broadcast_to(&[1, 1]),
            sliced,
            reversed,
        ];
        for l in &views {
            let k = KLayout::of("test", l).unwrap();
            for i in 0..l.numel() {
                assert_eq!(
                    at(&k, i as u64),
                    reference(l, i) as i64,
                    "{l:?} element {i}"
                );
            }
        }
        // Nine dimensions of size > 1 are refused with the shape in the message.
        let big = Layout::contiguous(&[2; 9]).permute(&[8, 7, 6, 5, 4, 3, 2, 1, 0]);
        let e = KLayout::of("test", &big).unwrap_err().to_string();
        assert!(e.contains("at most 8"), "{e}");
    }

    #[test]
    fn literals_are_exact_and_infinities_are_bit_patterns() {
        use crate::dtype::DType;
        assert_eq!(
            c_literal(f64::NEG_INFINITY, DType::F32),
            "__int_as_float(0xff800000)"
        );
        assert_eq!(
            c_literal(f64::INFINITY, DType::F64),
            "__longlong_as_double(0x7ff0000000000000LL)"
        );
        assert_eq!(
            c_literal(i64::MIN as f64, DType::I64),
            "(-9223372036854775807LL - 1)"
        );
        assert_eq!(c_literal(0.1, DType::F64).parse::<f64>().unwrap(), 0.1);
        let f = c_literal(0.1, DType::F32);
        assert_eq!(f.trim_end_matches('f').parse::<f32>().unwrap(), 0.1f32);
    }
}
