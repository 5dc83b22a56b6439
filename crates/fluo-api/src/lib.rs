//! Fluo's view of the Kurento Protocol: the JSON-RPC 2.0 envelope, one typed struct per
//! method's parameters, the single catalogue of Kurento error codes, and the interface model
//! (every remote class, property, method, event and complex type) that the server validates
//! requests against.
//!
//! Nothing here does IO: the crate turns text into typed requests and typed results into text.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod ids;
pub mod jsonrpc;
pub mod model;
pub mod params;
pub mod secrets;
pub mod text;

pub use error::{ErrorCode, KurentoError};
pub use jsonrpc::{Incoming, Request, RequestId, Response};
pub use model::Model;
