//! Caps that keep hostile documents from costing more than a clear error.

/// Size caps for one document (for Swagger 1.2: for the listing and for each declaration;
/// paths and operations are counted across all declarations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document in bytes, checked before parsing (default 16 MiB).
    pub max_bytes: usize,
    /// Most paths, `x-` extension keys not counted (default 10,000).
    pub max_paths: usize,
    /// Most operations over all paths (default 50,000).
    pub max_operations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 * 1024 * 1024,
            max_paths: 10_000,
            max_operations: 50_000,
        }
    }
}
