//! `tf.einsum`: a composition of the primitives (diagonals by a mask, sums, and one batched
//! matrix product per pair of operands, left to right), so its gradients, JVPs and batching
//! rules are theirs.

use crate::error::{Error, Result};
use crate::tensor::{AsTensor, Tensor};

use super::linalg::contract_batched;
use super::{broadcast_to, multiply, reduce_sum, reshape, transpose};

/// An axis label: a letter, or one of the axes `...` stands for (counted from the right, so
/// that operands of different ranks broadcast as NumPy's do).
type Label = u32;

const ELLIPSIS: Label = 1 << 16;

/// The sum of products the equation describes, over `operands` (`tf.einsum`, NumPy's and
/// JAX's `einsum`): `"ij,jk->ik"` is a matrix product, `"bij,bjk->bik"` a batched one,
/// `"ii->"` a trace, `"i,j->ij"` an outer product, `"...ij->...ji"` a transpose of the last
/// two axes. Without `->`, the output is the labels that appear once, in alphabetical order
/// (NumPy's implicit mode). Axes under `...` broadcast; those not in the output are summed.
///
/// # Errors
/// When the equation does not parse, names more or fewer axes than an operand has, gives one
/// label two sizes, has an output label no input has (or one twice), or the operands are not
/// all float of one dtype.
///
/// ```
/// use gradtape::{ops, Tensor};
/// let a = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3])?;
/// let b = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[3, 4])?;
/// let ab = ops::einsum("ij,jk->ik", &[&a, &b])?;
/// assert_eq!(ab.to_vec::<f32>()?, ops::matmul(&a, &b)?.to_vec::<f32>()?);
/// let m = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(ops::einsum("ii", &[&m])?.item()?, 5.0); // the trace
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn einsum<T: AsTensor>(equation: &str, operands: &[T]) -> Result<Tensor> {
    let op = "einsum";
    let xs: Vec<Tensor> = operands.iter().map(|x| x.operand().into_tensor()).collect();
    let bad = |msg: String| Error::arg(op, format!("equation {equation:?}: {msg}"));
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != xs.len() {
        return Err(bad(format!(
            "{} input terms for {} operands",
            terms.len(),
            xs.len()
        )));
    }
    if let Some(first) = xs.first() {
        for x in &xs {
            if x.dtype() != first.dtype() || !x.dtype().is_float() {
                let dtypes: Vec<String> = xs.iter().map(|x| x.dtype().to_string()).collect();
                return Err(Error::dtype(
                    op,
                    format!("expected float operands of one dtype, got {dtypes:?}"),
                ));
            }
        }
    } else {
        return Err(bad("no operands".into()));
    }
    // each operand's axis labels, and each label's size
    let mut labels: Vec<Vec<Label>> = vec![];
    let mut sizes: Vec<(Label, usize)> = vec![];
    let mut ellipsis_rank = 0;
    for (term, x) in terms.iter().zip(&xs) {
        let (letters, ellipsis) = parse_term(term).map_err(&bad)?;
        let rank = x.rank();
        let (before, after) = match ellipsis {
            Some(at) => (&letters[..at], &letters[at..]),
            None => (&letters[..], &[][..]),
        };
        let named = before.len() + after.len();
        if rank < named || (ellipsis.is_none() && rank != named) {
            return Err(bad(format!(
                "term {term:?} names {named} axes of an operand of shape {:?}",
                x.shape()
            )));
        }
        let hidden = rank - named;
        ellipsis_rank = ellipsis_rank.max(hidden);
        let ls: Vec<Label> = before
            .iter()
            .copied()
            .chain((0..hidden).rev().map(|k| ELLIPSIS + k as Label))
            .chain(after.iter().copied())
            .collect();
        for (&l, &d) in ls.iter().zip(x.shape()) {
            match sizes.iter_mut().find(|(m, _)| *m == l) {
                // the axes under `...` broadcast (one element against many)
                Some((_, s)) if l >= ELLIPSIS && (*s == 1 || d == 1) => *s = (*s).max(d),
                Some((_, s)) if *s != d => {
                    return Err(bad(format!(
                        "label {} has sizes {} and {d} (shapes {:?})",
                        show(l),
                        *s,
                        xs.iter().map(|x| x.shape().to_vec()).collect::<Vec<_>>()
                    )))
                }
                Some(_) => {}
                None => sizes.push((l, d)),
            }
        }
        labels.push(ls);
    }
    let ellipsis_labels: Vec<Label> = (0..ellipsis_rank)
        .rev()
        .map(|k| ELLIPSIS + k as Label)
        .collect();
    let output: Vec<Label> = match rhs {
        Some(r) => {
            let (letters, ellipsis) = parse_term(r).map_err(&bad)?;
            let at = ellipsis.unwrap_or(letters.len());
            let mut out = letters[..at].to_vec();
            if ellipsis.is_some() {
                out.extend(&ellipsis_labels);
            }
            out.extend(&letters[at..]);
            for (i, &l) in out.iter().enumerate() {
                if out[..i].contains(&l) {
                    return Err(bad(format!("output label {} appears twice", show(l))));
                }
                if !sizes.iter().any(|&(m, _)| m == l) {
                    return Err(bad(format!("output label {} is in no input", show(l))));
                }
            }
            out
        }
        None => {
            let mut once: Vec<Label> = sizes
                .iter()
                .map(|&(l, _)| l)
                .filter(|&l| {
                    l < ELLIPSIS && labels.iter().flatten().filter(|&&m| m == l).count() == 1
                })
                .collect();
            once.sort_unstable();
            ellipsis_labels.iter().copied().chain(once).collect()
        }
    };
    let size_of = |l: Label| sizes.iter().find(|&&(m, _)| m == l).map_or(1, |&(_, s)| s);
    // each operand on its own: broadcast `...`, diagonals of repeated labels, sums of labels
    // no one else needs
    let mut prepared: Vec<(Tensor, Vec<Label>)> = vec![];
    for (i, (x, ls)) in xs.iter().zip(&labels).enumerate() {
        let full: Vec<usize> = ls.iter().map(|&l| size_of(l)).collect();
        let mut x = broadcast_to(x, &full)?;
        let mut ls = ls.clone();
        while let Some((p, q)) = repeated(&ls) {
            x = diagonal(&x, p, q)?;
            ls.remove(q);
        }
        let needed = |l: Label| {
            output.contains(&l)
                || labels
                    .iter()
                    .enumerate()
                    .any(|(j, other)| j != i && other.contains(&l))
        };
        let summed: Vec<isize> = (0..ls.len())
            .filter(|&a| !needed(ls[a]))
            .map(|a| a as isize)
            .collect();
        if !summed.is_empty() {
            x = reduce_sum(&x, summed.as_slice(), false)?;
            ls.retain(|&l| needed(l));
        }
        prepared.push((x, ls));
    }
    // pairwise, left to right: labels in both and needed later are batch axes, the others in
    // both are contracted
    let mut rest = prepared.into_iter();
    let (mut acc, mut acc_labels) = rest.next().ok_or_else(|| bad("no operands".into()))?;
    let later: Vec<Vec<Label>> = labels.iter().skip(1).cloned().collect();
    for (k, (b, b_labels)) in rest.enumerate() {
        let keep =
            |l: Label| output.contains(&l) || later[k + 1..].iter().any(|ls| ls.contains(&l));
        let pos = |ls: &[Label], l: Label| ls.iter().position(|&m| m == l).unwrap_or(0);
        let common: Vec<Label> = acc_labels
            .iter()
            .copied()
            .filter(|l| b_labels.contains(l))
            .collect();
        let (batch, summed): (Vec<Label>, Vec<Label>) = common.iter().partition(|&&l| keep(l));
        let axes = |ls: &[Label], which: &[Label]| -> Vec<usize> {
            which.iter().map(|&l| pos(ls, l)).collect()
        };
        let next = contract_batched(
            op,
            &acc,
            &b,
            (&axes(&acc_labels, &batch), &axes(&b_labels, &batch)),
            (&axes(&acc_labels, &summed), &axes(&b_labels, &summed)),
        )?;
        let free = |ls: &[Label]| -> Vec<Label> {
            ls.iter().copied().filter(|l| !common.contains(l)).collect()
        };
        acc_labels = [batch.clone(), free(&acc_labels), free(&b_labels)].concat();
        acc = next;
    }
    // what is left is the output's labels, in some order
    let perm: Vec<usize> = output
        .iter()
        .map(|&l| acc_labels.iter().position(|&m| m == l))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("an output label was summed away".into()))?;
    if perm.len() != acc_labels.len() {
        return Err(bad(format!(
            "{} axes left for an output of {}",
            acc_labels.len(),
            perm.len()
        )));
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        Ok(acc)
    } else {
        transpose(&acc, Some(&perm))
    }
}

/// A term's letters and where its `...` stands among them, if it has one.
fn parse_term(term: &str) -> std::result::Result<(Vec<Label>, Option<usize>), String> {
    let mut letters = vec![];
    let mut ellipsis = None;
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if ellipsis.replace(letters.len()).is_some() {
                return Err(format!("term {term:?} has two ellipses"));
            }
            rest = after;
        } else if c.is_ascii_alphabetic() {
            letters.push(c as Label);
            rest = &rest[1..];
        } else {
            return Err(format!(
                "term {term:?}: {c:?} is neither a letter nor part of '...'"
            ));
        }
    }
    Ok((letters, ellipsis))
}

fn show(l: Label) -> String {
    match char::from_u32(l).filter(|_| l < ELLIPSIS) {
        Some(c) => format!("'{c}'"),
        None => "'...'".into(),
    }
}

/// The first label that appears twice, at axes `p < q`.
fn repeated(ls: &[Label]) -> Option<(usize, usize)> {
    (0..ls.len()).find_map(|q| ls[..q].iter().position(|&l| l == ls[q]).map(|p| (p, q)))
}

/// The elements of `x` where axes `p` and `q` (of one size) have equal indices, axis `q`
/// dropped: a mask of the identity, then a sum (both differentiable).
fn diagonal(x: &Tensor, p: usize, q: usize) -> Result<Tensor> {
    let d = x.shape()[p];
    let mut shape = vec![1isize; x.rank()];
    shape[p] = d as isize;
    shape[q] = d as isize;
    let mask = reshape(&Tensor::eye(d, x.dtype())?, &shape)?;
    reduce_sum(&multiply(x, &mask)?, q as isize, false)
}
