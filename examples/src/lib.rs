//! buckler-examples: runnable examples (see quickstart.rs).
