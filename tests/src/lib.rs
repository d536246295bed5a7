//! buckler-tests: workspace member holding tests.
