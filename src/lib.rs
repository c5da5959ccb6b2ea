//! meshmedic: finds the Istio / ASM configurations that make a mesh answer HTTP 503, and fixes them.
//!
//! The pipeline (see DESIGN.md): [`model`] (typed objects) → [`snapshot`] (indexed cluster view) →
//! [`analysis`] (one pure detector per cause) → [`remediation`] (patches and new objects).
//! [`logs`] diagnoses Envoy access logs; [`cli`] wires it all to the `meshmedic` binary.

pub mod alloc;
pub mod analysis;
pub mod cli;
pub mod controller;
pub mod error;
pub mod logs;
pub mod model;
pub mod positions;
pub mod remediation;
pub mod snapshot;

pub use error::{Error, Result};
