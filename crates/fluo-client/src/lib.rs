//! A typed async client of the Kurento Protocol (JSON-RPC 2.0 over WebSocket) for Fluo and
//! KMS 7.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod conn;
pub mod error;
pub mod events;
pub mod object;
/// Generated handles, complex types and events of every class of the model.
#[rustfmt::skip]
pub mod model;
pub mod tx;

pub use client::{Client, ConnectionEvent, Options};
pub use error::{Error, ErrorCode, KurentoError, Result};
pub use events::{Event, RawSubscription, Subscription};
pub use object::{ObjectRef, RemoteObject};
pub use tx::{Transaction, TxObject, TxResults};
