//! Activation patching on models built by hand (being written).
