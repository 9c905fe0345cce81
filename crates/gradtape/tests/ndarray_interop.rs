//! Conversions to and from ndarray (cargo feature `ndarray`; CI runs this file with it on).

use gradtape::{ops, s, DType, GradientTape, Tensor};
use ndarray::{arr2, Array3, ArrayD};

#[test]
fn arrays_and_views_convert_both_ways_in_logical_order() {
    let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f64);
    let t = Tensor::from_ndarray(&a).unwrap();
    assert_eq!(t.shape(), &[2, 3, 4]);
    assert_eq!(
        t.to_vec::<f64>().unwrap(),
        a.iter().copied().collect::<Vec<_>>()
    );
    // a strided, permuted view converts as it reads
    let v = a.slice(ndarray::s![.., 1.., ..;2]).permuted_axes([2, 0, 1]);
    let tv = Tensor::try_from(&v).unwrap();
    assert_eq!(tv.shape(), v.shape());
    assert_eq!(
        tv.to_vec::<f64>().unwrap(),
        v.iter().copied().collect::<Vec<_>>()
    );
    // and gradtape's own slice of the tensor agrees with ndarray's
    let mine = t.slice(s![.., 1.., ..;2]).unwrap();
    assert_eq!(
        mine.to_ndarray::<f64>().unwrap(),
        a.slice(ndarray::s![.., 1.., ..;2]).into_dyn()
    );
    let back = ArrayD::<f64>::try_from(&t).unwrap();
    assert_eq!(back, a.into_dyn());
    // every dtype
    let b = Tensor::from_ndarray(&arr2(&[[true, false]])).unwrap();
    assert_eq!(b.dtype(), DType::Bool);
    let e = b.to_ndarray::<f32>().unwrap_err().to_string();
    assert!(e.contains("bool") && e.contains("float32"), "{e}");
}

#[test]
fn a_converted_array_is_an_ordinary_tensor_on_the_tape() {
    let x = Tensor::from_ndarray(&arr2(&[[1.0f32, 2.0], [3.0, 4.0]])).unwrap();
    let tape = GradientTape::new();
    tape.watch(&x);
    let y = ops::reduce_sum(&ops::square(&x).unwrap(), gradtape::Axes::All, false).unwrap();
    let [g] = tape.gradient(&y, [&x]).unwrap();
    assert_eq!(
        g.unwrap().to_ndarray::<f32>().unwrap(),
        arr2(&[[2.0f32, 4.0], [6.0, 8.0]]).into_dyn()
    );
}
