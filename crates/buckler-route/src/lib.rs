//! buckler-route
