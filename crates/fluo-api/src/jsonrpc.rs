//! The JSON-RPC 2.0 envelope as the Kurento Protocol uses it.
//!
//! One JSON object per WebSocket text frame. [`parse`] turns a frame into a [`Request`] or the
//! error response that KMS sends for it; [`Response`] renders replies compactly.

use crate::error::{ErrorCode, KurentoError};
use serde_json::{Map, Value};

/// A request id exactly as the client sent it (number or string); `None` for notifications.
pub type RequestId = Option<Value>;

/// A well-formed JSON-RPC request (or notification when `id` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed back verbatim in the response.
    pub id: RequestId,
    /// Method name (`create`, `invoke`, ...).
    pub method: String,
    /// The `params` member, if present and not null.
    pub params: Option<Value>,
}

/// What a text frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request or notification to execute.
    Request(Request),
    /// A response from the client (the protocol never asks for one); ignored.
    Response,
}

/// Parses one text frame. On failure returns the response to send (id is `null` unless the
/// id could be read).
pub fn parse(text: &str) -> Result<Incoming, Response> {
    let value: Value = serde_json::from_str(text).map_err(|_| {
        Response::error(
            None,
            KurentoError::new(ErrorCode::ParseError, "Parse error."),
        )
    })?;
    parse_value(value)
}

/// Parses an already decoded JSON value (used for transaction sub-requests too).
pub fn parse_value(value: Value) -> Result<Incoming, Response> {
    let invalid = || {
        Response::error(
            None,
            KurentoError::new(ErrorCode::InvalidRequest, "Invalid JSON-RPC request."),
        )
    };
    let Value::Object(mut obj) = value else {
        return Err(invalid());
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid());
    }
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::Number(_) | Value::String(_))) => Some(v),
        Some(_) => return Err(invalid()),
    };
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = match obj.remove("params") {
                None | Some(Value::Null) => None,
                Some(p) => Some(p),
            };
            Ok(Incoming::Request(Request { id, method, params }))
        }
        None if obj.contains_key("result") || obj.contains_key("error") => Ok(Incoming::Response),
        _ => Err(Response::error(
            id,
            KurentoError::new(ErrorCode::InvalidRequest, "Invalid JSON-RPC request."),
        )),
    }
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id (`null` when unknown).
    pub id: RequestId,
    /// `result` or `error`.
    pub outcome: Result<Value, KurentoError>,
}

impl Response {
    /// A success response.
    pub fn result(id: RequestId, result: Value) -> Self {
        Self {
            id,
            outcome: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: RequestId, error: KurentoError) -> Self {
        Self {
            id,
            outcome: Err(error),
        }
    }

    /// The full JSON object (`id`, `jsonrpc`, `result` | `error`).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), self.id.clone().unwrap_or(Value::Null));
        obj.insert("jsonrpc".into(), Value::from("2.0"));
        match &self.outcome {
            Ok(v) => obj.insert("result".into(), v.clone()),
            Err(e) => obj.insert("error".into(), e.to_json()),
        };
        Value::Object(obj)
    }

    /// Compact JSON text, as KMS writes it.
    pub fn to_text(&self) -> String {
        self.to_value().to_string()
    }
}

/// Renders an `onEvent` notification.
pub fn notification(method: &str, params: Value) -> String {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("method".into(), Value::from(method));
    obj.insert("params".into(), params);
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_code(r: Result<Incoming, Response>) -> i64 {
        r.unwrap_err().outcome.unwrap_err().code.code()
    }

    #[test]
    fn envelope_rules() {
        assert_eq!(err_code(parse("{nope")), -32700);
        assert_eq!(err_code(parse("[1,2]")), -32600);
        assert_eq!(err_code(parse(r#"{"id":1,"method":"ping"}"#)), -32600);
        assert_eq!(
            err_code(parse(r#"{"jsonrpc":"2.0","id":1,"method":5}"#)),
            -32600
        );
        assert_eq!(
            err_code(parse(r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#)),
            -32600
        );
        let Ok(Incoming::Request(r)) = parse(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#) else {
            panic!("valid ping rejected")
        };
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(r.params, None);
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#),
            Ok(Incoming::Response)
        );
    }

    #[test]
    fn response_is_compact_and_echoes_id() {
        let r = Response::result(Some(json!("a")), json!({"value":"pong"}));
        assert_eq!(
            r.to_text(),
            r#"{"id":"a","jsonrpc":"2.0","result":{"value":"pong"}}"#
        );
    }
}
