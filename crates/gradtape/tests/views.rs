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
