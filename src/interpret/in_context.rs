//! In-context interpretation (being written).
