//! One typed struct per Kurento Protocol method, parsed from `params` with KMS's rules:
//! a missing or ill-typed top-level parameter is a -32000 error naming it; `params` itself
//! must be an object for every method but `ping` and `connect` (-32602 otherwise).

use crate::error::{ErrorCode, KurentoError};
use serde_json::{Map, Value};

/// `create`.
#[derive(Debug, Clone, PartialEq)]
pub struct Create {
    /// Class name, short (`WebRtcEndpoint`) or qualified (`kurento.WebRtcEndpoint`).
    pub type_name: String,
    /// Constructor parameters keyed by their model names.
    pub constructor_params: Map<String, Value>,
    /// Extra properties (ignored, as in KMS).
    pub properties: Map<String, Value>,
}

/// `invoke`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoke {
    /// Target object id.
    pub object: String,
    /// Method name or property accessor (`getName`, `setName`).
    pub operation: String,
    /// Arguments keyed by their model names.
    pub operation_params: Map<String, Value>,
}

/// `subscribe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// Object id.
    pub object: String,
    /// Event name.
    pub event: String,
}

/// `unsubscribe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    /// Object id.
    pub object: String,
    /// Subscription id returned by `subscribe`.
    pub subscription: String,
}

/// A method call, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// `ping`.
    Ping,
    /// `connect` (optionally resuming `sessionId`).
    Connect,
    /// `create`.
    Create(Create),
    /// `invoke`.
    Invoke(Invoke),
    /// `subscribe`.
    Subscribe(Subscribe),
    /// `unsubscribe`.
    Unsubscribe(Unsubscribe),
    /// `release` of an object id.
    Release(String),
    /// `describe` of an object id.
    Describe(String),
    /// `ref` of an object id.
    Ref(String),
    /// `unref` of an object id.
    Unref(String),
    /// `keepAlive`.
    KeepAlive,
    /// `transaction` with its raw sub-requests.
    Transaction(Vec<Value>),
    /// `closeSession`; `true` releases the session's objects.
    CloseSession(bool),
}

/// A parsed call: the method plus the session id it carried, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method and its typed parameters.
    pub method: Method,
    /// `params.sessionId`, if present.
    pub session_id: Option<String>,
}

/// Accessor over a `params` object implementing KMS's parameter rules.
struct P<'a>(&'a Map<String, Value>);

impl P<'_> {
    fn req_str(&self, name: &str) -> Result<String, KurentoError> {
        self.opt_str(name)?
            .ok_or_else(|| KurentoError::param_required(name))
    }

    /// Strings accept any scalar (as jsoncpp's `isConvertibleTo(string)` does in KMS).
    fn opt_str(&self, name: &str) -> Result<Option<String>, KurentoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(KurentoError::param_type(name, "string")),
        }
    }

    fn opt_obj(&self, name: &str) -> Result<Map<String, Value>, KurentoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(KurentoError::param_type(name, "object")),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<bool, KurentoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(KurentoError::param_type(name, "boolean")),
        }
    }
}

/// Parses a method name and its `params` into a [`Call`].
pub fn parse_call(method: &str, params: Option<&Value>) -> Result<Call, KurentoError> {
    let empty = Map::new();
    let obj = match params {
        Some(Value::Object(m)) => Some(m),
        None => None,
        Some(_) => {
            return Err(KurentoError::new(
                ErrorCode::InvalidParams,
                "'params' should be an object",
            ))
        }
    };
    let known = matches!(
        method,
        "ping"
            | "connect"
            | "create"
            | "invoke"
            | "subscribe"
            | "unsubscribe"
            | "release"
            | "describe"
            | "ref"
            | "unref"
            | "keepAlive"
            | "transaction"
            | "closeSession"
    );
    if !known {
        return Err(KurentoError::new(
            ErrorCode::MethodNotFound,
            "Method not found.",
        ));
    }
    let p = match (method, obj) {
        ("ping" | "connect", o) => P(o.unwrap_or(&empty)),
        (_, Some(o)) => P(o),
        (_, None) => {
            return Err(KurentoError::new(
                ErrorCode::InvalidParams,
                "'params' is required",
            ))
        }
    };
    let session_id = p.opt_str("sessionId")?;
    let require_session = || {
        session_id
            .clone()
            .ok_or_else(|| KurentoError::param_required("sessionId"))
    };
    let method = match method {
        "ping" => Method::Ping,
        "connect" => Method::Connect,
        "create" => Method::Create(Create {
            type_name: p.req_str("type")?,
            constructor_params: p.opt_obj("constructorParams")?,
            properties: p.opt_obj("properties")?,
        }),
        "invoke" => Method::Invoke(Invoke {
            object: p.req_str("object")?,
            operation: p.req_str("operation")?,
            operation_params: p.opt_obj("operationParams")?,
        }),
        "subscribe" => Method::Subscribe(Subscribe {
            object: p.req_str("object")?,
            event: p.req_str("type")?,
        }),
        "unsubscribe" => {
            require_session()?;
            Method::Unsubscribe(Unsubscribe {
                object: p.req_str("object")?,
                subscription: p.req_str("subscription")?,
            })
        }
        "release" => Method::Release(p.req_str("object")?),
        "describe" => Method::Describe(p.req_str("object")?),
        "ref" => {
            require_session()?;
            Method::Ref(p.req_str("object")?)
        }
        "unref" => {
            require_session()?;
            Method::Unref(p.req_str("object")?)
        }
        "keepAlive" => {
            require_session()?;
            Method::KeepAlive
        }
        "transaction" => match p.0.get("operations") {
            Some(Value::Array(ops)) => Method::Transaction(ops.clone()),
            None | Some(Value::Null) => return Err(KurentoError::param_required("operations")),
            Some(_) => return Err(KurentoError::param_type("operations", "array")),
        },
        "closeSession" => {
            require_session()?;
            Method::CloseSession(p.opt_bool("release")?)
        }
        _ => unreachable!("method names were checked above"),
    };
    Ok(Call { method, session_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kms_parameter_rules() {
        let e = parse_call("create", None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        let e = parse_call("create", Some(&json!({}))).unwrap_err();
        assert_eq!(e.message, "'type' parameter is required");
        assert_eq!(e.code.code(), -32000);
        let e = parse_call("invoke", Some(&json!({"object":"a","operation":[]}))).unwrap_err();
        assert_eq!(e.message, "'operation' parameter should be a string");
        let e = parse_call("keepAlive", Some(&json!({}))).unwrap_err();
        assert_eq!(e.message, "'sessionId' parameter is required");
        assert_eq!(
            parse_call("nope", None).unwrap_err().code,
            ErrorCode::MethodNotFound
        );
        let c = parse_call("ping", None).unwrap();
        assert_eq!(c.method, Method::Ping);
        let c = parse_call(
            "invoke",
            Some(&json!({"object":"o","operation":"getName","sessionId":"s"})),
        )
        .unwrap();
        assert_eq!(c.session_id.as_deref(), Some("s"));
    }
}
