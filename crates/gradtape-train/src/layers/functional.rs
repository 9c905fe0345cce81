//! Models that are not a plain stack (Keras's functional API): a graph of layers and merges
//! over one input, built node by node. Nodes are evaluated in the order they were added, which
//! is already an order where every node's inputs come first.

use super::{render_summary, summary_input, Layer, SummaryRow};
use gradtape_core::ops;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};

/// A node of a [`FunctionalBuilder`]: the model's input, or the output of a layer or a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node(usize);

enum Step {
    Input,
    Layer(Box<dyn Layer>, Node),
    Add(Vec<Node>),
    Multiply(Vec<Node>),
    Concatenate(Vec<Node>, isize),
}

/// Builds a [`Functional`] model: `input()`, then layers and merges on earlier nodes, then
/// `build(output)`.
///
/// A residual block, `y = relu(x + dense2(relu(dense1(x))))`:
///
/// ```
/// use gradtape::layers::{Activation, Dense, FunctionalBuilder, Layer};
/// use gradtape::DType;
/// let mut rng = gradtape::random::Generator::from_seed(0);
/// let mut b = FunctionalBuilder::new("block");
/// let x = b.input();
/// let h = b.layer(Dense::new("d1", 8, 8, Activation::Relu, DType::F32, &mut rng)?, x);
/// let h = b.layer(Dense::new("d2", 8, 8, Activation::Linear, DType::F32, &mut rng)?, h);
/// let sum = b.add(&[x, h]);
/// let y = b.apply(sum, |t| gradtape::ops::relu(t));
/// let model = b.build(y)?;
/// assert_eq!(model.call(&gradtape::Tensor::ones(&[2, 8], DType::F32)?, false)?.shape(), &[2, 8]);
/// assert_eq!(model.trainable_variables().len(), 4);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct FunctionalBuilder {
    name: String,
    steps: Vec<Step>,
}

impl FunctionalBuilder {
    /// An empty graph named `name` (for `summary`).
    pub fn new(name: &str) -> FunctionalBuilder {
        FunctionalBuilder {
            name: name.to_string(),
            steps: vec![],
        }
    }

    fn push(&mut self, step: Step) -> Node {
        self.steps.push(step);
        Node(self.steps.len() - 1)
    }

    /// The model's input (one per model; a second call is an error at `build`).
    pub fn input(&mut self) -> Node {
        self.push(Step::Input)
    }

    /// `layer` applied to `x`.
    pub fn layer(&mut self, layer: impl Layer + 'static, x: Node) -> Node {
        self.push(Step::Layer(Box::new(layer), x))
    }

    /// A function with no variables applied to `x` (an activation, a reshape): Keras's
    /// `Lambda` layer.
    pub fn apply(
        &mut self,
        x: Node,
        f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Node {
        self.layer(Lambda(Box::new(f)), x)
    }

    /// Keras's `Add` merge: the elementwise sum of the nodes.
    pub fn add(&mut self, xs: &[Node]) -> Node {
        self.push(Step::Add(xs.to_vec()))
    }

    /// Keras's `Multiply` merge: the elementwise product of the nodes.
    pub fn multiply(&mut self, xs: &[Node]) -> Node {
        self.push(Step::Multiply(xs.to_vec()))
    }

    /// Keras's `Concatenate` merge along `axis` (default in Keras: -1).
    pub fn concatenate(&mut self, xs: &[Node], axis: isize) -> Node {
        self.push(Step::Concatenate(xs.to_vec(), axis))
    }

    /// The model whose output is `output`.
    ///
    /// # Errors
    /// When the graph has no input or several, a merge has no inputs, or `output` is not a
    /// node of this graph.
    ///
    /// ```
    /// let mut b = gradtape::layers::FunctionalBuilder::new("m");
    /// let x = b.input();
    /// let _ = b.input();
    /// assert!(b.build(x).is_err());
    /// ```
    pub fn build(self, output: Node) -> Result<Functional> {
        let op = "Functional";
        let inputs = self
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Input))
            .count();
        if inputs != 1 {
            return Err(Error::arg(
                op,
                format!(
                    "model {:?} has {inputs} inputs; it needs exactly one",
                    self.name
                ),
            ));
        }
        if output.0 >= self.steps.len() {
            return Err(Error::arg(
                op,
                format!("model {:?}: the output is not one of its nodes", self.name),
            ));
        }
        for s in &self.steps {
            if let Step::Add(xs) | Step::Multiply(xs) | Step::Concatenate(xs, _) = s {
                if xs.is_empty() {
                    return Err(Error::arg(
                        op,
                        format!("model {:?}: a merge has no inputs", self.name),
                    ));
                }
            }
        }
        Ok(Functional {
            name: self.name,
            steps: self.steps,
            output,
        })
    }
}

/// A function with no variables as a layer.
type LambdaFn = dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync;

struct Lambda(Box<LambdaFn>);

impl Layer for Lambda {
    fn call(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        (self.0)(x)
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        vec![]
    }
    fn class_name(&self) -> &'static str {
        "Lambda"
    }
}

/// A model built by [`FunctionalBuilder`]: a graph of layers and merges over one input.
pub struct Functional {
    name: String,
    steps: Vec<Step>,
    output: Node,
}

impl Functional {
    /// Every node's value for input `x`, in order, and `on_step(step, value)` for each.
    fn run(
        &self,
        x: &Tensor,
        training: bool,
        mut on_step: impl FnMut(&Step, &Tensor),
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Tensor> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let get = |n: &Node| -> Result<Tensor> {
                values.get(n.0).cloned().ok_or_else(|| {
                    Error::arg(
                        "Functional",
                        "a node uses a node added after it (or of another builder)",
                    )
                })
            };
            let v = match step {
                Step::Input => x.clone(),
                Step::Layer(l, n) => l.call(&get(n)?, training)?,
                Step::Add(xs) | Step::Multiply(xs) => {
                    let mut acc = get(&xs[0])?;
                    for n in &xs[1..] {
                        acc = match step {
                            Step::Add(_) => ops::add(&acc, &get(n)?)?,
                            _ => ops::multiply(&acc, &get(n)?)?,
                        };
                    }
                    acc
                }
                Step::Concatenate(xs, axis) => {
                    let parts = xs.iter().map(get).collect::<Result<Vec<_>>>()?;
                    ops::concat(&parts, *axis)?
                }
            };
            on_step(step, &v);
            values.push(v);
        }
        Ok(values)
    }

    /// Keras's `model.summary()` for inputs of `input_shape` (without the batch axis): every
    /// layer and merge with its output shape and parameters. Runs the model once on zeros.
    ///
    /// # Errors
    /// When the model cannot run on such inputs.
    ///
    /// ```
    /// use gradtape::layers::{Activation, Dense, FunctionalBuilder};
    /// let mut rng = gradtape::random::Generator::from_seed(0);
    /// let mut b = FunctionalBuilder::new("res");
    /// let x = b.input();
    /// let h = b.layer(Dense::new("d", 4, 4, Activation::Relu, gradtape::DType::F32, &mut rng)?, x);
    /// let y = b.add(&[x, h]);
    /// let s = b.build(y)?.summary(&[4], gradtape::DType::F32)?;
    /// assert!(s.contains("d (Dense)") && s.contains("add (Add)") && s.contains("Total params: 20"));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn summary(&self, input_shape: &[usize], dtype: DType) -> Result<String> {
        let x = summary_input(input_shape, dtype)?;
        let mut rows = vec![];
        self.run(&x, false, |step, v| {
            rows.push(match step {
                Step::Input => SummaryRow::unnamed("InputLayer", v),
                Step::Layer(l, _) => SummaryRow::of(l.as_ref(), v),
                Step::Add(_) => SummaryRow::unnamed("Add", v),
                Step::Multiply(_) => SummaryRow::unnamed("Multiply", v),
                Step::Concatenate(..) => SummaryRow::unnamed("Concatenate", v),
            })
        })?;
        Ok(render_summary(&self.name, &rows, &self.variables()))
    }

    fn layers(&self) -> impl Iterator<Item = &dyn Layer> {
        self.steps.iter().filter_map(|s| match s {
            Step::Layer(l, _) => Some(l.as_ref()),
            _ => None,
        })
    }
}

impl Layer for Functional {
    fn call(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut values = self.run(x, training, |_, _| {})?;
        Ok(values.swap_remove(self.output.0))
    }
    fn trainable_variables(&self) -> Vec<Variable> {
        self.layers()
            .flat_map(|l| l.trainable_variables())
            .collect()
    }
    fn non_trainable_variables(&self) -> Vec<Variable> {
        self.layers()
            .flat_map(|l| l.non_trainable_variables())
            .collect()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &'static str {
        "Functional"
    }
}
