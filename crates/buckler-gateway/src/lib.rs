//! buckler-gateway
