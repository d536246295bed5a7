//! buckler-config
