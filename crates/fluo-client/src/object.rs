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

    /// `release`: the object (and, for a pipeline or hub, what it holds) is destroyed.
    fn release(&self) -> impl std::future::Future<Output = Result<()>> + Send {
        let o = self.object_ref().clone();
        async move { o.client.release_raw(&o.id).await }
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

/// Encodes a complex type with the `__module__` and `__type__` KMS reads it by.
pub fn encode_complex<T: serde::Serialize>(v: &T, module: &str, type_name: &str) -> Value {
    let mut j = encode(v);
    if let Value::Object(m) = &mut j {
        m.insert("__module__".into(), Value::from(module));
        m.insert("__type__".into(), Value::from(type_name));
    }
    j
}

/// Decodes a returned object id into a handle.
pub fn decode_object<T: RemoteObject>(client: &Client, v: Value) -> Result<T> {
    match v.as_str() {
        Some(id) => Ok(T::from_id(client.clone(), id)),
        None => Err(Error::Protocol(format!("expected an object id, got {v}"))),
    }
}

/// Decodes a returned array of object ids into handles.
pub fn decode_objects<T: RemoteObject>(client: &Client, v: Value) -> Result<Vec<T>> {
    match v {
        Value::Array(ids) => ids.into_iter().map(|v| decode_object(client, v)).collect(),
        other => Err(Error::Protocol(format!("expected object ids, got {other}"))),
    }
}

impl Client {
    /// The server's ServerManager (`manager_ServerManager`, reachable from every session).
    pub fn server_manager(&self) -> crate::model::ServerManager {
        crate::model::ServerManager::from_id(self.clone(), "manager_ServerManager")
    }
}
