//! A typed async client of the Kurento Protocol (JSON-RPC 2.0 over WebSocket) for Fluo and
//! KMS 7, on Tokio.
//!
//! It uses only the protocol as documented for KMS 7 (no Fluo extensions). [`model`] has a
//! handle for every class of the model (core, elements, filters), generated from Fluo's
//! interface model: a struct per class, its operations in a `<Class>Api` trait (bring
//! `fluo_client::model::*` into scope), complex types and enums as Rust types, and one typed
//! [`Subscription`] stream per event.
//!
//! # Example: a loopback
//!
//! A WebRtcEndpoint that sends a browser's media back to it, and the first time its incoming
//! video flows:
//!
//! ```no_run
//! use fluo_client::model::*;
//! use fluo_client::Client;
//!
//! # async fn run(offer: String) -> fluo_client::Result<()> {
//! let client = Client::connect("ws://127.0.0.1:8888/kurento").await?;
//! let pipeline = MediaPipeline::create(&client).build().await?;
//! let ep = WebRtcEndpoint::create(&pipeline).build().await?;
//! ep.connect(&ep, None, None, None).await?;
//! let mut flow = ep.subscribe_media_flow_in_state_changed().await?;
//! let answer = ep.process_offer(&offer).await?; // give it to the browser
//! # let _ = answer;
//! ep.gather_candidates().await?;
//! while let Some(e) = flow.next_event().await {
//!     if e.state == MediaFlowState::Flowing && e.media_type == MediaType::Video {
//!         break;
//!     }
//! }
//! pipeline.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! (With KMS, and with Fluo when the peer does not read candidates from the answer, forward
//! the `IceCandidateFound` events of `subscribe_ice_candidate_found` to the browser and its
//! candidates to `add_ice_candidate`.)
//!
//! # Transactions
//!
//! Several operations in one `transaction` request; objects created in it are named by
//! [`TxObject::reference`] and each operation's result is read back by its index:
//!
//! ```no_run
//! use fluo_client::model::*;
//! use fluo_client::Client;
//! use serde_json::json;
//!
//! # async fn run(client: Client) -> fluo_client::Result<()> {
//! let mut tx = client.transaction();
//! let p = MediaPipeline::create(&client).add_to(&mut tx);
//! let ep = tx.create("WebRtcEndpoint", json!({"mediaPipeline": p.reference()}));
//! let results = tx.commit().await?;
//! let pipeline: MediaPipeline = results.object(p)?;
//! let ep: WebRtcEndpoint = results.object(ep)?;
//! # let _ = (pipeline, ep);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! A server error is [`Error::Kurento`] with its [`ErrorCode`] (fluo-api's one catalogue of
//! the Kurento and JSON-RPC codes); codes outside it (custom modules) are
//! [`Error::OtherCode`]:
//!
//! ```
//! use fluo_client::{Error, ErrorCode};
//! use serde_json::json;
//!
//! let e = Error::from_wire(&json!({"code": 40101, "message": "Object 'x' not found",
//!     "data": {"type": "MEDIA_OBJECT_NOT_FOUND"}}));
//! assert_eq!(e.code(), Some(ErrorCode::MediaObjectNotFound));
//! let e = Error::from_wire(&json!({"code": 49001, "message": "custom"}));
//! assert!(matches!(e, Error::OtherCode { code: 49001, .. }));
//! ```
//!
//! # Sessions and reconnection
//!
//! The client adopts the `sessionId` of every answer and sends it with every request. When
//! the socket drops it reconnects (back-off from [`Options::reconnect_delay`] up to
//! [`Options::reconnect_max_delay`]) and first sends `connect` with the old `sessionId`, as
//! KurentoClient does: if the server still knows the session, subscriptions keep delivering
//! and requests that were unanswered are sent again with their ids (KMS answers a repeated
//! id from its replay cache); if it answers 40007 (INVALID_SESSION) the old session's event
//! streams end and its unanswered requests fail with [`Error::SessionLost`].
//! [`Client::connection_events`] reports both.
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
