//! In-context interpretation read back from models built by hand (being written).
