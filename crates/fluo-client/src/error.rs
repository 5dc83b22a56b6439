//! The client's errors: a Kurento error from the server (its code from fluo-api's one
//! catalogue, [`ErrorCode`]), or a failure of the client side (socket, timeout, reply shape).

pub use fluo_api::{ErrorCode, KurentoError};
use serde_json::Value;

/// Everything a call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a Kurento or JSON-RPC error whose code is in the catalogue.
    #[error("server error: {error}")]
    Kurento {
        /// Code and message.
        error: KurentoError,
        /// `data.type` as sent, when the error carried one.
        data_type: Option<String>,
    },
    /// The server answered with an error code the catalogue does not know (custom modules
    /// use 49000-49999).
    #[error("server error {code}: {message}")]
    OtherCode {
        /// The number as sent.
        code: i64,
        /// The message as sent.
        message: String,
    },
    /// No answer within the request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The client was closed (or could not connect and gave up).
    #[error("connection closed: {0}")]
    Closed(String),
    /// The WebSocket could not be opened.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A reply or event did not have the documented shape or did not fit its Rust type.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A transaction's operation that the server did not run (an earlier one failed).
    #[error("operation {0} of the transaction was not executed")]
    NotExecuted(usize),
    /// After a reconnection the server no longer knew the session (40007): the objects
    /// and subscriptions of the old session are gone.
    #[error("the session was lost")]
    SessionLost,
}

impl Error {
    /// The catalogue code of a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kurento { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Reads a JSON-RPC `error` member.
    pub fn from_wire(error: &Value) -> Error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(n) = error.get("code").and_then(Value::as_i64) else {
            return Error::Protocol(format!("error without a numeric code: {message}"));
        };
        let data_type = error
            .pointer("/data/type")
            .and_then(Value::as_str)
            .map(str::to_string);
        match ErrorCode::from_code(n) {
            Some(code) => Error::Kurento {
                error: KurentoError::new(code, message),
                data_type,
            },
            None => Error::OtherCode { code: n, message },
        }
    }
}

/// A call's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
