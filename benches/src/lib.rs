//! buckler-benches: workspace member holding benches.
