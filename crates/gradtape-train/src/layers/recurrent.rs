//! Keras's recurrent layers: `SimpleRNN`, `LSTM` and `GRU` (both `reset_after` variants),
//! with Keras's weight layout (`kernel`, `recurrent_kernel`, `bias`; gates `i, f, c, o` for
//! the LSTM, `z, r, h` for the GRU), defaults and numbers.
//!
//! A sequence is a loop over its time steps, and the tape differentiates it as any loop: no
//! rule of its own. What makes it fast is done once per sequence, not per step: the input
//! projection of every step is one product (`[batch · time, input] × [input, gates]`), split
//! into steps as views; each step then pays one `[batch, units] × [units, gates]` product and
//! its gate arithmetic.

use super::{dropout_mask, float_dtype, weight, Initializer, Layer};

use std::sync::Mutex;

use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// Which recurrence a [`Recurrent`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// `h = tanh(x W + h U + b)`.
    Simple,
    /// Keras's LSTM: gates `i, f, c, o`.
    Lstm,
    /// Keras's GRU: gates `z, r, h`; `reset_after` applies the reset gate after the recurrent
    /// product (TensorFlow 2's default, cuDNN's form, with a second, recurrent bias).
    Gru { reset_after: bool },
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Simple => 1,
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }
    /// How many state tensors a step carries (`h`, and the LSTM's `c`).
    fn states(self) -> usize {
        match self {
            Cell::Lstm => 2,
            _ => 1,
        }
    }
    fn class_name(self) -> &'static str {
        match self {
            Cell::Simple => "SimpleRNN",
            Cell::Lstm => "LSTM",
            Cell::Gru { .. } => "GRU",
        }
    }
}

/// What every recurrent layer holds: its weights, its sizes and Keras's options (public only
/// as [`RecurrentLayer`]'s hidden conversion; nothing of it is reachable).
pub struct Recurrent {
    name: String,
    cell: Cell,
    input_dim: usize,
    units: usize,
    kernel: Variable,
    recurrent_kernel: Variable,
    bias: Variable,
    return_sequences: bool,
    go_backwards: bool,
    /// Keras's `dropout` and `recurrent_dropout` rates (training only), one mask per sequence.
    dropout: f64,
    recurrent_dropout: f64,
    /// The layer's own generator for its dropout masks, seeded from the one that made it.
    rng: Mutex<Generator>,
    /// Keras's `stateful`: the last call's final states, where the next call starts.
    stateful: bool,
    carried: Mutex<Option<Vec<Tensor>>>,
}

impl Recurrent {
    fn new(
        cell: Cell,
        name: &str,
        input_dim: usize,
        units: usize,
        dtype: DType,
        rng: &mut Generator,
    ) -> Result<Recurrent> {
        let class = cell.class_name();
        float_dtype(class, dtype)?;
        if input_dim == 0 || units == 0 {
            return Err(Error::arg(
                class,
                format!("layer {name:?}: sizes must be at least 1, got input {input_dim}, units {units}"),
            ));
        }
        let g = cell.gates() * units;
        let kernel = Initializer::GlorotUniform.sample(input_dim, g, dtype, rng)?;
        let recurrent = orthogonal(units, g, dtype, rng)?;
        let bias = match cell {
            // unit_forget_bias: the forget gate's bias starts at 1
            Cell::Lstm => {
                let v: Vec<f64> = (0..g)
                    .map(|k| {
                        if (units..2 * units).contains(&k) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                ops::cast(&Tensor::from_vec(v, &[g])?, dtype)?
            }
            // the input bias and the recurrent bias, stacked (Keras's shape)
            Cell::Gru { reset_after: true } => Tensor::zeros(&[2, g], dtype)?,
            _ => Tensor::zeros(&[g], dtype)?,
        };
        Ok(Recurrent {
            name: name.to_string(),
            cell,
            input_dim,
            units,
            kernel: weight(name, "kernel", kernel, true),
            recurrent_kernel: weight(name, "recurrent_kernel", recurrent, true),
            bias: weight(name, "bias", bias, true),
            return_sequences: false,
            go_backwards: false,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            rng: Mutex::new(Generator::from_seed(rng.next_u64())),
            stateful: false,
            carried: Mutex::new(None),
        })
    }

    fn error(&self, what: String) -> Error {
        Error::shape(
            self.cell.class_name(),
            format!("layer {:?}: {what}", self.name),
        )
    }

    /// Zeros for each state, or the given ones checked.
    fn initial_states(
        &self,
        batch: usize,
        dtype: DType,
        given: Option<&[Tensor]>,
    ) -> Result<Vec<Tensor>> {
        let want = self.cell.states();
        if given.is_none() && self.stateful {
            let carried = self.carried.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = carried.as_ref() {
                if s[0].shape()[0] != batch {
                    return Err(self.error(format!(
                        "this stateful layer carries states of batch {}, got a batch of \
                         {batch} (call reset_states() to start over)",
                        s[0].shape()[0]
                    )));
                }
                return Ok(s.clone());
            }
        }
        match given {
            None => (0..want)
                .map(|_| Tensor::zeros(&[batch, self.units], dtype))
                .collect(),
            Some(s) => {
                if s.len() != want {
                    return Err(self.error(format!(
                        "expected {want} initial state tensor(s), got {}",
                        s.len()
                    )));
                }
                for t in s {
                    if t.shape() != [batch, self.units] || t.dtype() != dtype {
                        return Err(self.error(format!(
                            "initial states must be {dtype} [{batch}, {}], got {} {:?}",
                            self.units,
                            t.dtype(),
                            t.shape()
                        )));
                    }
                }
                Ok(s.to_vec())
            }
        }
    }

    /// `[batch, time, features]` of an input that fits the layer, or the error naming it.
    fn check_input(&self, x: &Tensor) -> Result<[usize; 3]> {
        let [batch, time, features] = match *x.shape() {
            [b, t, f] => [b, t, f],
            _ => {
                return Err(self.error(format!(
                    "expected input [batch, time, {}], got {:?}",
                    self.input_dim,
                    x.shape()
                )))
            }
        };
        if features != self.input_dim || time == 0 {
            return Err(self.error(format!(
                "expected input [batch, time ≥ 1, {}], got {:?}",
                self.input_dim,
                x.shape()
            )));
        }
        if x.dtype() != self.kernel.dtype() {
            return Err(Error::dtype(
                self.cell.class_name(),
                format!(
                    "layer {:?} holds {} weights, got a {} input",
                    self.name,
                    self.kernel.dtype(),
                    x.dtype()
                ),
            ));
        }
        Ok([batch, time, features])
    }

    /// The input projections of every step, one product: `[batch, time, gates · units]`
    /// (with the bias that belongs to the input side), then one view per step in the order
    /// they run.
    fn projections(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let [batch, time, features] = self.check_input(x)?;
        let g = self.cell.gates() * self.units;
        let flat = ops::reshape(x, &[(batch * time) as isize, features as isize])?;
        let mut proj = ops::matmul(&flat, &self.kernel)?;
        proj = match self.cell {
            Cell::Gru { reset_after: true } => ops::add(
                &proj,
                &ops::squeeze(&ops::slice(&self.bias, &[0, 0], &[1, -1])?, &[0])?,
            )?,
            _ => ops::add(&proj, &self.bias)?,
        };
        let proj = ops::reshape(&proj, &[batch as isize, time as isize, g as isize])?;
        let mut steps: Vec<Tensor> = ops::split(&proj, time, 1)?
            .into_iter()
            .map(|s| ops::reshape(&s, &[batch as isize, g as isize]))
            .collect::<Result<_>>()?;
        if self.go_backwards {
            steps.reverse();
        }
        Ok(steps)
    }

    /// One step from `xp` (this step's input projection, bias included) and the states;
    /// `rec_mask` is the recurrent dropout's, applied to `h` where it enters a product.
    fn step(
        &self,
        xp: &Tensor,
        states: &[Tensor],
        rec_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        let h0 = &states[0];
        let dropped;
        let h = match rec_mask {
            Some(m) => {
                dropped = ops::multiply(h0, m)?;
                &dropped
            }
            None => h0,
        };
        let u = self.units as isize;
        match self.cell {
            Cell::Simple => {
                let z = ops::add(xp, &ops::matmul(h, &self.recurrent_kernel)?)?;
                Ok(vec![ops::tanh(&z)?])
            }
            Cell::Lstm => {
                let z = ops::add(xp, &ops::matmul(h, &self.recurrent_kernel)?)?;
                let g = ops::split(&z, 4, 1)?;
                let (i, f) = (ops::sigmoid(&g[0])?, ops::sigmoid(&g[1])?);
                let (cand, o) = (ops::tanh(&g[2])?, ops::sigmoid(&g[3])?);
                let c = ops::add(&ops::multiply(&f, &states[1])?, &ops::multiply(&i, &cand)?)?;
                let h = ops::multiply(&o, &ops::tanh(&c)?)?;
                Ok(vec![h, c])
            }
            Cell::Gru { reset_after } => {
                let x = ops::split(xp, 3, 1)?;
                // the update gate's recurrent term, and the candidate's (reset applied)
                let (rz, rh) = if reset_after {
                    let rb = ops::squeeze(&ops::slice(&self.bias, &[1, 0], &[1, -1])?, &[0])?;
                    let inner = ops::add(&ops::matmul(h, &self.recurrent_kernel)?, &rb)?;
                    let rec = ops::split(&inner, 3, 1)?;
                    let r = ops::sigmoid(&ops::add(&x[1], &rec[1])?)?;
                    (rec[0].clone(), ops::multiply(&r, &rec[2])?)
                } else {
                    let uzr = ops::slice(&self.recurrent_kernel, &[0, 0], &[-1, 2 * u])?;
                    let uh = ops::slice(&self.recurrent_kernel, &[0, 2 * self.units], &[-1, u])?;
                    let rec = ops::split(&ops::matmul(h, &uzr)?, 2, 1)?;
                    let r = ops::sigmoid(&ops::add(&x[1], &rec[1])?)?;
                    (rec[0].clone(), ops::matmul(&ops::multiply(&r, h)?, &uh)?)
                };
                let z = ops::sigmoid(&ops::add(&x[0], &rz)?)?;
                let cand = ops::tanh(&ops::add(&x[2], &rh)?)?;
                // h = z h₋₁ + (1 - z) ĥ (the state itself, not its dropped-out copy)
                let keep = ops::multiply(&z, h0)?;
                let new = ops::multiply(&ops::subtract(&1.0, &z)?, &cand)?;
                Ok(vec![ops::add(&keep, &new)?])
            }
        }
    }

    /// Checks a `[batch, time]` mask and gives one `[batch, 1]` column per step, in the order
    /// the steps run.
    fn mask_steps(&self, mask: &Tensor, x: &Tensor) -> Result<Vec<Tensor>> {
        let (batch, time) = (x.shape()[0], x.shape()[1]);
        if mask.shape() != [batch, time] || mask.dtype() != DType::Bool {
            return Err(self.error(format!(
                "expected a bool mask [{batch}, {time}] for input {:?}, got {} {:?}",
                x.shape(),
                mask.dtype(),
                mask.shape()
            )));
        }
        let mut steps = ops::split(mask, time, 1)?;
        if self.go_backwards {
            steps.reverse();
        }
        Ok(steps)
    }

    /// The output (the last `h`, or every step's with `return_sequences`, in the order the
    /// steps ran) and the final states. Where `mask` is false, a step keeps the states it
    /// was given and repeats the previous output (zeros before the first), as Keras's masked
    /// recurrence does; `zero_masked` gives zeros there instead (Keras's
    /// `zero_output_for_mask`, which `Bidirectional` sets with `return_sequences`).
    fn run(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        initial: Option<&[Tensor]>,
        zero_masked: bool,
        training: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let [batch, _, _] = self.check_input(x)?;
        // one mask per sequence, the same at every step (Keras's)
        let steps = match training && self.dropout > 0.0 {
            true => {
                let m = dropout_mask(&self.rng, &[batch, self.input_dim], self.dropout, x.dtype())?;
                self.projections(&ops::multiply(x, &ops::expand_dims(&m, 1)?)?)?
            }
            false => self.projections(x)?,
        };
        let rec_mask = match training && self.recurrent_dropout > 0.0 {
            true => Some(dropout_mask(
                &self.rng,
                &[batch, self.units],
                self.recurrent_dropout,
                x.dtype(),
            )?),
            false => None,
        };
        let masks = mask.map(|m| self.mask_steps(m, x)).transpose()?;
        let mut states = self.initial_states(x.shape()[0], x.dtype(), initial)?;
        let mut outputs = Vec::with_capacity(if self.return_sequences {
            steps.len()
        } else {
            0
        });
        let mut last: Option<Tensor> = None;
        for (t, xp) in steps.iter().enumerate() {
            let new = self.step(xp, &states, rec_mask.as_ref())?;
            let out = match &masks {
                None => {
                    states = new;
                    states[0].clone()
                }
                Some(m) => {
                    let keep = &m[t];
                    let prev = match (&last, zero_masked) {
                        (Some(p), false) => p.clone(),
                        _ => Tensor::zeros_like(&new[0])?,
                    };
                    let out = ops::select(keep, &new[0], &prev)?;
                    states = new
                        .iter()
                        .zip(&states)
                        .map(|(n, o)| ops::select(keep, n, o))
                        .collect::<Result<_>>()?;
                    out
                }
            };
            if self.return_sequences {
                outputs.push(out.clone());
            }
            last = Some(out);
        }
        let out = match self.return_sequences {
            true => ops::stack(&outputs, 1)?,
            false => last.expect("at least one step"),
        };
        if self.stateful {
            // carried as values: no gradient flows into the previous call, as Keras's
            // state variables give none
            let kept = states
                .iter()
                .map(ops::stop_gradient)
                .collect::<Result<_>>()?;
            *self.carried.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept);
        }
        Ok((out, states))
    }
}

/// Keras's `Orthogonal` initializer's distribution: a matrix with orthonormal rows or columns,
/// uniformly distributed (Haar). Keras takes the Q of a Gaussian matrix's QR with R's diagonal
/// made positive; here the same Q is drawn directly (Stewart 1980, LAPACK's `dlaror`): the
/// Householder reflections that QR would find for a Gaussian matrix are Gaussian themselves,
/// so they are drawn and applied to the identity's first columns. No matrix is factored.
fn orthogonal(rows: usize, cols: usize, dtype: DType, rng: &mut Generator) -> Result<Tensor> {
    let (n, k) = (rows.max(cols), rows.min(cols));
    // Q (n×k), row-major, starting as the identity's first k columns
    let mut q = vec![0.0f64; n * k];
    for j in 0..k {
        q[j * k + j] = 1.0;
    }
    // reflections j = k-1 down to 0, each acting on rows j.. (Q = H₀ H₁ ... H_{k-1} I)
    let reflectors: Vec<(Vec<f64>, f64)> = (0..k)
        .map(|j| {
            let mut v: Vec<f64> = (j..n).map(|_| rng.next_normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            // R's diagonal entry is -sign(x₀)·|x|; Keras makes it positive
            let sign = if v[0] >= 0.0 { 1.0 } else { -1.0 };
            v[0] += sign * norm;
            (v, -sign)
        })
        .collect();
    for (j, (v, _)) in reflectors.iter().enumerate().rev() {
        let vv: f64 = v.iter().map(|x| x * x).sum();
        if vv == 0.0 {
            continue;
        }
        // columns before j are still the identity's, zero on rows j..: only j.. change;
        // w = vᵀ Q[j.., j..], then Q[j.., j..] -= (2 / vᵀv) v w, a row at a time
        let mut w = vec![0.0f64; k - j];
        for (i, vi) in v.iter().enumerate() {
            let row = &q[(j + i) * k + j..(j + i + 1) * k];
            for (wc, qc) in w.iter_mut().zip(row) {
                *wc += vi * qc;
            }
        }
        let scale = 2.0 / vv;
        for (i, vi) in v.iter().enumerate() {
            let row = &mut q[(j + i) * k + j..(j + i + 1) * k];
            for (qc, wc) in row.iter_mut().zip(&w) {
                *qc -= scale * vi * wc;
            }
        }
    }
    for (j, (_, d)) in reflectors.iter().enumerate() {
        for i in 0..n {
            q[i * k + j] *= d;
        }
    }
    let q = Tensor::from_vec(q, &[n, k])?;
    let q = if rows < cols {
        ops::transpose(&q, None)?
    } else {
        q
    };
    ops::cast(&q, dtype)
}

macro_rules! recurrent_layer {
    ($(#[$doc:meta])* $name:ident, $cell:expr) => {
        $(#[$doc])*
        pub struct $name(Recurrent);

        impl $name {
            /// A layer of `units` over inputs of `input_dim` features, with Keras's
            /// initializers: a Glorot-uniform kernel, an orthogonal recurrent kernel, a zero
            /// bias (the LSTM's forget gate's at 1), and the GRU's `reset_after`.
            ///
            /// # Errors
            /// When `dtype` is not float or a size is 0.
            pub fn new(
                name: &str,
                input_dim: usize,
                units: usize,
                dtype: DType,
                rng: &mut Generator,
            ) -> Result<$name> {
                Recurrent::new($cell, name, input_dim, units, dtype, rng).map($name)
            }
            /// Builder: give every step's output (`[batch, time, units]`) instead of the last
            /// (Keras's `return_sequences`).
            pub fn return_sequences(mut self, on: bool) -> Self {
                self.0.return_sequences = on;
                self
            }
            /// Builder: Keras's `dropout` (of the inputs) and `recurrent_dropout` (of the
            /// state where it enters the recurrent product), while training only
            /// (`Layer::call(x, true)`); one mask per sequence, the same at every step, as
            /// Keras draws them.
            ///
            /// # Errors
            /// When a rate is not in `[0, 1)`.
            pub fn dropout(mut self, dropout: f64, recurrent_dropout: f64) -> Result<Self> {
                for r in [dropout, recurrent_dropout] {
                    if !(0.0..1.0).contains(&r) {
                        return Err(self.0.error(format!("dropout rate {r} is not in [0, 1)")));
                    }
                }
                self.0.dropout = dropout;
                self.0.recurrent_dropout = recurrent_dropout;
                Ok(self)
            }
            /// Builder: Keras's `stateful`: each call starts from the last call's final
            /// states (as values: no gradient flows back into the previous call) instead of
            /// zeros, until [`Self::reset_states`]; the batch size must stay the same.
            pub fn stateful(mut self, on: bool) -> Self {
                self.0.stateful = on;
                self
            }
            /// Forgets the carried states of a stateful layer: the next call starts from
            /// zeros (Keras's `reset_states`).
            pub fn reset_states(&self) {
                *self.0.carried.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            /// Builder: run the sequence from its last step to its first (Keras's
            /// `go_backwards`; with `return_sequences`, the outputs come in that order too).
            pub fn go_backwards(mut self, on: bool) -> Self {
                self.0.go_backwards = on;
                self
            }
            /// The output and the final states (Keras's `return_state`: `h`, and `c` for the
            /// LSTM), from `initial_state` (zeros when `None`).
            ///
            /// # Errors
            /// When `x` is not `[batch, time ≥ 1, input_dim]` of the layer's dtype, or the
            /// initial states are not one `[batch, units]` tensor per state.
            pub fn call_with_state(
                &self,
                x: &Tensor,
                initial_state: Option<&[Tensor]>,
            ) -> Result<(Tensor, Vec<Tensor>)> {
                self.0.run(x, None, initial_state, false, false)
            }
            /// [`Self::call_with_state`] over padded sequences: where `mask` (`[batch, time]`,
            /// bool; [`Masking::compute_mask`](super::Masking::compute_mask) or
            /// [`Embedding::compute_mask`](super::Embedding::compute_mask) make one) is false,
            /// the step keeps its states and repeats the previous output (zeros before the
            /// first), as Keras's masked layers do.
            ///
            /// # Errors
            /// As [`Self::call_with_state`], and when the mask is not a bool `[batch, time]`.
            pub fn call_with_mask(
                &self,
                x: &Tensor,
                mask: Option<&Tensor>,
                initial_state: Option<&[Tensor]>,
            ) -> Result<(Tensor, Vec<Tensor>)> {
                self.0.run(x, mask, initial_state, false, false)
            }
            /// One step of the cell, for loops of your own (Keras's cell classes):
            /// `x` is `[batch, input_dim]`, `states` as [`Self::call_with_state`] returns
            /// them; gives the new states (the first is the step's output).
            ///
            /// # Errors
            /// As [`Self::call_with_state`].
            pub fn cell(&self, x: &Tensor, states: &[Tensor]) -> Result<Vec<Tensor>> {
                let x3 = ops::expand_dims(x, 1)?;
                let xp = self.0.projections(&x3)?.remove(0);
                let batch = x.shape()[0];
                let states = self.0.initial_states(batch, x.dtype(), Some(states))?;
                self.0.step(&xp, &states, None)
            }
            /// The input projection (`{name}/kernel`, `[input_dim, gates · units]`).
            pub fn kernel(&self) -> &Variable {
                &self.0.kernel
            }
            /// The recurrent projection (`{name}/recurrent_kernel`, `[units, gates · units]`).
            pub fn recurrent_kernel(&self) -> &Variable {
                &self.0.recurrent_kernel
            }
            /// The bias (`{name}/bias`).
            pub fn bias(&self) -> &Variable {
                &self.0.bias
            }
        }

        impl sealed::Sealed for $name {}
        impl RecurrentLayer for $name {
            fn into_recurrent(self) -> Recurrent {
                self.0
            }
        }

        impl Layer for $name {
            fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
                Ok(self.0.run(x, None, None, false, training)?.0)
            }
            fn trainable_variables(&self) -> Vec<Variable> {
                vec![
                    self.0.kernel.clone(),
                    self.0.recurrent_kernel.clone(),
                    self.0.bias.clone(),
                ]
            }
            fn name(&self) -> &str {
                &self.0.name
            }
            fn class_name(&self) -> &'static str {
                $cell.class_name()
            }
        }
    };
}

/// The recurrent layers [`Bidirectional`] can wrap: [`SimpleRNN`], [`LSTM`], [`GRU`].
pub trait RecurrentLayer: Layer + sealed::Sealed {
    #[doc(hidden)]
    fn into_recurrent(self) -> Recurrent;
}

mod sealed {
    pub trait Sealed {}
}

recurrent_layer!(
    /// Keras's `SimpleRNN`: `h = tanh(x W + h U + b)` over `[batch, time, input_dim]` inputs.
    ///
    /// ```
    /// use gradtape::layers::{Layer, SimpleRNN};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let rnn = SimpleRNN::new("rnn", 3, 5, gradtape::DType::F32, &mut rng)?.return_sequences(true);
    /// let y = rnn.call(&gradtape::Tensor::ones(&[2, 7, 3], gradtape::DType::F32)?, false)?;
    /// assert_eq!(y.shape(), &[2, 7, 5]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    SimpleRNN,
    Cell::Simple
);

recurrent_layer!(
    /// Keras's `LSTM`: gates `i, f, c, o` in the kernels' columns, sigmoid gates and tanh
    /// activations, the forget gate's bias starting at 1 (`unit_forget_bias`), the recurrent
    /// kernel orthogonal; states `[h, c]`.
    ///
    /// ```
    /// use gradtape::layers::{Layer, LSTM};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let lstm = LSTM::new("lstm", 3, 4, gradtape::DType::F32, &mut rng)?;
    /// let x = gradtape::Tensor::ones(&[2, 6, 3], gradtape::DType::F32)?;
    /// let (y, states) = lstm.call_with_state(&x, None)?;
    /// assert_eq!((y.shape(), states.len()), (&[2, 4][..], 2));
    /// assert_eq!(lstm.kernel().shape(), &[3, 16]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    LSTM,
    Cell::Lstm
);

recurrent_layer!(
    /// Keras's `GRU`: gates `z, r, h`; TensorFlow 2's default `reset_after` (the reset gate
    /// applied after the recurrent product, with a second bias for it: `bias` is
    /// `[2, 3 · units]`), or the original form with [`GRU::reset_after`]`(false)` (`bias`
    /// `[3 · units]`).
    ///
    /// ```
    /// use gradtape::layers::{Layer, GRU};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let gru = GRU::new("gru", 3, 4, gradtape::DType::F64, &mut rng)?;
    /// assert_eq!(gru.bias().shape(), &[2, 12]);
    /// let y = gru.call(&gradtape::Tensor::ones(&[2, 5, 3], gradtape::DType::F64)?, false)?;
    /// assert_eq!(y.shape(), &[2, 4]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    GRU,
    Cell::Gru { reset_after: true }
);

impl GRU {
    /// Builder: Keras's `reset_after` (`false`: the reset gate scales the state before the
    /// recurrent product, one bias of `3 · units`); the bias is made again (zeros) for its
    /// new shape.
    ///
    /// # Errors
    /// Never for a layer made by [`GRU::new`]; kept fallible as every constructor is.
    pub fn reset_after(mut self, on: bool) -> Result<GRU> {
        let r = &mut self.0;
        r.cell = Cell::Gru { reset_after: on };
        let g = 3 * r.units;
        let shape: Vec<usize> = if on { vec![2, g] } else { vec![g] };
        r.bias = weight(
            &r.name,
            "bias",
            Tensor::zeros(&shape, r.kernel.dtype())?,
            true,
        );
        Ok(self)
    }
}

/// How [`Bidirectional`] joins its two directions' outputs (Keras's `merge_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MergeMode {
    /// Side by side on the last axis (Keras's default): `2 · units` features.
    #[default]
    Concat,
    /// Added.
    Sum,
    /// Multiplied.
    Mul,
    /// Averaged.
    Ave,
}

/// Keras's `Bidirectional`: the wrapped layer reads the sequence forwards, a copy with its
/// own weights (`backward_{name}`) reads it backwards, and their outputs are merged (with
/// `return_sequences`, the backward outputs are put back in time order first). Weights and
/// states come forward layer first, as Keras orders them.
///
/// ```
/// use gradtape::layers::{Bidirectional, Layer, MergeMode, LSTM};
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let lstm = LSTM::new("lstm", 3, 4, gradtape::DType::F32, &mut rng)?.return_sequences(true);
/// let bi = Bidirectional::new(lstm, MergeMode::Concat, &mut rng)?;
/// let y = bi.call(&gradtape::Tensor::ones(&[2, 6, 3], gradtape::DType::F32)?, false)?;
/// assert_eq!(y.shape(), &[2, 6, 8]);
/// assert_eq!(bi.trainable_variables().len(), 6);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Bidirectional {
    name: String,
    forward: Recurrent,
    backward: Recurrent,
    merge: MergeMode,
}

impl Bidirectional {
    /// Wraps `layer`; the backward copy gets fresh weights drawn from `rng` with Keras's
    /// initializers.
    ///
    /// # Errors
    /// Never for a layer made by its constructor; kept fallible as every constructor is.
    pub fn new(
        layer: impl RecurrentLayer,
        merge: MergeMode,
        rng: &mut Generator,
    ) -> Result<Bidirectional> {
        let forward = layer.into_recurrent();
        let name = format!("bidirectional_{}", forward.name);
        // the same cell (a GRU's reset_after with it), fresh weights
        let mut backward = Recurrent::new(
            forward.cell,
            &format!("backward_{}", forward.name),
            forward.input_dim,
            forward.units,
            forward.kernel.dtype(),
            rng,
        )?;
        backward.return_sequences = forward.return_sequences;
        backward.go_backwards = !forward.go_backwards;
        backward.dropout = forward.dropout;
        backward.recurrent_dropout = forward.recurrent_dropout;
        backward.stateful = forward.stateful;
        Ok(Bidirectional {
            name,
            forward,
            backward,
            merge,
        })
    }

    /// The merged output and the final states (forward's, then backward's), over padded
    /// sequences where `mask` is false (as the layers' `call_with_mask`), from
    /// `initial_state` (forward's then backward's; zeros when `None`).
    ///
    /// # Errors
    /// As the wrapped layer's `call_with_mask`, and when `initial_state` does not hold both
    /// directions' states.
    pub fn call_with_mask(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        initial_state: Option<&[Tensor]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.run(x, mask, initial_state, false)
    }

    fn run(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        initial_state: Option<&[Tensor]>,
        training: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let half = self.forward.cell.states();
        let (fi, bi) = match initial_state {
            None => (None, None),
            Some(s) if s.len() == 2 * half => (Some(&s[..half]), Some(&s[half..])),
            Some(s) => {
                return Err(self.forward.error(format!(
                    "Bidirectional expects {} initial state tensors (forward's, then \
                     backward's), got {}",
                    2 * half,
                    s.len()
                )))
            }
        };
        // Keras zeroes masked outputs of both directions when it returns sequences
        let zero = self.forward.return_sequences;
        let (f, mut fs) = self.forward.run(x, mask, fi, zero, training)?;
        let (mut b, bs) = self.backward.run(x, mask, bi, zero, training)?;
        if self.forward.return_sequences {
            b = ops::reverse(&b, &[1])?;
        }
        let y = match self.merge {
            MergeMode::Concat => ops::concat(&[f, b], -1)?,
            MergeMode::Sum => ops::add(&f, &b)?,
            MergeMode::Mul => ops::multiply(&f, &b)?,
            MergeMode::Ave => ops::multiply(&ops::add(&f, &b)?, &0.5)?,
        };
        fs.extend(bs);
        Ok((y, fs))
    }
}

impl Layer for Bidirectional {
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        Ok(self.run(x, None, None, training)?.0)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        [&self.forward, &self.backward]
            .iter()
            .flat_map(|r| [r.kernel.clone(), r.recurrent_kernel.clone(), r.bias.clone()])
            .collect()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "Bidirectional"
    }
}

/// Keras's `Masking`: marks the time steps whose features all equal `mask_value` as padding.
/// Its output is its input with those steps zeroed; [`Masking::compute_mask`] gives the mask
/// to pass to a recurrent layer's `call_with_mask` (gradtape's layers do not carry masks
/// along implicitly as Keras's do).
///
/// ```
/// use gradtape::layers::Masking;
/// let x = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 0.0, 0.0, 3.0, 0.0], &[1, 3, 2])?;
/// let m = Masking::new(0.0).compute_mask(&x)?;
/// assert_eq!(m.to_vec::<bool>()?, vec![true, false, true]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Masking {
    mask_value: f64,
}

impl Masking {
    /// Steps whose features all equal `mask_value` (Keras's default is 0) are padding.
    pub fn new(mask_value: f64) -> Masking {
        Masking { mask_value }
    }

    /// `[batch, time]`: true where some feature differs from the mask value.
    ///
    /// # Errors
    /// When `x` has rank below 2.
    pub fn compute_mask(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() < 2 {
            return Err(Error::shape(
                "Masking",
                format!("expected [batch, time, ...], got {:?}", x.shape()),
            ));
        }
        ops::reduce_any(&ops::not_equal(x, &self.mask_value)?, -1, false)
    }
}

impl Layer for Masking {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let keep = ops::expand_dims(&self.compute_mask(x)?, -1)?;
        ops::multiply(x, &ops::cast(&keep, x.dtype())?)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "Masking"
    }
}
