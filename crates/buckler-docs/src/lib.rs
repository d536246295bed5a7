//! buckler-docs
