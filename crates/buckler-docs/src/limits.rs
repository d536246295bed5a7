//! Caps that keep hostile documents from costing more than a clear error.

/// Size caps for one document (for Swagger 1.2: for the listing and for each declaration;
/// paths and operations are counted across all declarations). The defaults load the largest
/// published descriptions (Microsoft Graph beta: 47 MB, 14,227 paths, 22,361 operations) with
/// room to spare; a document over a cap is refused with an error naming the cap, before any
/// model is built. Nesting is capped at 128 levels in JSON and YAML alike (not a setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document in bytes, checked before parsing (default 64 MiB).
    pub max_bytes: usize,
    /// Most paths, `x-` extension keys not counted (default 50,000).
    pub max_paths: usize,
    /// Most operations over all paths (default 200,000).
    pub max_operations: usize,
}

impl Limits {
    /// Default largest document: 64 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
    /// Default most paths: 50,000.
    pub const DEFAULT_MAX_PATHS: usize = 50_000;
    /// Default most operations: 200,000.
    pub const DEFAULT_MAX_OPERATIONS: usize = 200_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: Limits::DEFAULT_MAX_BYTES,
            max_paths: Limits::DEFAULT_MAX_PATHS,
            max_operations: Limits::DEFAULT_MAX_OPERATIONS,
        }
    }
}
