//! `transaction`: several operations in one request, run in order by the server, with the
//! objects created inside referred to as `newref:<index>`.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::object::RemoteObject;
use serde_json::{json, Value};

/// An object created by an earlier operation of the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxObject(pub usize);

impl TxObject {
    /// How operations of the transaction name it (`"newref:<index>"`).
    pub fn reference(self) -> Value {
        Value::String(format!("newref:{}", self.0))
    }
}

/// A transaction being built; [`Transaction::commit`] sends it.
#[derive(Debug)]
pub struct Transaction {
    client: Client,
    ops: Vec<Value>,
}

impl Transaction {
    pub(crate) fn new(client: Client) -> Self {
        Transaction {
            client,
            ops: Vec::new(),
        }
    }

    fn push(&mut self, method: &str, params: Value) -> usize {
        let i = self.ops.len();
        self.ops
            .push(json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params}));
        i
    }

    /// Adds a `create` of `type_name`; `params` may name objects created earlier in the
    /// transaction by [`TxObject::reference`].
    pub fn create(&mut self, type_name: &str, params: Value) -> TxObject {
        let mut p = json!({"type": type_name, "properties": {}});
        if params.as_object().is_some_and(|m| !m.is_empty()) {
            p["constructorParams"] = params;
        }
        TxObject(self.push("create", p))
    }

    /// Adds an `invoke`; `object` is an id string or a [`TxObject::reference`]. Its index.
    pub fn invoke(&mut self, object: impl Into<Value>, operation: &str, params: Value) -> usize {
        let mut p = json!({"object": object.into(), "operation": operation});
        if !params.is_null() {
            p["operationParams"] = params;
        }
        self.push("invoke", p)
    }

    /// Adds a `release` of `object`. Its index.
    pub fn release(&mut self, object: impl Into<Value>) -> usize {
        self.push("release", json!({"object": object.into()}))
    }

    /// Sends the transaction. The outer request fails only when the whole transaction was
    /// refused (e.g. 40008); each operation's own outcome is in the [`TxResults`].
    pub async fn commit(self) -> Result<TxResults> {
        let n = self.ops.len();
        let r = self
            .client
            .request("transaction", json!({"operations": self.ops}))
            .await?;
        let Some(list) = r.get("value").and_then(Value::as_array) else {
            return Err(Error::Protocol(format!("transaction answered {r}")));
        };
        let mut out: Vec<Result<Value>> = (0..n).map(|i| Err(Error::NotExecuted(i))).collect();
        for sub in list {
            let Some(i) = sub.get("id").and_then(Value::as_u64).map(|i| i as usize) else {
                return Err(Error::Protocol(format!("sub-response without id: {sub}")));
            };
            let Some(slot) = out.get_mut(i) else {
                return Err(Error::Protocol(format!("sub-response id {i} out of range")));
            };
            *slot = match (sub.get("result"), sub.get("error")) {
                (Some(r), None) => Ok(r.get("value").cloned().unwrap_or(Value::Null)),
                (None, Some(e)) => Err(Error::from_wire(e)),
                _ => Err(Error::Protocol(format!("bad sub-response {sub}"))),
            };
        }
        Ok(TxResults {
            client: self.client,
            results: out,
        })
    }
}

/// Each operation's outcome, by index.
#[derive(Debug)]
pub struct TxResults {
    client: Client,
    results: Vec<Result<Value>>,
}

impl TxResults {
    /// Operation `i`'s `value` (`Null` for void ones) or its error
    /// ([`Error::NotExecuted`] when an earlier one failed).
    pub fn get(&self, i: usize) -> Result<&Value> {
        match self.results.get(i) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => Err(Error::NotExecuted(i)),
        }
    }

    /// The object created by `obj`, as a typed handle.
    pub fn object<T: RemoteObject>(&self, obj: TxObject) -> Result<T> {
        let v = self.get(obj.0)?;
        let id = v
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("create answered {v}")))?;
        Ok(T::from_id(self.client.clone(), id))
    }

    /// How many operations the transaction had.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether it had none.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

impl Client {
    /// Starts a transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }
}
