//! buckler-examples: workspace member holding examples.
