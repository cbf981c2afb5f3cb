//! How a training run reports how far it is. The library only calls this
//! trait; the command line implements it with progress bars, a notebook
//! could with a widget, and [`Silent`] reports nothing.

/// Receives a training run's progress.
pub trait Progress: Sync {
    /// Called at every metrics row: `step`, the mean training loss since the
    /// previous row, the validation MSE and the seconds since the start.
    fn update(&self, step: u64, train_loss: f64, valid_mse: f64, elapsed: f64);

    /// Called once when the run has ended, with a one-line outcome.
    fn finish(&self, message: &str);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _step: u64, _train_loss: f64, _valid_mse: f64, _elapsed: f64) {}

    fn finish(&self, _message: &str) {}
}

/// A [`Silent`] line for every case: the progress factory of a quiet study.
pub fn silent(_name: &str, _steps: u64) -> Box<dyn Progress> {
    Box::new(Silent)
}
