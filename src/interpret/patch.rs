//! Activation patching (being written).
