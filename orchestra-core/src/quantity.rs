//! Resource quantities (`250m`, `1Gi`): placeholder, being written.
