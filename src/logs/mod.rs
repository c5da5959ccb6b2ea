//! Envoy access-log diagnosis.
