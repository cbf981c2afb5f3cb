//! Training: AdamW, the training loop with its checkpoints and resumable
//! state, and the speed benchmark of the training step.

pub mod bench;
pub mod optim;
pub mod progress;
pub mod state;
pub mod trainer;

pub use crate::kernel::chunks::on_workers;
pub use trainer::{FloorStop, TrainOutcome, Trainer, floor_mse, resume, train, training_set, validation_set};
