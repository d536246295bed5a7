//! Weights and weighted selection: linear ramps as a pure function of time, and the pick
//! inside an endpoint group. Pure: no I/O, no clock (time is passed in), no global state.
//!
//! [`WeightedPicker`] spreads picks over candidates in proportion to their (possibly
//! fractional) weights with one atomic increment per pick and no lock. Pick number `n` maps to
//! the point `frac(n · φ⁻¹)` of the golden-ratio (Weyl) sequence, scaled to the total weight,
//! and takes the candidate whose cumulative-weight interval holds it. That sequence is the most
//! evenly spread one known: over any window of consecutive picks each candidate's count stays
//! within a few picks of its exact share, so a weight-10 candidate never gets ten in a row
//! behind a weight-1 one (the complaint about expanded-list round robin), and long-run shares are
//! exact for any real weights, not only integers. Draining candidates
//! ([`WeightedPicker::with_draining`]) are picked only when no other candidate can serve.

mod picker;
mod ramp;

pub use picker::WeightedPicker;
pub use ramp::{RampSchedule, WeightRamp};
