//! The in-memory reference store (being written).
