//! Transposes, broadcasts, slices and reshapes of contiguous data are views over the same
//! storage (no copy); a reshape of a non-contiguous view copies, as it must.

use gradtape::{ops, DType, Tensor};

#[test]
fn shape_ops_share_storage_where_a_view_serves() {
    let x = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4]).unwrap();
    let t = ops::transpose(&x, Some(&[2, 0, 1])).unwrap();
    let b = ops::broadcast_to(&Tensor::zeros(&[1, 4], DType::F32).unwrap(), &[1000, 4]).unwrap();
    let s = ops::strided_slice(&x, &[1, -1], &[2, -4], &[1, -1]).unwrap();
    let r = ops::reshape(&x, &[4, -1]).unwrap();
    let e = ops::expand_dims(&x, 0).unwrap();
    for (name, v, base) in [
        ("transpose", &t, &x),
        ("strided_slice", &s, &x),
        ("reshape", &r, &x),
        ("expand_dims", &e, &x),
    ] {
        assert!(v.shares_storage_with(base), "{name} copied");
    }
    assert_eq!(b.shape(), &[1000, 4]);
    assert_eq!(b.to_vec::<f32>().unwrap().len(), 4000);
    // the values seen through the views are the right ones
    assert_eq!(t.shape(), &[4, 2, 3]);
    assert_eq!(t.to_vec::<f32>().unwrap()[..3], [0.0, 4.0, 8.0]);
    // NumPy's x[1:2, -1:-4:-1]: rows 2, 1, 0 of block 1, every column
    assert_eq!(s.shape(), &[1, 3, 4]);
    assert_eq!(
        s.to_vec::<f32>().unwrap(),
        vec![20.0, 21.0, 22.0, 23.0, 16.0, 17.0, 18.0, 19.0, 12.0, 13.0, 14.0, 15.0]
    );
    // reshaping a transposed (non-contiguous) view has to copy
    let rt = ops::reshape(&t, &[-1]).unwrap();
    assert!(!rt.shares_storage_with(&x));
    assert_eq!(rt.to_vec::<f32>().unwrap()[..3], [0.0, 4.0, 8.0]);
}

/// A batch of products with one shared right operand runs as one product of stacked rows;
/// every layout of the left operand (contiguous, strided, broadcast) gives each batch
/// element's own product.
#[test]
fn batched_products_with_a_shared_operand_equal_each_product() {
    use gradtape::{ops, random::Generator, DType};
    let mut rng = Generator::from_seed(1);
    let a = rng.uniform(&[3, 4, 5], -1.0, 1.0, DType::F64).unwrap();
    let b = rng.uniform(&[5, 6], -1.0, 1.0, DType::F64).unwrap();
    let strided = ops::strided_slice(&a, &[0, 0, 0], &[3, 4, 5], &[1, 2, 1]).unwrap(); // [3, 2, 5]
    let row =
        ops::broadcast_to(&ops::slice(&a, &[0, 0, 0], &[1, 1, 5]).unwrap(), &[3, 4, 5]).unwrap();
    let shared = ops::broadcast_to(&b, &[3, 5, 6]).unwrap();
    for (name, x, y) in [
        ("contiguous", &a, &b),
        ("strided rows", &strided, &b),
        ("broadcast rows", &row, &b),
        ("broadcast right operand", &a, &shared),
    ] {
        let whole = ops::matmul(x, y).unwrap();
        for i in 0..3 {
            let xi = ops::squeeze(&ops::slice(x, &[i, 0, 0], &[1, -1, -1]).unwrap(), &[0]).unwrap();
            let yi = if y.rank() == 3 {
                ops::squeeze(&ops::slice(y, &[i, 0, 0], &[1, -1, -1]).unwrap(), &[0]).unwrap()
            } else {
                y.clone()
            };
            let want = ops::matmul(&xi.to_contiguous_copy(), &yi).unwrap();
            let got =
                ops::squeeze(&ops::slice(&whole, &[i, 0, 0], &[1, -1, -1]).unwrap(), &[0]).unwrap();
            assert_eq!(
                got.to_vec::<f64>().unwrap(),
                want.to_vec::<f64>().unwrap(),
                "{name}, element {i}"
            );
        }
    }
}

trait Copied {
    fn to_contiguous_copy(&self) -> gradtape::Tensor;
}
impl Copied for gradtape::Tensor {
    fn to_contiguous_copy(&self) -> gradtape::Tensor {
        gradtape::Tensor::from_vec(self.to_vec::<f64>().unwrap(), self.shape()).unwrap()
    }
}

/// Matrix products of reversed views (negative strides, on the rows, the columns and the
/// inner axis, which the kernel must walk forward in both operands), of a matrix by a column
/// (one output column: no transposition inside) and of large enough sizes for the parallel
/// kernel, equal the products of their contiguous copies.
#[test]
fn matmul_of_reversed_views_equals_matmul_of_copies() {
    use gradtape::s;
    let mut g = gradtape::random::Generator::from_seed(11);
    // (4, 300, 200): a few rows times a transposed matrix, which the kernel computes without
    // its transposition trick (the trick would pack all of the large operand)
    for (m, k, n) in [(3, 4, 5), (5, 7, 1), (1, 6, 4), (70, 80, 60), (4, 300, 200)] {
        for dtype in [DType::F32, DType::F64] {
            let a = g.uniform(&[m, k], -1.0, 1.0, dtype).unwrap();
            let b = g.uniform(&[k, n], -1.0, 1.0, dtype).unwrap();
            let bt = ops::transpose(&g.uniform(&[n, k], -1.0, 1.0, dtype).unwrap(), None).unwrap();
            let views = [
                (a.clone(), bt.clone()),
                (
                    a.slice(s![..;-1, ..]).unwrap(),
                    bt.slice(s![.., ..;-1]).unwrap(),
                ),
                (
                    a.slice(s![.., ..;-1]).unwrap(),
                    bt.slice(s![..;-1, ..]).unwrap(),
                ),
                (a.slice(s![..;-1, ..]).unwrap(), b.clone()),
                (
                    a.slice(s![.., ..;-1]).unwrap(),
                    b.slice(s![..;-1, ..]).unwrap(),
                ),
                (a.clone(), b.slice(s![.., ..;-1]).unwrap()),
                (
                    a.slice(s![..;-1, ..;-1]).unwrap(),
                    b.slice(s![..;-1, ..;-1]).unwrap(),
                ),
            ];
            let values = |t: Tensor| ops::cast(&t, DType::F64).unwrap().to_vec::<f64>().unwrap();
            for (x, y) in views {
                let copies = (x.to_contiguous().unwrap(), y.to_contiguous().unwrap());
                let want = values(ops::matmul(&copies.0, &copies.1).unwrap());
                let got = values(ops::matmul(&x, &y).unwrap());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "[{m},{k}]x[{k},{n}] {dtype:?}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
