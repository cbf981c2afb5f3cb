//! The model: the transformer, attention with optional MLP blocks (parameters, forward pass with
//! a named activation cache, hand-written backward pass), its circuits, and
//! its checkpoint file. The model uses the ROW convention (a token is a row
//! vector), as TransformerLens does.

pub mod activation;
pub mod checkpoint;
pub mod circuits;
pub mod export;
pub mod resume;
pub mod transformer;

pub use transformer::{
    Act, Activations, AttnScale, BlockActivations, BlockLayout, CHUNK_BYTES, D_IN, Layout, LossPositions, MlpLayout,
    Model, ModelConfig, Scratch, TensorInfo, chunk_sequences, mse, mse_loss,
};
