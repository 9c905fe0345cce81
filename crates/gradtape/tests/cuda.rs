//! Devices and the CUDA backend.
//!
//! Three kinds of test live here (the last two with the cargo feature `cuda`, which CI turns on):
//! - the device API on any machine (names, scopes, and the errors when no GPU can be used);
//! - every CUDA kernel the ops generate, compiled by NVRTC: this needs only `libnvrtc` on the
//!   library path (CI installs NVIDIA's `nvidia-cuda-nvrtc` wheel for it), not a GPU;
//! - the GPU suite, which runs ops, gradients and a training step on `cuda:0` and compares them
//!   with the CPU. Without a GPU these print why they were skipped; they never pass silently.

use gradtape::device::{self, with_device};
use gradtape::{DType, Device, Error, Tensor};

/// The GPU, or the reason there is none (printed by the test that skips).
fn gpu() -> Result<Device, Error> {
    Device::Cuda(0).check().map(|_| Device::Cuda(0))
}

/// Says why a GPU test did nothing, on the real stderr: the test harness captures `eprintln!`
/// of passing tests, and a skip must never look like a silent pass.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// On the GPU machine `tools/gpu/check.sh` sets `GRADTAPE_REQUIRE_GPU`: a skip there fails.
fn skip(test: &str, why: &dyn std::fmt::Display) {
    if std::env::var_os("GRADTAPE_REQUIRE_GPU").is_some() {
        panic!("{test}: GRADTAPE_REQUIRE_GPU is set but there is no usable GPU: {why}");
    }
    say(&format!("{test}: GPU part skipped: {why}"));
}

#[cfg(feature = "cuda")]
fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "{what}: element {i}: GPU {g} vs CPU {w}");
    }
}

#[cfg(feature = "cuda")]
fn tol(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        2e-5
    } else {
        1e-12
    }
}

#[test]
fn device_names_parse_and_print() {
    for (s, d) in [
        ("cpu", Device::Cpu),
        ("CPU", Device::Cpu),
        ("/CPU:0", Device::Cpu),
        ("cuda", Device::Cuda(0)),
        ("cuda:3", Device::Cuda(3)),
        ("gpu:1", Device::Cuda(1)),
        ("/GPU:0", Device::Cuda(0)),
        ("/device:GPU:2", Device::Cuda(2)),
    ] {
        assert_eq!(s.parse::<Device>().unwrap(), d, "{s}");
    }
    for bad in ["", "tpu", "cuda:x", "cpu:1", "cuda:-1"] {
        let e = bad.parse::<Device>().unwrap_err();
        assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
    }
    assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
    assert_eq!(Device::Cpu.to_string(), "cpu");
    assert_eq!(Device::default(), Device::Cpu);
}

#[test]
fn device_scopes_nest_restore_and_place_new_tensors() {
    assert_eq!(device::default_device(), Device::Cpu);
    let inner = with_device(Device::Cpu, || {
        let t = Tensor::zeros(&[2], DType::F32).unwrap();
        (device::default_device(), t.device())
    })
    .unwrap();
    assert_eq!(inner, (Device::Cpu, Device::Cpu));
    match gpu() {
        Ok(g) => {
            let (d, t, nested) = with_device(g, || {
                let t = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
                let nested = with_device(Device::Cpu, device::default_device).unwrap();
                (device::default_device(), t, nested)
            })
            .unwrap();
            assert_eq!((d, t.device(), nested), (g, g, Device::Cpu));
            assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
            // Work handed to the compute pool keeps the scope (issue 20: it went to the host).
            let pooled = with_device(g, || {
                gradtape::threading::install(|| Tensor::zeros(&[2], DType::F32).unwrap())
            })
            .unwrap();
            assert_eq!(pooled.device(), g);
            // A panic inside the scope still restores the default.
            let r = std::panic::catch_unwind(|| with_device(g, || panic!("inside")));
            assert!(r.is_err());
        }
        Err(e) => skip("device_scopes", &e),
    }
    assert_eq!(device::default_device(), Device::Cpu);
}

#[test]
fn asking_for_a_missing_gpu_is_an_error_that_names_what_is_missing() {
    let Err(why) = gpu() else {
        // With a GPU, a device past the last one is the error to check.
        let n = Device::cuda_device_count();
        let e = Device::Cuda(n).check().unwrap_err();
        assert!(e.to_string().contains(&format!("cuda:{n}")), "{e}");
        return;
    };
    let msg = why.to_string();
    assert!(matches!(why, Error::Device { .. }), "{why:?}");
    assert!(
        [
            "NVIDIA driver",
            "no GPU",
            "NVRTC",
            "cuBLAS",
            "`cuda` feature"
        ]
        .iter()
        .any(|piece| msg.contains(piece)),
        "the message names no missing piece: {msg}"
    );
    assert!(!Device::Cuda(0).is_available());
    assert_eq!(Device::cuda_if_available(), Device::Cpu);
    let x = Tensor::from_vec(vec![1.0f32], &[1]).unwrap();
    let e = x.to_device(Device::Cuda(0)).unwrap_err();
    assert_eq!(e.to_string(), msg, "to_device gives the same reason");
    assert!(Tensor::full_on(&[2], 0.0, DType::F32, Device::Cuda(0)).is_err());
    assert!(with_device(Device::Cuda(0), || unreachable!("must not run")).is_err());
    // Everything on the CPU goes on as before.
    assert_eq!(
        x.to_device(Device::Cpu).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0]
    );
}

/// The kernels and the GPU suite: the backend exists only with the `cuda` feature.
#[cfg(feature = "cuda")]
mod backend {
    use super::*;
    use gradtape::layers::Layer;
    use gradtape::optimizers::Optimizer;
    use gradtape::{cuda, layers, ops, optimizers, Axes, GradientTape};

    /// Runs on the CPU every op family the GPU has kernels for, in every dtype they take, so that
    /// the recorder sees each kernel source the ops would launch on a GPU.
    fn exercise_ops() -> Result<(), Error> {
        for dt in [DType::F32, DType::F64] {
            let x =
                Tensor::from_vec(vec![0.5f64, -1.5, 2.0, 0.0, 3.0, -0.25], &[2, 3])?.cast(dt)?;
            let y = Tensor::from_vec(vec![1.0f64, 2.0, -3.0], &[3])?.cast(dt)?;
            for f in UNARY {
                f(&x)?;
            }
            ops::round(&x)?;
            ops::floor(&x)?;
            ops::ceil(&x)?;
            ops::is_nan(&x)?;
            ops::is_finite(&x)?;
            ops::add(&x, &y)?;
            ops::subtract(&x, &2.0)?;
            ops::multiply(&x, &y)?;
            ops::divide(&x, &y)?;
            ops::maximum(&x, &y)?;
            ops::minimum(&x, &y)?;
            ops::pow(&ops::abs(&x)?, &y)?;
            for c in [ops::equal, ops::not_equal, ops::less, ops::less_equal] {
                c(&x, &y)?;
            }
            ops::greater(&x, &y)?;
            ops::greater_equal(&x, &y)?;
            ops::reduce_sum(&x, 0, false)?;
            ops::reduce_max(&x, Axes::All, false)?;
            ops::reduce_min(&x, 1, true)?;
            ops::reduce_prod(&x, 1, false)?;
            for to in [DType::F32, DType::F64, DType::I64, DType::Bool] {
                x.cast(to)?;
            }
        }
        let x = Tensor::from_vec(vec![0.5f32, -1.5, 2.0, 0.0], &[2, 2])?;
        let c = ops::greater(&x, &0.0)?;
        ops::select(&c, &x, &0.0)?;
        ops::concat(&[&x, &x], 1)?;
        let ids = Tensor::from_vec(vec![1i64, 0, 1], &[3])?;
        ops::one_hot(&ids, 4, 1.0, 0.0, DType::F32)?;
        let tape = GradientTape::new();
        tape.watch(&x);
        let picked = ops::gather(&x, &ids, 0)?;
        let part = x.slice(gradtape::s![.., 1..])?;
        let y = ops::add(
            &ops::reduce_sum(&picked, Axes::All, false)?,
            &ops::reduce_sum(&part, Axes::All, false)?,
        )?;
        tape.gradient(&y, [&x])?;
        let i = Tensor::from_vec(vec![1i64, -2, 3], &[3])?;
        ops::add(&i, &i)?;
        ops::multiply(&i, &2)?;
        ops::reduce_sum(&i, 0, false)?;
        ops::reduce_max(&i, 0, false)?;
        for to in [DType::F32, DType::F64, DType::Bool] {
            i.cast(to)?;
        }
        let b = Tensor::from_vec(vec![true, false, true], &[3])?;
        ops::logical_and(&b, &b)?;
        ops::logical_or(&b, &b)?;
        ops::logical_xor(&b, &b)?;
        ops::logical_not(&b)?;
        for to in [DType::F32, DType::F64, DType::I64] {
            b.cast(to)?;
        }
        // a compiled graph's fusion groups: each one kernel (an Adam-like update with numbers
        // passed by value, and a loss whose sum is folded)
        for dt in [DType::F32, DType::F64] {
            let f = gradtape::function(|a: &[Tensor]| -> Result<Vec<Tensor>, Error> {
                let (g, m, w) = (&a[0], &a[1], &a[2]);
                let m2 = ops::add(m, &ops::multiply(&ops::subtract(g, m)?, &0.1)?)?;
                let w2 = ops::subtract(
                    w,
                    &ops::divide(&m2, &ops::add(&ops::sqrt(&ops::square(g)?)?, &1e-7)?)?,
                )?;
                let loss = ops::reduce_sum(&ops::square(&ops::tanh(&w2)?)?, Axes::All, false)?;
                Ok(vec![m2, w2, loss])
            });
            let v = Tensor::from_vec(vec![0.5f64, -1.5, 2.0, 0.25], &[4])?.cast(dt)?;
            f.call::<Vec<Tensor>>(&[&v, &v, &v])?;
            f.call::<Vec<Tensor>>(&[&v, &v, &v])?;
            assert!(f.graphs()[0].fusion_groups() >= 1);
        }
        Ok(())
    }

    type Unary = fn(&Tensor) -> Result<Tensor, Error>;
    const UNARY: &[Unary] = &[
        |x| ops::negative(x),
        |x| ops::square(x),
        |x| ops::sqrt(x),
        |x| ops::rsqrt(x),
        |x| ops::reciprocal(x),
        |x| ops::exp(x),
        |x| ops::expm1(x),
        |x| ops::log(x),
        |x| ops::log1p(x),
        |x| ops::abs(x),
        |x| ops::sign(x),
        |x| ops::sin(x),
        |x| ops::cos(x),
        |x| ops::tanh(x),
        |x| ops::sigmoid(x),
        |x| ops::relu(x),
        |x| ops::softplus(x),
    ];

    #[test]
    fn every_generated_kernel_compiles_with_nvrtc() {
        cuda::record_kernel_sources(true);
        exercise_ops().unwrap();
        cuda::record_kernel_sources(false);
        let sources = cuda::recorded_kernel_sources();
        // 17 unary rows and 3 roundings and 2 tests per float dtype, 13 binary, 4 reductions, casts
        // and the logical ops: far more than 100 distinct kernels.
        assert!(
            sources.len() > 100,
            "only {} kernels were recorded: the ops stopped reporting their CUDA C",
            sources.len()
        );
        // and the fused kernels of compiled graphs (`gradtape::function`), for both float types
        for t in ["f32", "f64"] {
            assert!(
                sources
                    .iter()
                    .any(|(n, _)| n.starts_with(&format!("fused_{t}_"))),
                "no fused {t} kernel was recorded"
            );
        }
        // every primitive's CUDA expression is among them (a new primitive's kernel is compiled)
        for p in gradtape::ops::primitives() {
            if let Some(expr) = p.cuda_expression() {
                assert!(
                    sources.iter().any(|(_, src)| src.contains(expr)),
                    "{}: no generated kernel holds its CUDA expression {expr:?} (add it to \
                 exercise_ops)",
                    p.name()
                );
            }
        }
        // H100/H200 (sm_90) and A100 (sm_80).
        let mut skipped = None;
        for (name, src) in &sources {
            for arch in ["compute_90", "compute_80"] {
                match cuda::compile_kernel(src, arch) {
                    Ok(ptx) => assert!(
                        ptx.contains(name.as_str()),
                        "{name}: PTX lacks the entry point"
                    ),
                    Err(e) if e.to_string().contains("no NVRTC") => {
                        skipped = Some(e);
                        break;
                    }
                    Err(e) => panic!("{name} ({arch}) does not compile: {e}\n{src}"),
                }
            }
            if skipped.is_some() {
                break;
            }
        }
        match skipped {
            // CI installs NVRTC and sets this, so there a missing library fails instead.
            Some(e) if std::env::var_os("GRADTAPE_REQUIRE_NVRTC").is_some() => {
                panic!("GRADTAPE_REQUIRE_NVRTC is set but NVRTC cannot be loaded: {e}")
            }
            Some(e) => say(&format!(
                "every_generated_kernel_compiles_with_nvrtc: compilation skipped ({} kernels \
             generated): {e}",
                sources.len()
            )),
            None => say(&format!(
                "{} generated kernels compiled for compute_90 and compute_80",
                sources.len()
            )),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // The GPU suite: each test compares cuda:0 with the CPU, and prints why when there is no GPU.

    fn on(t: &Tensor, d: Device) -> Tensor {
        t.to_device(d).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec().unwrap()
    }

    /// A compiled step on the GPU: its fusion groups run as generated kernels (the same
    /// statements as the ops' kernels, compiled without contraction), its folds as the
    /// reductions; the values match the CPU's, and the GPU's own eager step bit for bit.
    #[test]
    fn gpu_compiled_fusion_groups_match_the_cpu_and_the_eager_gpu() {
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_compiled", &e),
        };
        let body = |a: &[Tensor]| -> Result<Vec<Tensor>, Error> {
            let (x, m) = (&a[0], &a[1]);
            let m2 = ops::add(m, &ops::multiply(&ops::subtract(x, m)?, &0.1)?)?;
            let y = ops::divide(&m2, &ops::add(&ops::sqrt(&ops::square(x)?)?, &1e-7)?)?;
            let loss = ops::reduce_sum(&ops::square(&ops::tanh(&y)?)?, Axes::All, false)?;
            Ok(vec![m2, y, loss])
        };
        for dt in [DType::F32, DType::F64] {
            let mut rng = gradtape::random::Generator::from_seed(5);
            let x = rng.normal(&[3000], 0.0, 1.0, dt).unwrap();
            let m = rng.normal(&[3000], 0.0, 1.0, dt).unwrap();
            let cpu = body(&[x.clone(), m.clone()]).unwrap();
            let (xg, mg) = (on(&x, g), on(&m, g));
            let eager = body(&[xg.clone(), mg.clone()]).unwrap();
            let f = gradtape::function(body);
            for _ in 0..2 {
                let got: Vec<Tensor> = f.call(&[&xg, &mg]).unwrap();
                for ((d, e), c) in got.iter().zip(&eager).zip(&cpu) {
                    assert_eq!(d.device(), g);
                    assert_eq!(values(d), values(e), "compiled vs eager on the GPU, {dt}");
                    close(
                        &values(d),
                        &values(c),
                        tol(dt),
                        &format!("compiled GPU vs CPU {dt}"),
                    );
                }
            }
            assert!(f.graphs()[0].fusion_groups() >= 1);
        }
    }

    #[test]
    fn gpu_elementwise_reductions_and_casts_match_the_cpu() {
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_elementwise", &e),
        };
        for dt in [DType::F32, DType::F64] {
            let host = gradtape::random::Generator::from_seed(7)
                .normal(&[4, 5, 6], 0.0, 1.0, dt)
                .unwrap();
            let row = Tensor::from_vec(vec![0.5f64, -2.0, 3.0, 1.5, -0.5, 2.5], &[6])
                .unwrap()
                .cast(dt)
                .unwrap();
            // A transposed view exercises the strided reader.
            let views = [
                host.clone(),
                ops::transpose(&host, Some(&[2, 0, 1])).unwrap(),
            ];
            for x in &views {
                let xg = on(x, g);
                assert_eq!(xg.device(), g);
                for (i, f) in UNARY.iter().enumerate() {
                    let (c, d) = (f(x).unwrap(), f(&xg).unwrap());
                    assert_eq!(d.device(), g);
                    close(
                        &values(&d),
                        &values(&c),
                        tol(dt),
                        &format!("unary #{i} {dt}"),
                    );
                }
                for (name, c, d) in [
                    (
                        "reduce_sum all",
                        ops::reduce_sum(x, Axes::All, false),
                        ops::reduce_sum(&xg, Axes::All, false),
                    ),
                    (
                        "reduce_sum 1",
                        ops::reduce_sum(x, 1, true),
                        ops::reduce_sum(&xg, 1, true),
                    ),
                    (
                        "reduce_max 0,2",
                        ops::reduce_max(x, vec![0, 2], false),
                        ops::reduce_max(&xg, vec![0, 2], false),
                    ),
                    (
                        "reduce_min -1",
                        ops::reduce_min(x, -1, false),
                        ops::reduce_min(&xg, -1, false),
                    ),
                    (
                        "cast",
                        x.cast(DType::I64).and_then(|t| t.cast(dt)),
                        xg.cast(DType::I64).and_then(|t| t.cast(dt)),
                    ),
                ] {
                    let (c, d) = (c.unwrap(), d.unwrap());
                    assert_eq!(c.shape(), d.shape(), "{name}");
                    close(&values(&d), &values(&c), 1e-5, &format!("{name} {dt}"));
                }
            }
            let (x, xg) = (&host, &on(&host, g));
            let rg = on(&row, g);
            for (name, c, d) in [
                ("add broadcast", ops::add(x, &row), ops::add(xg, &rg)),
                (
                    "multiply scalar",
                    ops::multiply(x, &2.5),
                    ops::multiply(xg, &2.5),
                ),
                (
                    "scalar - x",
                    ops::subtract(&1.0, x),
                    ops::subtract(&1.0, xg),
                ),
                ("divide", ops::divide(x, &row), ops::divide(xg, &rg)),
                ("maximum", ops::maximum(x, &row), ops::maximum(xg, &rg)),
                (
                    "greater",
                    ops::greater(x, &0.0).and_then(|t| t.cast(dt)),
                    ops::greater(xg, &0.0).and_then(|t| t.cast(dt)),
                ),
            ] {
                let (c, d) = (c.unwrap(), d.unwrap());
                close(&values(&d), &values(&c), tol(dt), &format!("{name} {dt}"));
            }
            // Selection, one_hot, concat, gather and the gradients of gather and slicing.
            let mask = ops::greater(x, &0.0).unwrap();
            let mask_g = on(&mask, g);
            let ids = Tensor::from_vec(vec![3i64, 0, 3, 1], &[4]).unwrap();
            let ids_g = on(&ids, g);
            for (name, c, d) in [
                (
                    "select",
                    ops::select(&mask, x, &0.0),
                    ops::select(&mask_g, xg, &0.0),
                ),
                (
                    "select scalar first",
                    ops::select(&mask, &-1.0, x),
                    ops::select(&mask_g, &-1.0, xg),
                ),
                ("concat", ops::concat(&[x, x], 2), ops::concat(&[xg, xg], 2)),
                (
                    "one_hot",
                    ops::one_hot(&ids, 5, 2.0, -1.0, dt),
                    ops::one_hot(&ids_g, 5, 2.0, -1.0, dt),
                ),
                (
                    "gather",
                    ops::gather(x, &ids, 1),
                    ops::gather(xg, &ids_g, 1),
                ),
                ("argmax", ops::argmax(x, 2), ops::argmax(xg, 2)),
                ("argmin", ops::argmin(x, 0), ops::argmin(xg, 0)),
                (
                    "reduce_any",
                    ops::reduce_any(&mask, 1, false).and_then(|t| t.cast(dt)),
                    ops::reduce_any(&mask_g, 1, false).and_then(|t| t.cast(dt)),
                ),
            ] {
                let (c, d) = (c.unwrap(), d.unwrap());
                assert_eq!(d.device(), g, "{name}");
                assert_eq!(c.shape(), d.shape(), "{name}");
                close(&values(&d), &values(&c), tol(dt), &format!("{name} {dt}"));
            }
            let grads = |x: &Tensor, ids: &Tensor| {
                let tape = GradientTape::new();
                tape.watch(x);
                let picked = ops::gather(x, ids, 1).unwrap();
                let part = x.slice(gradtape::s![1.., .., 2..]).unwrap();
                let y = ops::add(
                    &ops::reduce_sum(&ops::square(&picked).unwrap(), Axes::All, false).unwrap(),
                    &ops::reduce_sum(&ops::exp(&part).unwrap(), Axes::All, false).unwrap(),
                )
                .unwrap();
                let [g] = tape.gradient(&y, [x]).unwrap();
                g.unwrap()
            };
            let (c, d) = (grads(x, &ids), grads(xg, &ids_g));
            assert_eq!(d.device(), g);
            close(
                &values(&d),
                &values(&c),
                10.0 * tol(dt),
                &format!("gather+slice gradient {dt}"),
            );
            // Two tensor operands on different devices: an error naming both.
            let e = ops::add(xg, &row).unwrap_err();
            assert!(
                e.to_string().contains("cpu") && e.to_string().contains("cuda:0"),
                "{e}"
            );
        }
    }

    #[test]
    fn gpu_matmul_matches_the_cpu() {
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_matmul", &e),
        };
        let mut rng = gradtape::random::Generator::from_seed(3);
        for dt in [DType::F32, DType::F64] {
            let a = rng.normal(&[3, 7, 5], 0.0, 1.0, dt).unwrap();
            let b = rng.normal(&[5, 4], 0.0, 1.0, dt).unwrap();
            let w = rng.normal(&[3, 4, 5], 0.0, 1.0, dt).unwrap();
            let cases: Vec<(&str, Tensor, Tensor, bool, bool)> = vec![
                (
                    "2-D",
                    ops::reshape(&a, &[21, 5]).unwrap(),
                    b.clone(),
                    false,
                    false,
                ),
                ("batched, broadcast b", a.clone(), b.clone(), false, false),
                ("transpose_b", a.clone(), w.clone(), false, true),
                ("transpose_a", w.clone(), a.clone(), true, true),
            ];
            for (name, x, y, ta, tb) in cases {
                let c = ops::matmul_transposed(&x, &y, ta, tb).unwrap();
                let d = ops::matmul_transposed(&on(&x, g), &on(&y, g), ta, tb).unwrap();
                assert_eq!(d.device(), g);
                assert_eq!(c.shape(), d.shape(), "{name}");
                close(
                    &values(&d),
                    &values(&c),
                    10.0 * tol(dt),
                    &format!("{name} {dt}"),
                );
            }
        }
    }

    /// One memory API for every device: `memory::live_bytes_on(cuda:0)` and `peak_bytes_on`
    /// count a GPU tensor's bytes while it lives, as `cuda::live_bytes` does for all GPUs. The
    /// counters are process-wide: the exact before/after checks run where the tests run one
    /// at a time (the GPU check, `tools/gpu/check.sh`, which sets `GRADTAPE_REQUIRE_GPU`).
    #[test]
    fn gpu_memory_is_counted_per_device() {
        use gradtape::memory;
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_memory", &e),
        };
        let alone = std::env::var_os("GRADTAPE_REQUIRE_GPU").is_some();
        let (gpu_before, all_before) = (memory::live_bytes_on(g), cuda::live_bytes());
        memory::reset_peak_bytes_on(g);
        let t = Tensor::zeros(&[1000], DType::F64)
            .unwrap()
            .to_device(g)
            .unwrap();
        assert!(memory::live_bytes_on(g) >= 8000);
        assert!(memory::peak_bytes_on(g) >= 8000);
        assert!(cuda::live_bytes() >= 8000);
        if alone {
            assert_eq!(memory::live_bytes_on(g), gpu_before + 8000);
            assert_eq!(cuda::live_bytes(), all_before + 8000);
        }
        drop(t);
        if alone {
            assert_eq!(memory::live_bytes_on(g), gpu_before);
            assert_eq!(cuda::live_bytes(), all_before);
        }
    }

    /// An 8-16-1 MLP from a fixed seed, made on the default device.
    fn small_mlp(hidden: layers::Activation) -> layers::Sequential {
        let mut rng = gradtape::random::Generator::from_seed(11);
        let dense = |name, i, o, a, rng: &mut _| {
            Box::new(layers::Dense::new(name, i, o, a, DType::F32, rng).unwrap()) as Box<dyn Layer>
        };
        layers::Sequential::new(vec![
            dense("h", 8, 16, hidden, &mut rng),
            dense("out", 16, 1, layers::Activation::Linear, &mut rng),
        ])
    }

    /// A training step launched as one CUDA graph (`Function::cuda_graph`) against the same
    /// step run kernel by kernel: the same losses and variables bit for bit (the same kernels
    /// in the same order), a variable assigned between calls seen, a value taken from a
    /// variable before a call left as it was, and a second recorded function launched in
    /// between. The rules of `function/recorded.rs` give the launches: call 1 traces, 2 runs
    /// kernel by kernel, 3 records and launches, 4 launches; an assign outside before call 5
    /// moves a weight to a new buffer (5 and 6 kernel by kernel, 7 records again); a value
    /// held across call 8 makes it kernel by kernel (9 too, 10 records and launches): four
    /// launches. (If cuBLAS picked another algorithm for the recording's handle, the bits
    /// would differ: that is a finding to act on, not a tolerance to add.)
    #[test]
    fn gpu_step_launched_as_a_cuda_graph_equals_the_kernel_by_kernel_step() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_cuda_graph", &e),
        };
        let bits = |t: &Tensor| -> Vec<u64> { values(t).iter().map(|v| v.to_bits()).collect() };
        let build = || small_mlp(layers::Activation::Tanh);
        let step = |model: &layers::Sequential, opt: &RefCell<optimizers::Adam>, a: &[Tensor]| {
            let tape = GradientTape::new();
            let pred = model.call(&a[0], true)?;
            let err = ops::square(&ops::subtract(&pred, &a[1])?)?;
            let loss = ops::reduce_mean(&err, Axes::All, false)?;
            let vars = model.trainable_variables();
            let grads = tape.gradient(&loss, &vars)?;
            opt.borrow_mut()
                .apply_gradients(grads.into_iter().zip(&vars))?;
            Ok::<Tensor, Error>(loss)
        };
        let make = |graph: bool| {
            let model = Rc::new(with_device(g, build).unwrap());
            let opt = Rc::new(RefCell::new(optimizers::Adam::new(1e-2)));
            let f = gradtape::function({
                let (model, opt) = (model.clone(), opt.clone());
                move |a: &[Tensor]| step(&model, &opt, a)
            })
            .cuda_graph(graph);
            (model, opt, f)
        };
        let (m1, o1, f1) = make(false);
        let (m2, o2, f2) = make(true);
        let twice = gradtape::function(|a: &[Tensor]| ops::multiply(&ops::exp(&a[0])?, &2.0))
            .cuda_graph(true);
        let mut rng = gradtape::random::Generator::from_seed(5);
        let batches: Vec<(Tensor, Tensor)> = (0..3)
            .map(|_| {
                let x = rng.normal(&[32, 8], 0.0, 1.0, DType::F32).unwrap();
                let y = rng.normal(&[32, 1], 0.0, 1.0, DType::F32).unwrap();
                (on(&x, g), on(&y, g))
            })
            .collect();
        with_device(g, || {
            for call in 1..=10 {
                // batches repeat (the same tensor again: no copy in) and change (copied in)
                let (x, y) = &batches[call % 3];
                let want: Tensor = f1.call(&[x, y]).unwrap();
                let held = (call == 8).then(|| m2.trainable_variables()[0].value());
                let before = held.as_ref().map(values);
                let got: Tensor = f2.call(&[x, y]).unwrap();
                assert_eq!(bits(&got), bits(&want), "loss at call {call}");
                if let (Some(h), Some(b)) = (&held, before) {
                    assert_eq!(values(h), b, "a value taken before call {call} changed");
                }
                let e: Tensor = twice.call(&[x]).unwrap();
                let e_want = ops::multiply(&ops::exp(x).unwrap(), &2.0).unwrap();
                assert_eq!(
                    bits(&e),
                    bits(&e_want),
                    "the second function at call {call}"
                );
                if call == 4 {
                    let w = on(&Tensor::full(&[8, 16], 0.05, DType::F32).unwrap(), g);
                    for m in [&m1, &m2] {
                        m.trainable_variables()[0].assign(&w).unwrap();
                    }
                }
            }
        })
        .unwrap();
        let vars = |m: &layers::Sequential, o: &RefCell<optimizers::Adam>| {
            let mut v = m.variables();
            v.extend(o.borrow().variables());
            v
        };
        let (a, b) = (vars(&m1, &o1), vars(&m2, &o2));
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(q.value().device(), g);
            assert_eq!(bits(&p.value()), bits(&q.value()), "{:?}", p.name());
        }
        let graph = &f2.graphs()[0];
        assert_eq!(graph.cuda_graph_refusal(), None);
        assert_eq!(
            graph.cuda_graph_launches(),
            4,
            "launches of the training step"
        );
        assert_eq!(f1.graphs()[0].cuda_graph_launches(), 0);
        assert_eq!(twice.graphs()[0].cuda_graph_launches(), 8);
    }

    /// A small MLP trained one step on the CPU and on the GPU from the same weights: the same loss,
    /// the same gradients, the same updated weights; and the GPU step copies nothing between host
    /// and device but the loss it reads back.
    #[test]
    fn gpu_training_step_matches_the_cpu_and_copies_only_the_loss() {
        let g = match gpu() {
            Ok(g) => g,
            Err(e) => return skip("gpu_training_step", &e),
        };
        let build = || small_mlp(layers::Activation::Relu);
        let mut rng = gradtape::random::Generator::from_seed(5);
        let x = rng.normal(&[32, 8], 0.0, 1.0, DType::F32).unwrap();
        let y = rng.normal(&[32, 1], 0.0, 1.0, DType::F32).unwrap();
        let step =
            |model: &layers::Sequential, opt: &mut optimizers::Adam, x: &Tensor, y: &Tensor| {
                let tape = GradientTape::new();
                let pred = model.call(x, true).unwrap();
                let err = ops::square(&ops::subtract(&pred, y).unwrap()).unwrap();
                let loss = ops::reduce_mean(&err, Axes::All, false).unwrap();
                let vars = model.trainable_variables();
                let grads = tape.gradient(&loss, &vars).unwrap();
                opt.apply_gradients(grads.clone().into_iter().zip(&vars))
                    .unwrap();
                (loss, grads)
            };
        let cpu_model = build();
        let gpu_model = with_device(g, build).unwrap();
        assert!(gpu_model
            .trainable_variables()
            .iter()
            .all(|v| v.value().device() == g));
        let (mut oc, mut og) = (optimizers::Adam::new(1e-2), optimizers::Adam::new(1e-2));
        let (xg, yg) = (on(&x, g), on(&y, g));
        // One warm-up step each (kernels compile, optimizer slots appear).
        step(&cpu_model, &mut oc, &x, &y);
        step(&gpu_model, &mut og, &xg, &yg);
        let (lc, gc) = step(&cpu_model, &mut oc, &x, &y);
        let copies = cuda::host_device_copies();
        let (lg, gg) = step(&gpu_model, &mut og, &xg, &yg);
        let loss = lg.item().unwrap();
        assert_eq!(
            cuda::host_device_copies() - copies,
            1,
            "copies in a GPU step besides the loss"
        );
        close(&[loss], &[lc.item().unwrap()], 1e-4, "loss");
        for (i, (c, d)) in gc.iter().zip(&gg).enumerate() {
            let (c, d) = (c.as_ref().unwrap(), d.as_ref().unwrap());
            assert_eq!(d.device(), g);
            close(&values(d), &values(c), 1e-4, &format!("gradient {i}"));
        }
        for (c, d) in cpu_model
            .trainable_variables()
            .iter()
            .zip(gpu_model.trainable_variables())
        {
            close(
                &values(&d.value()),
                &values(&c.value()),
                1e-4,
                "updated weights",
            );
        }
        // A checkpoint saved from the GPU restores into the CPU model and back, each variable
        // staying on its own device; a host value assigned to a GPU variable is refused.
        let path =
            std::env::temp_dir().join(format!("gradtape-cuda-{}.safetensors", std::process::id()));
        let (gv, cv) = (
            gpu_model.trainable_variables(),
            cpu_model.trainable_variables(),
        );
        gradtape::checkpoint::save(&path, &gv, &Default::default()).unwrap();
        gradtape::checkpoint::restore(&path, &cv).unwrap();
        gradtape::checkpoint::restore(&path, &gv).unwrap();
        let _ = std::fs::remove_file(&path);
        for (c, d) in cv.iter().zip(&gv) {
            assert_eq!((c.value().device(), d.value().device()), (Device::Cpu, g));
            assert_eq!(values(&c.value()), values(&d.value()));
        }
        let e = gv[0].assign(&cv[0].value()).unwrap_err();
        assert!(
            e.to_string().contains("cuda:0") && e.to_string().contains("cpu"),
            "{e}"
        );
    }
}
