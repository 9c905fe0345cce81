//! Convolution and pooling over NHWC images, as TensorFlow lays them out.
//!
//! One primitive pair does the sliding: [`patches`] copies every window of an image into a row
//! of its own (im2col), and `unpatches`, its adjoint, adds each row back where it came from
//! (col2im). Each is the other's gradient and each is linear, so each is its own JVP rule: the
//! pair differentiates to any order, like `slice`/`unslice`. Everything else is a composition:
//! a convolution is patches times the reshaped filters (one GEMM through the matrix-product
//! kernel), a transposed convolution is that product's adjoint, pooling is a reduction over each
//! window.

use super::apply;
use crate::backend::cpu::PAR_MIN;
use crate::dtype::dispatch;
use crate::dtype::{Element, Num};
use crate::error::{Error, Result};
use crate::primitive::{Batching, Derivative, Params, ParamsKind, Primitive};
pub use crate::shape::Padding;
use crate::shape::{Span, Window};
use crate::tensor::{AsTensor, Tensor};

use super::{
    greater, matmul, reduce_max_first, reduce_mean, reduce_sum, reshape_to, select, transpose,
};

/// Runs `f(image, out_chunk)` for each of the `n` chunks of `out`, in parallel when large.
fn per_image<T: Send>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if n == 0 || out.is_empty() {
        return;
    }
    let per = out.len() / n;
    if out.len() >= PAR_MIN {
        crate::backend::cpu::par_chunks_mut(out, per, &f);
    } else {
        out.chunks_mut(per).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `len` zeros in a buffer from the storage pool (large buffers are reused, not fresh pages
/// that fault on first write every step).
fn zeros<T: Element>(op: &'static str, len: usize) -> Result<Vec<T>> {
    crate::backend::pool::filled::<T>(op, len, T::default())
}

fn patches_kernel<T: Element>(src: &[T], n: usize, c: usize, win: &Window) -> Result<Vec<T>> {
    let len = crate::shape::checked_numel(&[n, win.oh, win.ow, win.kh, win.kw, c]).ok_or_else(|| {
            Error::resource(
                "patches",
                format!(
                    "{n} images of {c} channels in {}x{} windows of {}x{} have more elements than memory can hold",
                    win.oh, win.ow, win.kh, win.kw
                ),
            )
        })?;
    let mut out = crate::backend::pool::take::<T>("patches", len)?;
    let image = win.h * win.w * c;
    // Every element is written once, copied or (in the padding) zero, so the buffer is not
    // cleared first: that pass cost as much as the copy.
    per_image(&mut out.spare_capacity_mut()[..len], n, |i, dst| {
        let s = &src[i * image..(i + 1) * image];
        let (mut o, run) = (0, win.kw * c);
        win.for_each(|span| {
            let (from, len) = match span {
                Span::Run(p) => (Some(p * c), run),
                Span::Pixel(p) => (p.map(|p| p * c), c),
            };
            let row = &mut dst[o..o + len];
            match from {
                Some(from) => {
                    for (d, &v) in row.iter_mut().zip(&s[from..from + len]) {
                        d.write(v);
                    }
                }
                None => {
                    for d in row {
                        d.write(T::default());
                    }
                }
            }
            o += len;
        });
    });
    // SAFETY: `per_image` hands each of the `n` equal chunks of `spare[..len]` to one call, and
    // each call writes all `oh·ow·kh·kw·c = len / n` elements of its chunk (one row of `c` per
    // window element, copied or zero).
    unsafe { out.set_len(len) };
    Ok(out)
}

fn unpatches_kernel<T: Num>(src: &[T], n: usize, c: usize, win: &Window) -> Result<Vec<T>> {
    let mut out: Vec<T> = zeros("unpatches", n * win.h * win.w * c)?;
    let rows = win.oh * win.ow * win.kh * win.kw * c;
    per_image(&mut out, n, |i, dst| {
        let s = &src[i * rows..(i + 1) * rows];
        let (mut o, run) = (0, win.kw * c);
        win.for_each(|span| {
            let (to, len) = match span {
                Span::Run(p) => (Some(p * c), run),
                Span::Pixel(p) => (p.map(|p| p * c), c),
            };
            if let Some(to) = to {
                // the same additions in the same order as element by element
                for (d, &v) in dst[to..to + len].iter_mut().zip(&s[o..o + len]) {
                    *d = d.wadd(v);
                }
            }
            o += len;
        });
    });
    Ok(out)
}

/// Every window of `x` (`[n, h, w, c]`) as `[n, oh, ow, kh, kw, c]`, zeros in the padding.
pub(crate) fn patches(x: &Tensor, win: &Window) -> Result<Tensor> {
    apply(&PATCHES, &[x], &Params::window(win))
}

/// The adjoint of [`patches`]: each window row of `g` (`[n, oh, ow, kh, kw, c]`) added back at
/// the pixels it came from, giving `[n, h, w, c]`.
pub(crate) fn unpatches(g: &Tensor, win: &Window) -> Result<Tensor> {
    apply(&UNPATCHES, &[g], &Params::window(win))
}

/// The batching rule of `patches` and `unpatches`, which take a batch of images or windows
/// already: `f` on the examples of `p` (a batch of rank-`rank` tensors) merged into the first
/// axis, its result split back into batch and examples.
fn on_merged_batch(
    op: &'static str,
    p: &Tensor,
    rank: usize,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let s = p.shape();
    if s.len() != rank + 1 {
        return Err(Error::shape(
            op,
            format!("expected a batch of rank-{rank} tensors, got shape {s:?}"),
        ));
    }
    let mut merged = vec![s[0] * s[1]];
    merged.extend_from_slice(&s[2..]);
    let out = f(&reshape_to(p, &merged)?)?;
    let mut split = vec![s[0], s[1]];
    split.extend_from_slice(&out.shape()[1..]);
    reshape_to(&out, &split)
}

/// Linear; its transpose is `unpatches`.
pub(crate) static PATCHES: Primitive = Primitive {
    name: "patches",
    forward: |xs, params| {
        let (op, x, win) = ("patches", xs[0], params.as_window("patches")?);
        let s = x.shape();
        if s.len() != 4 || s[1] != win.h || s[2] != win.w {
            return Err(Error::shape(
                op,
                format!(
                    "expected images of shape [batch, {}, {}, channels], got {s:?}",
                    win.h, win.w
                ),
            ));
        }
        let (n, c) = (s[0], s[3]);
        let shape = [n, win.oh, win.ow, win.kh, win.kw, c];
        Ok(dispatch!(x.dtype(), T => Tensor::from_elems(
            patches_kernel(&x.contiguous_data::<T>()?, n, c, win)?,
            &shape,
        )))
    },
    arity: 1,
    params: ParamsKind::Window,
    derivative: Derivative::Linear {
        transpose: |params, _, g| unpatches(g, params.as_window("patches")?),
    },
    batching: Batching::OneInput(|p, params| {
        let win = params.as_window("patches")?;
        on_merged_batch("patches", p, 4, |x| patches(x, win))
    }),
    cuda: None,
    fused: None,
};

/// Linear; its transpose is `patches`.
pub(crate) static UNPATCHES: Primitive = Primitive {
    name: "unpatches",
    forward: |xs, params| {
        let (op, g, win) = ("unpatches", xs[0], params.as_window("unpatches")?);
        let s = g.shape();
        if s.len() != 6 || s[1..5] != [win.oh, win.ow, win.kh, win.kw] {
            return Err(Error::shape(
                op,
                format!(
                    "expected windows of shape [batch, {}, {}, {}, {}, channels], got {s:?}",
                    win.oh, win.ow, win.kh, win.kw
                ),
            ));
        }
        let (n, c) = (s[0], s[5]);
        let shape = [n, win.h, win.w, c];
        Ok(dispatch!(numeric op, g.dtype(), T => Tensor::from_elems(
            unpatches_kernel(&g.contiguous_data::<T>()?, n, c, win)?,
            &shape,
        )))
    },
    arity: 1,
    params: ParamsKind::Window,
    derivative: Derivative::Linear {
        transpose: |params, _, g| patches(g, params.as_window("unpatches")?),
    },
    batching: Batching::OneInput(|p, params| {
        let win = params.as_window("unpatches")?;
        on_merged_batch("unpatches", p, 6, |g| unpatches(g, win))
    }),
    cuda: None,
    fused: None,
};

/// The primitives of this file.
pub(crate) static PRIMITIVES: &[&Primitive] = &[&PATCHES, &UNPATCHES];

// ---------------------------------------------------------------------------------------------
// Public ops

fn images(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.shape() {
        [n, h, w, c] if x.dtype().is_float() => Ok((n, h, w, c)),
        _ => Err(Error::shape(
            op,
            format!(
                "expected float images of shape [batch, height, width, channels], got {} {:?}",
                x.dtype(),
                x.shape()
            ),
        )),
    }
}

/// TensorFlow's `tf.image.extract_patches`: every `sizes` window of the NHWC `images`, moved by
/// `strides` with `rates` (dilation), flattened into the last axis
/// (`[batch, out_h, out_w, kh * kw * channels]`).
///
/// # Errors
/// When `images` is not a rank-4 float tensor or the window does not fit.
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec((0..9).map(|v| v as f32).collect(), &[1, 3, 3, 1])?;
/// let p = ops::extract_patches(&x, [2, 2], [1, 1], [1, 1], Padding::Valid)?;
/// assert_eq!(p.shape(), &[1, 2, 2, 4]);
/// assert_eq!(p.to_vec::<f32>()?[..4], [0.0, 1.0, 3.0, 4.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn extract_patches(
    images_: &impl AsTensor,
    sizes: impl Into<Size2>,
    strides: impl Into<Size2>,
    rates: impl Into<Size2>,
    padding: Padding,
) -> Result<Tensor> {
    let sizes: [usize; 2] = sizes.into().0;
    let strides: [usize; 2] = strides.into().0;
    let rates: [usize; 2] = rates.into().0;
    let op = "extract_patches";
    let x = images_.operand().into_tensor();
    let (n, h, w, c) = images(op, &x)?;
    let win = Window::new(op, (h, w), sizes, strides, rates, padding)?;
    let (oh, ow) = win.out();
    reshape_to(&patches(&x, &win)?, &[n, oh, ow, sizes[0] * sizes[1] * c])
}

/// A window's two sizes (height, width), or one for both: TensorFlow's "an int or a list of
/// 2 ints", so `max_pool2d(&x, 2, 2, Padding::Valid)` reads as `tf.nn.max_pool2d(x, 2, 2,
/// "VALID")` and `[2, 3]` still works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size2(pub [usize; 2]);

impl From<usize> for Size2 {
    fn from(n: usize) -> Self {
        Size2([n, n])
    }
}

impl From<[usize; 2]> for Size2 {
    fn from(hw: [usize; 2]) -> Self {
        Size2(hw)
    }
}

/// Options of a 2-D convolution beyond the stride and padding (TensorFlow's `dilations`, and
/// `groups` as `tf.nn.conv2d` infers it from the filters' input depth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    /// Spacing between the kernel's taps (1: contiguous).
    pub dilation: [usize; 2],
    /// Channels split into this many groups, each convolved with its own filters.
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// `tf.nn.conv2d`: NHWC `input` (`[batch, h, w, in]`) with `filters` (`[kh, kw, in / groups,
/// out]`), stride and padding; see [`conv2d_with`] for dilation and groups. One GEMM of the
/// image's windows by the filters.
///
/// # Errors
/// When the shapes or dtypes do not fit (the message names them).
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 3, 3, 1])?;
/// let k = gradtape::Tensor::ones(&[2, 2, 1, 1], gradtape::DType::F32)?;
/// let y = ops::conv2d(&x, &k, [1, 1], Padding::Valid)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![12.0, 16.0, 24.0, 28.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn conv2d(
    input: &impl AsTensor,
    filters: &impl AsTensor,
    strides: impl Into<Size2>,
    padding: Padding,
) -> Result<Tensor> {
    let strides: [usize; 2] = strides.into().0;
    conv2d_with(input, filters, strides, padding, ConvOptions::default())
}

/// [`conv2d`] with dilation and groups (a depthwise convolution is `groups = in`).
///
/// # Errors
/// As [`conv2d`], and when the channels do not divide into the groups.
///
/// ```
/// use gradtape::ops::{self, ConvOptions, Padding};
/// let x = gradtape::Tensor::ones(&[1, 5, 5, 4], gradtape::DType::F32)?;
/// let k = gradtape::Tensor::ones(&[3, 3, 2, 6], gradtape::DType::F32)?; // 2 groups of 2 -> 3
/// let o = ConvOptions { dilation: [2, 2], groups: 2 };
/// assert_eq!(ops::conv2d_with(&x, &k, [1, 1], Padding::Valid, o)?.shape(), &[1, 1, 1, 6]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn conv2d_with(
    input: &impl AsTensor,
    filters: &impl AsTensor,
    strides: impl Into<Size2>,
    padding: Padding,
    options: ConvOptions,
) -> Result<Tensor> {
    let strides: [usize; 2] = strides.into().0;
    let op = "conv2d";
    let (x, f) = (
        input.operand().into_tensor(),
        filters.operand().into_tensor(),
    );
    let (n, h, w, c) = images(op, &x)?;
    let g = options.groups;
    let fits = match *f.shape() {
        [_, _, fi, fo] => g > 0 && c % g == 0 && fi * g == c && fo % g == 0,
        _ => false,
    };
    if !fits || f.dtype() != x.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "filters {} {:?} do not fit input {} {:?} with {g} group(s): expected [kh, kw, {}, a multiple of {g}]",
                f.dtype(),
                f.shape(),
                x.dtype(),
                x.shape(),
                c.checked_div(g).unwrap_or(0)
            ),
        ));
    }
    let (kh, kw, fi, fo) = (f.shape()[0], f.shape()[1], f.shape()[2], f.shape()[3]);
    let win = Window::new(op, (h, w), [kh, kw], strides, options.dilation, padding)?;
    let (oh, ow) = win.out();
    let p = patches(&x, &win)?;
    let m = n * oh * ow;
    if g == 1 {
        let cols = reshape_to(&p, &[m, kh * kw * c])?;
        let y = matmul(&cols, &reshape_to(&f, &[kh * kw * c, fo])?)?;
        return reshape_to(&y, &[n, oh, ow, fo]);
    }
    // groups: [m, kh, kw, g, fi] -> [g, m, kh·kw·fi], filters -> [g, kh·kw·fi, fo / g]
    let cols = reshape_to(&p, &[m, kh * kw, g, fi])?;
    let cols = reshape_to(
        &transpose(&cols, Some(&[2, 0, 1, 3]))?,
        &[g, m, kh * kw * fi],
    )?;
    let k = reshape_to(&f, &[kh * kw * fi, g, fo / g])?;
    let k = transpose(&k, Some(&[1, 0, 2]))?;
    let y = matmul(&cols, &k)?; // [g, m, fo / g]
    reshape_to(&transpose(&y, Some(&[1, 0, 2]))?, &[n, oh, ow, fo])
}

/// `tf.nn.depthwise_conv2d`: each input channel convolved with its own `multiplier` filters
/// (`filter`: `[kh, kw, in, multiplier]`), giving `in · multiplier` channels, channel
/// `c · multiplier + m` from input channel `c`.
///
/// # Errors
/// As [`conv2d`].
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::ones(&[1, 4, 4, 3], gradtape::DType::F32)?;
/// let k = gradtape::Tensor::ones(&[3, 3, 3, 2], gradtape::DType::F32)?;
/// let y = ops::depthwise_conv2d(&x, &k, [1, 1], Padding::Same, [1, 1])?;
/// assert_eq!(y.shape(), &[1, 4, 4, 6]);
/// assert_eq!(y.to_vec::<f32>()?[0], 4.0); // a corner sees 2x2 pixels
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn depthwise_conv2d(
    input: &impl AsTensor,
    filter: &impl AsTensor,
    strides: impl Into<Size2>,
    padding: Padding,
    dilation: impl Into<Size2>,
) -> Result<Tensor> {
    let strides: [usize; 2] = strides.into().0;
    let dilation: [usize; 2] = dilation.into().0;
    let (x, f) = (
        input.operand().into_tensor(),
        filter.operand().into_tensor(),
    );
    let (_, _, _, c) = images("depthwise_conv2d", &x)?;
    let [kh, kw, fc, mult] = *f.shape() else {
        return Err(Error::shape(
            "depthwise_conv2d",
            format!(
                "filter of shape {:?} is not [kh, kw, in, multiplier]",
                f.shape()
            ),
        ));
    };
    if fc != c {
        return Err(Error::shape(
            "depthwise_conv2d",
            format!(
                "filter {:?} has {fc} input channels, input {:?} has {c}",
                f.shape(),
                x.shape()
            ),
        ));
    }
    let grouped = reshape_to(&f, &[kh, kw, 1, c * mult])?;
    conv2d_with(
        &x,
        &grouped,
        strides,
        padding,
        ConvOptions {
            dilation,
            groups: c,
        },
    )
}

/// `tf.nn.conv1d`: `input` `[batch, width, in]`, `filters` `[k, in, out]`, a `conv2d` over
/// images one row high.
///
/// # Errors
/// As [`conv2d`].
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 4, 1])?;
/// let k = gradtape::Tensor::from_vec(vec![1.0f32, -1.0], &[2, 1, 1])?;
/// assert_eq!(ops::conv1d(&x, &k, 1, Padding::Valid, 1)?.to_vec::<f32>()?, vec![-1.0, -1.0, -1.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn conv1d(
    input: &impl AsTensor,
    filters: &impl AsTensor,
    stride: usize,
    padding: Padding,
    dilation: usize,
) -> Result<Tensor> {
    let (x, f) = (
        input.operand().into_tensor(),
        filters.operand().into_tensor(),
    );
    let (&[n, w, c], &[k, fi, fo]) = (x.shape(), f.shape()) else {
        return Err(Error::shape(
            "conv1d",
            format!(
                "expected input [batch, width, channels] and filters [k, in, out], got {:?} and {:?}",
                x.shape(),
                f.shape()
            ),
        ));
    };
    let y = conv2d_with(
        &reshape_to(&x, &[n, 1, w, c])?,
        &reshape_to(&f, &[1, k, fi, fo])?,
        [1, stride],
        padding,
        ConvOptions {
            dilation: [1, dilation],
            groups: 1,
        },
    )?;
    let ow = y.shape()[2];
    reshape_to(&y, &[n, ow, fo])
}

/// `tf.nn.conv2d_transpose` (the gradient of `conv2d` with respect to its input): `input`
/// `[batch, h, w, in]`, `filters` `[kh, kw, out, in]` as TensorFlow orders them; the output is
/// `[batch, h·s, w·s, out]` for `"same"` and `[batch, (h-1)·s + (kh-1)·d + 1, ..., out]` for
/// `"valid"` (Keras's `Conv2DTranspose` sizes).
///
/// # Errors
/// When the shapes or dtypes do not fit.
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::ones(&[1, 2, 2, 1], gradtape::DType::F32)?;
/// let k = gradtape::Tensor::ones(&[2, 2, 1, 1], gradtape::DType::F32)?;
/// let y = ops::conv2d_transpose(&x, &k, [2, 2], Padding::Valid, [1, 1])?;
/// assert_eq!(y.shape(), &[1, 4, 4, 1]);
/// assert!(y.to_vec::<f32>()?.iter().all(|&v| v == 1.0));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn conv2d_transpose(
    input: &impl AsTensor,
    filters: &impl AsTensor,
    strides: impl Into<Size2>,
    padding: Padding,
    dilation: impl Into<Size2>,
) -> Result<Tensor> {
    let strides: [usize; 2] = strides.into().0;
    let dilation: [usize; 2] = dilation.into().0;
    let op = "conv2d_transpose";
    let (x, f) = (
        input.operand().into_tensor(),
        filters.operand().into_tensor(),
    );
    let (n, h, w, c) = images(op, &x)?;
    let [kh, kw, fo, fi] = *f.shape() else {
        return Err(Error::shape(
            op,
            format!("filters of shape {:?} are not [kh, kw, out, in]", f.shape()),
        ));
    };
    if fi != c || f.dtype() != x.dtype() {
        return Err(Error::shape(
            op,
            format!(
                "filters {} {:?} do not fit input {} {:?}: expected [kh, kw, out, {c}]",
                f.dtype(),
                f.shape(),
                x.dtype(),
                x.shape()
            ),
        ));
    }
    if strides.contains(&0) || dilation.contains(&0) || kh == 0 || kw == 0 || h == 0 || w == 0 {
        return Err(Error::arg(
            op,
            format!(
                "strides {strides:?}, dilation {dilation:?}, the kernel's {kh}x{kw} and the \
                 image's {h}x{w} must all be at least 1"
            ),
        ));
    }
    // checked: a huge stride or dilation wrapped to a small, wrong output size
    let size = |i: usize, k: usize, s: usize, d: usize| match padding {
        Padding::Same => i.checked_mul(s),
        Padding::Valid => (i - 1)
            .checked_mul(s)?
            .checked_add((k - 1).checked_mul(d)?)?
            .checked_add(1),
    };
    let (Some(out_h), Some(out_w)) = (
        size(h, kh, strides[0], dilation[0]),
        size(w, kw, strides[1], dilation[1]),
    ) else {
        return Err(Error::arg(
            op,
            format!(
                "the output of a {kh}x{kw} kernel with strides {strides:?} and dilation \
                 {dilation:?} over a {h}x{w} image is too large to index"
            ),
        ));
    };
    let win = Window::new(op, (out_h, out_w), [kh, kw], strides, dilation, padding)?;
    if win.out() != (h, w) {
        return Err(Error::shape(
            op,
            format!(
                "input {:?} is not what a conv2d of a {out_h}x{out_w} image gives ({:?})",
                x.shape(),
                win.out()
            ),
        ));
    }
    // each input pixel times the filters is a window of the output; windows add up
    let cols = matmul(
        &reshape_to(&x, &[n * h * w, c])?,
        &transpose(&reshape_to(&f, &[kh * kw * fo, c])?, None)?,
    )?;
    unpatches(&reshape_to(&cols, &[n, h, w, kh, kw, fo])?, &win)
}

/// Pooling windows: `ksize` moved by `strides`.
fn pool_windows(
    op: &'static str,
    x: &Tensor,
    ksize: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
) -> Result<(Window, Tensor)> {
    let (_, h, w, _) = images(op, x)?;
    let win = Window::new(op, (h, w), ksize, strides, [1, 1], padding)?;
    let p = patches(x, &win)?;
    Ok((win, p))
}

/// Which window elements lie inside the image (`[1, oh, ow, kh, kw, 1]`), for `"same"` pooling.
fn inside(win: &Window, dtype: crate::DType) -> Result<Tensor> {
    let ones = Tensor::ones(&[1, win.h, win.w, 1], dtype)?;
    patches(&ones, win)
}

/// `tf.nn.max_pool2d`: the largest element of each window (padding never wins). Its gradient
/// goes to the window's largest element, to the first in row-major order where several are
/// equal (as TensorFlow, PyTorch and JAX give it).
///
/// # Errors
/// When `x` is not a rank-4 float tensor or the window does not fit.
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 4, 4, 1])?;
/// let y = ops::max_pool2d(&x, [2, 2], [2, 2], Padding::Valid)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![5.0, 7.0, 13.0, 15.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn max_pool2d(
    x: &impl AsTensor,
    ksize: impl Into<Size2>,
    strides: impl Into<Size2>,
    padding: Padding,
) -> Result<Tensor> {
    let ksize: [usize; 2] = ksize.into().0;
    let strides: [usize; 2] = strides.into().0;
    let x = x.operand().into_tensor();
    let (win, p) = pool_windows("max_pool2d", &x, ksize, strides, padding)?;
    let p = if win.pt == 0 && win.pl == 0 && padding == Padding::Valid {
        p
    } else {
        let valid = greater(&inside(&win, x.dtype())?, &0.0)?;
        select(&valid, &p, &f64::NEG_INFINITY)?
    };
    reduce_max_first(&p, [3isize, 4], false)
}

/// `tf.nn.avg_pool2d`: the mean of each window, over the elements inside the image only (as
/// TensorFlow averages `"same"` windows at the border).
///
/// # Errors
/// When `x` is not a rank-4 float tensor or the window does not fit.
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 4, 4, 1])?;
/// let y = ops::avg_pool2d(&x, [2, 2], [2, 2], Padding::Valid)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![2.5, 4.5, 10.5, 12.5]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn avg_pool2d(
    x: &impl AsTensor,
    ksize: impl Into<Size2>,
    strides: impl Into<Size2>,
    padding: Padding,
) -> Result<Tensor> {
    let ksize: [usize; 2] = ksize.into().0;
    let strides: [usize; 2] = strides.into().0;
    let x = x.operand().into_tensor();
    let (win, p) = pool_windows("avg_pool2d", &x, ksize, strides, padding)?;
    if padding == Padding::Valid {
        return reduce_mean(&p, [3isize, 4], false);
    }
    let count = reduce_sum(&inside(&win, x.dtype())?, [3isize, 4], false)?;
    super::divide(&reduce_sum(&p, [3isize, 4], false)?, &count)
}

/// Runs a 2-D pooling over images one row high: the 1-D pooling ops.
fn pool1d(
    op: &'static str,
    x: &Tensor,
    pool: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let &[n, w, c] = x.shape() else {
        return Err(Error::shape(
            op,
            format!(
                "expected input [batch, width, channels], got {:?}",
                x.shape()
            ),
        ));
    };
    let y = pool(&reshape_to(x, &[n, 1, w, c])?)?;
    let ow = y.shape()[2];
    reshape_to(&y, &[n, ow, c])
}

/// `tf.nn.max_pool1d` over `[batch, width, channels]`.
///
/// # Errors
/// As [`max_pool2d`].
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 0.0], &[1, 4, 1])?;
/// assert_eq!(ops::max_pool1d(&x, 2, 2, Padding::Valid)?.to_vec::<f32>()?, vec![3.0, 2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn max_pool1d(
    x: &impl AsTensor,
    ksize: usize,
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    pool1d("max_pool1d", &x, |x| {
        max_pool2d(x, [1, ksize], [1, stride], padding)
    })
}

/// `tf.nn.avg_pool1d` over `[batch, width, channels]`.
///
/// # Errors
/// As [`avg_pool2d`].
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 0.0], &[1, 4, 1])?;
/// assert_eq!(ops::avg_pool1d(&x, 2, 2, Padding::Valid)?.to_vec::<f32>()?, vec![2.0, 1.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn avg_pool1d(
    x: &impl AsTensor,
    ksize: usize,
    stride: usize,
    padding: Padding,
) -> Result<Tensor> {
    let x = x.operand().into_tensor();
    pool1d("avg_pool1d", &x, |x| {
        avg_pool2d(x, [1, ksize], [1, stride], padding)
    })
}
