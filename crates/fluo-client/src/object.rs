//! What every generated handle shares: its client and id.

use crate::client::Client;
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// A client and an object id: the inside of every handle.
#[derive(Clone)]
pub struct ObjectRef {
    /// The client the object is reached through.
    pub client: Client,
    /// The object's id.
    pub id: Arc<str>,
}

impl std::fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// A handle of a remote class of the model.
pub trait RemoteObject: Sized + Send + Sync {
    /// The class name (`create`'s `type`).
    const CLASS: &'static str;
    /// The inside.
    fn object_ref(&self) -> &ObjectRef;
    /// A handle of this class for `id` (the caller knows the object is of this class).
    fn from_id(client: Client, id: &str) -> Self;

    /// The object's id.
    fn id(&self) -> &str {
        &self.object_ref().id
    }

    /// The client.
    fn client(&self) -> &Client {
        &self.object_ref().client
    }
}

/// Decodes an invoke's `value` into `T`.
pub fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Protocol(format!("result does not fit: {e}")))
}

/// Encodes a parameter.
pub fn encode<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
