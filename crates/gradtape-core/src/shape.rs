//! Shapes, strides and the rules that combine them (broadcasting, axes).
//!
//! A [`Layout`] says where each element of a tensor lives in its storage. Transposes, broadcasts,
//! slices and reshapes of contiguous data only make a new layout over the same storage.

use std::fmt;

use crate::error::{Error, Result};

/// Dimensions or strides, stored inline up to rank 6 so that making a tensor or a view does not
/// allocate for its layout (the allocator was most of the cost of a small op).
#[derive(Clone)]
pub(crate) enum Dims<T: Copy + Default> {
    Inline([T; INLINE], u8),
    Heap(Vec<T>),
}

const INLINE: usize = 6;

impl<T: Copy + Default> Dims<T> {
    #[inline]
    pub fn from_slice(s: &[T]) -> Self {
        if s.len() <= INLINE {
            // a fixed-length copy: `copy_from_slice` of a runtime length is a call to `memcpy`,
            // which cost more than the copy on every tensor an op makes
            let a = std::array::from_fn(|i| s.get(i).copied().unwrap_or_default());
            Dims::Inline(a, s.len() as u8)
        } else {
            Dims::Heap(s.to_vec())
        }
    }
    pub fn filled(value: T, len: usize) -> Self {
        if len <= INLINE {
            Dims::Inline([value; INLINE], len as u8)
        } else {
            Dims::Heap(vec![value; len])
        }
    }
    pub fn push(&mut self, v: T) {
        match self {
            Dims::Inline(a, n) if (*n as usize) < INLINE => {
                a[*n as usize] = v;
                *n += 1;
            }
            Dims::Inline(a, n) => {
                let mut h = a[..*n as usize].to_vec();
                h.push(v);
                *self = Dims::Heap(h);
            }
            Dims::Heap(h) => h.push(v),
        }
    }
}

impl<T: Copy + Default> std::ops::Deref for Dims<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Dims::Inline(a, n) => &a[..*n as usize],
            Dims::Heap(h) => h,
        }
    }
}

impl<T: Copy + Default> std::ops::DerefMut for Dims<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Dims::Inline(a, n) => &mut a[..*n as usize],
            Dims::Heap(h) => h,
        }
    }
}

impl<T: Copy + Default> FromIterator<T> for Dims<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        let mut d = Dims::Inline([T::default(); INLINE], 0);
        for v in it {
            d.push(v);
        }
        d
    }
}

impl<'a, T: Copy + Default> IntoIterator for &'a Dims<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + Default> Extend<T> for Dims<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        for v in it {
            self.push(v);
        }
    }
}

impl<T: Copy + Default + PartialEq> PartialEq for Dims<T> {
    fn eq(&self, o: &Self) -> bool {
        **self == **o
    }
}
impl<T: Copy + Default + Eq> Eq for Dims<T> {}

impl<T: Copy + Default + fmt::Debug> fmt::Debug for Dims<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// Where a tensor's elements live in its storage: row-major by default, any strides allowed
/// (zero for broadcast dimensions, negative for reversed slices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub shape: Dims<usize>,
    pub strides: Dims<isize>,
    pub offset: usize,
}

/// `a == b` for shapes, without calling `memcmp` on an empty slice: the dangling pointer of an
/// empty `Vec` (a scalar's shape) sends glibc's `memcmp` into a masked load from an unmapped
/// page, which took ~150 ns per comparison on the AMD CPU of `BENCHMARKS.md` (two such
/// comparisons were a tenth of the seed's compiled step).
#[inline]
pub(crate) fn same(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// Row-major strides of a shape.
#[inline]
pub(crate) fn contiguous_strides(shape: &[usize]) -> Dims<isize> {
    let mut strides = Dims::filled(0isize, shape.len());
    let mut acc = 1isize;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        // saturating: only an empty tensor's sizes can multiply past isize (a 0 beside sizes
        // of 2^32), and its strides are never used to reach an element
        acc = acc.saturating_mul(d.max(1) as isize);
    }
    strides
}

/// Number of elements of a shape (1 for a scalar, 0 when any size is 0, however large the
/// others); `usize::MAX` when the product overflows, so that every size check against it fails
/// instead of wrapping.
#[inline]
pub(crate) fn numel(shape: &[usize]) -> usize {
    checked_numel(shape).unwrap_or(usize::MAX)
}

/// The number of elements of a shape, `None` when it overflows (a shape with a 0 has none).
#[inline]
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    // the scan for a 0 only on the rare overflow path: every op computes sizes
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .or_else(|| shape.contains(&0).then_some(0))
}

impl Layout {
    #[inline]
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            strides: contiguous_strides(shape),
            shape: Dims::from_slice(shape),
            offset: 0,
        }
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Row-major with no gaps, so the elements are `storage[offset..offset + numel]` in order.
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != acc {
                return false;
            }
            acc *= d as isize;
        }
        true
    }

    /// The same elements seen with a broadcast shape: new leading dimensions and expanded
    /// size-1 dimensions get stride 0. The caller has checked that the shapes broadcast.
    pub fn broadcast_to(&self, shape: &[usize]) -> Layout {
        let extra = shape.len() - self.shape.len();
        let mut strides = Dims::filled(0isize, shape.len());
        for i in 0..self.shape.len() {
            if self.shape[i] == shape[extra + i] {
                strides[extra + i] = self.strides[i];
            }
        }
        Layout {
            shape: Dims::from_slice(shape),
            strides,
            offset: self.offset,
        }
    }

    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }
}

/// Calls `f(row, offsets)` for every row (every index of all but the last dimension) of `shape`,
/// with the storage offset of the row's first element in each of `N` layouts walked in lock-step.
/// The kernels then run a tight loop over the last dimension with its `N` strides.
pub(crate) fn for_each_row<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    offsets: [usize; N],
    mut f: impl FnMut(usize, [isize; N]),
) {
    if shape.contains(&0) {
        return;
    }
    let outer_rank = shape.len().saturating_sub(1);
    let mut index = vec![0usize; outer_rank];
    let mut cur: [isize; N] = std::array::from_fn(|k| offsets[k] as isize);
    let rows: usize = shape[..outer_rank].iter().product();
    for row in 0..rows {
        f(row, cur);
        // Odometer step over the outer dimensions.
        let mut d = outer_rank;
        while d > 0 {
            d -= 1;
            index[d] += 1;
            for k in 0..N {
                cur[k] += strides[k][d];
            }
            if index[d] < shape[d] {
                break;
            }
            for k in 0..N {
                cur[k] -= strides[k][d] * shape[d] as isize;
            }
            index[d] = 0;
        }
    }
}

/// NumPy broadcasting of two shapes.
pub(crate) fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Dims<usize>> {
    let rank = a.len().max(b.len());
    let mut out = Dims::filled(0, rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("shapes {a:?} and {b:?} are not broadcastable"),
            ));
        };
    }
    Ok(out)
}

/// Maps an axis in `[-rank, rank)` to `[0, rank)`.
pub(crate) fn normalize_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    if axis < -r || axis >= r {
        return Err(Error::axis(
            op,
            format!("axis {axis} is out of range for a tensor of rank {rank} (expected [-{rank}, {rank}))"),
        ));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Normalizes a list of axes, sorted, rejecting duplicates.
pub(crate) fn normalize_axes(op: &'static str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(op, a, rank)?;
        if out.contains(&n) {
            return Err(Error::axis(
                op,
                format!("axis {a} is given twice in {axes:?}"),
            ));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// Checks that `perm` is a permutation of `0..rank`.
pub(crate) fn check_perm(op: &'static str, perm: &[usize], rank: usize) -> Result<()> {
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(Error::shape(
            op,
            format!(
                "perm {perm:?} has {} entries for a tensor of rank {rank}",
                perm.len()
            ),
        ));
    }
    for &p in perm {
        if p >= rank || seen[p] {
            return Err(Error::axis(
                op,
                format!("perm {perm:?} is not a permutation of 0..{rank}"),
            ));
        }
        seen[p] = true;
    }
    Ok(())
}

/// The sizes of a (batched) matrix product: `batch` matrices of `m × k` times `k × n`.
pub(crate) struct MatmulDims<'a> {
    pub batch: &'a [usize],
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dims() {
        let l = Layout {
            shape: Dims::from_slice(&[1, 3]),
            strides: Dims::from_slice(&[99, 1]),
            offset: 2,
        };
        assert!(l.is_contiguous());
        assert!(!Layout::contiguous(&[2, 3]).permute(&[1, 0]).is_contiguous());
    }

    #[test]
    fn rows_walk_all_offsets_of_a_transpose() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        let mut starts = vec![];
        for_each_row(&l.shape, [&l.strides], [l.offset], |_, [o]| starts.push(o));
        assert_eq!(starts, vec![0, 1, 2]);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(&*broadcast_shapes("t", &[3, 1], &[4]).unwrap(), &[3, 4]);
        assert!(broadcast_shapes("t", &[3], &[4]).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Sliding windows (convolution and pooling)

/// TensorFlow's padding modes.
///
/// ```
/// use gradtape::ops::{self, Padding};
/// let x = gradtape::Tensor::ones(&[1, 5, 5, 1], gradtape::DType::F32)?;
/// let k = gradtape::Tensor::ones(&[3, 3, 1, 1], gradtape::DType::F32)?;
/// assert_eq!(ops::conv2d(&x, &k, [1, 1], Padding::Valid)?.shape(), &[1, 3, 3, 1]);
/// assert_eq!(ops::conv2d(&x, &k, [1, 1], Padding::Same)?.shape(), &[1, 5, 5, 1]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: windows stay inside the image (`"valid"`).
    #[default]
    Valid,
    /// Zero padding so that the output is `ceil(input / stride)` (`"same"`), split as
    /// TensorFlow splits it (the extra row or column at the end).
    Same,
}

/// What [`Window::for_each`] visits: a whole window row of `kw` consecutive pixels inside
/// the image from its first pixel, or one window element (`None` in the padding).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Span {
    Run(usize),
    Pixel(Option<usize>),
}

/// Where a sliding window reads, for images of `h × w`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    /// Padding before the first row and column.
    pub(crate) pt: usize,
    pub(crate) pl: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Window {
    /// The window of a `kernel` moved by `strides` with `dilation` over `h × w` images.
    pub(crate) fn new(
        op: &'static str,
        (h, w): (usize, usize),
        kernel: [usize; 2],
        strides: [usize; 2],
        dilation: [usize; 2],
        padding: Padding,
    ) -> Result<Window> {
        if kernel.contains(&0) || strides.contains(&0) || dilation.contains(&0) {
            return Err(Error::arg(
                op,
                format!(
                    "kernel {kernel:?}, strides {strides:?} and dilation {dilation:?} must all be at least 1"
                ),
            ));
        }
        // Checked: a dilation or kernel near usize::MAX wrapped the span to a small number and
        // gave a plausible-looking wrong result. Positions are computed as isize, so every
        // span and padding must fit there too.
        let too_large = || {
            Error::arg(
                op,
                format!(
                    "a {}x{} window with strides {strides:?} and dilation {dilation:?} over a \
                     {h}x{w} image is too large to index",
                    kernel[0], kernel[1]
                ),
            )
        };
        let fits = |v: usize| (v <= isize::MAX as usize).then_some(v);
        let axis = |n: usize, k: usize, s: usize, d: usize| -> Option<(usize, usize)> {
            let span = fits((k - 1).checked_mul(d)?.checked_add(1)?)?;
            Some(match padding {
                Padding::Valid => (if n >= span { (n - span) / s + 1 } else { 0 }, 0),
                Padding::Same => {
                    let out = n.div_ceil(s);
                    let reach = fits((out.max(1) - 1).checked_mul(s)?.checked_add(span)?)?;
                    (out, reach.saturating_sub(n) / 2)
                }
            })
        };
        let (oh, pt) = axis(h, kernel[0], strides[0], dilation[0]).ok_or_else(too_large)?;
        let (ow, pl) = axis(w, kernel[1], strides[1], dilation[1]).ok_or_else(too_large)?;
        // the elements of one image's patches, which `patches` allocates per channel
        crate::shape::checked_numel(&[oh, ow, kernel[0], kernel[1]])
            .and_then(fits)
            .ok_or_else(too_large)?;
        if oh == 0 || ow == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "a {}x{} window (dilation {dilation:?}) does not fit in a {h}x{w} image with {padding:?} padding",
                    kernel[0], kernel[1]
                ),
            ));
        }
        Ok(Window {
            h,
            w,
            kh: kernel[0],
            kw: kernel[1],
            sh: strides[0],
            sw: strides[1],
            dh: dilation[0],
            dw: dilation[1],
            pt,
            pl,
            oh,
            ow,
        })
    }

    /// The output's spatial size.
    pub(crate) fn out(&self) -> (usize, usize) {
        (self.oh, self.ow)
    }

    /// Each window element in row-major order `(oy, ox, ky, kx)`: the input pixel it reads,
    /// or `None` in the padding; a window row whose `kw` pixels are consecutive and inside
    /// the image comes whole, as a [`Span::Run`] from its first pixel.
    pub(crate) fn for_each(&self, mut f: impl FnMut(Span)) {
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                for ky in 0..self.kh {
                    let iy = (oy * self.sh + ky * self.dh) as isize - self.pt as isize;
                    let ix0 = (ox * self.sw) as isize - self.pl as isize;
                    let row_inside = (0..self.h as isize).contains(&iy);
                    // a window row of consecutive pixels inside the image: one run (the
                    // copies of LeNet's first convolution, one channel, were one element each)
                    if row_inside && self.dw == 1 && ix0 >= 0 && ix0 as usize + self.kw <= self.w {
                        f(Span::Run(iy as usize * self.w + ix0 as usize));
                        continue;
                    }
                    for kx in 0..self.kw {
                        let ix = ix0 + (kx * self.dw) as isize;
                        let inside = row_inside && (0..self.w as isize).contains(&ix);
                        f(Span::Pixel(
                            inside.then(|| iy as usize * self.w + ix as usize),
                        ));
                    }
                }
            }
        }
    }
}
