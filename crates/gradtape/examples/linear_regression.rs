//! The tutorial gradtape started from, ported line by line: linear regression `y" = a + b·x`
//! fitted by gradient descent on the sum of squared errors, with a GradientTape.
//!
//! ```text
//! cargo run --release --example linear_regression                # the seed's random data
//! cargo run --release --example linear_regression -- data.csv    # x,y columns (header optional)
//! ```
//!
//! Each `// >` comment is the TensorFlow line the Rust below it ports.

use gradtape::random::Generator;
use gradtape::{ops, Axes, DType, GradientTape, Result, Tensor, Variable};

// > x = tf.convert_to_tensor(x, dtype=tf.float32)
pub fn convert_to_tensor(values: &[f64]) -> Result<Tensor> {
    Tensor::from_vec(values.iter().map(|&v| v as f32).collect(), &[values.len()])
}

// > class regression:
pub struct Regression {
    pub a: Variable,
    pub b: Variable,
}

impl Default for Regression {
    fn default() -> Self {
        Self::new()
    }
}

impl Regression {
    // > def __init__(self):
    // >     self.a = tf.Variable(initial_value=0, dtype=tf.float32)
    // >     self.b = tf.Variable(initial_value=0, dtype=tf.float32)
    pub fn new() -> Self {
        Regression {
            a: Variable::new(Tensor::scalar(0.0f32)),
            b: Variable::new(Tensor::scalar(0.0f32)),
        }
    }

    // > def __call__(self, x):
    // >     x = tf.convert_to_tensor(x, dtype=tf.float32)
    // >     y_est = tf.add(self.a, tf.multiply(self.b, x))
    // >     return y_est
    pub fn call(&self, x: &[f64]) -> Result<Tensor> {
        let x = convert_to_tensor(x)?;
        let y_est = ops::add(&self.a, &ops::multiply(&self.b, &x)?)?;
        Ok(y_est)
    }
}

// > def loss_func(y_true, y_pred):
// >     sse = tf.reduce_sum(tf.square(tf.subtract(y_true, y_pred)))
// >     return sse
pub fn loss_func(y_true: &Tensor, y_pred: &Tensor) -> Result<Tensor> {
    let sse = ops::reduce_sum(
        &ops::square(&ops::subtract(y_true, y_pred)?)?,
        Axes::All,
        false,
    )?;
    Ok(sse)
}

// > def train(model, inputs, outputs, lr):
pub fn train(model: &Regression, inputs: &[f64], outputs: &[f64], lr: f64) -> Result<()> {
    // > y_true = tf.convert_to_tensor(outputs, dtype=tf.float32)
    let y_true = convert_to_tensor(outputs)?;
    // > with tf.GradientTape() as g:
    // >     y_pred = model(inputs)
    // >     current_loss = loss_func(y_true, y_pred)
    let g = GradientTape::new();
    let y_pred = model.call(inputs)?;
    let current_loss = loss_func(&y_true, &y_pred)?;
    g.stop();
    // > da, db = g.gradient(current_loss, [model.a, model.b])
    let [da, db] = g.gradient(&current_loss, [&model.a, &model.b])?;
    let (da, db) = (
        da.expect("a is read on the tape"),
        db.expect("b is read on the tape"),
    );
    // > model.a.assign_sub(da * lr)
    // > model.b.assign_sub(db * lr)
    model.a.assign_sub(&(&da * lr))?;
    model.b.assign_sub(&(&db * lr))?;
    Ok(())
}

/// What the seed's loop leaves behind: `cost_val`, `a_val`, `b_val` and the final model.
pub struct History {
    pub cost_val: Vec<f32>,
    pub a_val: Vec<f32>,
    pub b_val: Vec<f32>,
    pub model: Regression,
}

/// The seed's training loop: each epoch evaluates the cost, then takes one taped step.
pub fn fit(x: &[f64], y: &[f64], epochs: usize, lr: f64, print: bool) -> Result<History> {
    // > model = regression()
    let model = Regression::new();
    let (mut a_val, mut b_val, mut cost_val) = (vec![], vec![], vec![]);
    // > for e in range(epochs):
    for e in 0..epochs {
        // > a_val.append(model.a); b_val.append(model.b)
        a_val.push(model.a.value().to_scalar::<f32>()?);
        b_val.push(model.b.value().to_scalar::<f32>()?);
        // > y_pred = model(x); cost_value = loss_func(y, y_pred); cost_val.append(cost_value)
        let y_pred = model.call(x)?;
        let cost_value = loss_func(&convert_to_tensor(y)?, &y_pred)?;
        cost_val.push(cost_value.to_scalar::<f32>()?);
        // > train(model, x, y, lr)
        train(&model, x, y, lr)?;
        // > print("Epoch: %d, Loss: %0.2f" % (e, cost_value))
        if print {
            println!("Epoch: {}, Loss: {:.2}", e, cost_value.to_scalar::<f32>()?);
        }
    }
    Ok(History {
        cost_val,
        a_val,
        b_val,
        model,
    })
}

/// The first column (x) and second column (y) of a CSV file, through gradtape's reader
/// (header row optional, `.gz` accepted, errors name the line and column).
pub fn read_csv(
    path: &str,
) -> std::result::Result<(Vec<f64>, Vec<f64>), Box<dyn std::error::Error>> {
    let table = gradtape::data::read_csv(std::path::Path::new(path))?;
    let Some(y_column) = table.columns.get(1).cloned() else {
        return Err(format!("{path}: needs two columns, x and y").into());
    };
    let d = table.dataset(&y_column, gradtape::data::Task::Regression, DType::F64)?;
    let gradtape::data::Target::Values(y) = d.target else {
        return Err(format!("{path}: y is not numeric").into());
    };
    Ok((d.features.to_vec::<f64>()?, y.to_vec::<f64>()?))
}

#[allow(dead_code)]
fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (x, y) = match std::env::args().nth(1) {
        Some(path) => read_csv(&path)?,
        None => {
            // > x = np.random.uniform(0.0, 1.0, (200))
            // > y = 0.3 + 0.5 * x + np.random.normal(0.0, 0.3, len(x))
            let mut rng = Generator::from_seed(0);
            let x = rng.uniform(&[200], 0.0, 1.0, DType::F64)?.to_vec::<f64>()?;
            let noise = rng.normal(&[200], 0.0, 0.3, DType::F64)?.to_vec::<f64>()?;
            let y = x
                .iter()
                .zip(&noise)
                .map(|(x, n)| 0.3 + 0.5 * x + n)
                .collect();
            (x, y)
        }
    };
    // > epochs = 70; lr = 0.001
    let history = fit(&x, &y, 70, 0.001, true)?;
    println!(
        "a = {:.6}, b = {:.6}",
        history.model.a.value().to_scalar::<f32>()?,
        history.model.b.value().to_scalar::<f32>()?
    );
    Ok(())
}
