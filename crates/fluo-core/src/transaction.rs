//! `transaction`: a batch of requests run in order in one session, where `newref:<k>` names
//! the object created by operation `k` of the same batch. Execution stops at the first
//! failing operation; the result lists the responses produced so far.

use crate::engine::{Engine, Mode};
use fluo_api::jsonrpc::{parse_value, Incoming, Response};
use fluo_api::params::parse_call;
use fluo_api::{ErrorCode, KurentoError};
use serde_json::{json, Value};

impl Engine {
    pub(crate) fn transaction(
        &mut self,
        session: &str,
        ops: Vec<Value>,
    ) -> Result<Value, KurentoError> {
        let malformed = |m: String| KurentoError::new(ErrorCode::MalformedTransaction, m);
        if ops.len() > self.config.max_transaction_ops {
            return Err(KurentoError::new(
                ErrorCode::NotEnoughResources,
                format!(
                    "Limit reached: at most {} operations per transaction",
                    self.config.max_transaction_ops
                ),
            ));
        }
        // Check every id first: a malformed batch runs nothing.
        for (i, op) in ops.iter().enumerate() {
            if op.get("id").and_then(Value::as_u64) != Some(i as u64) {
                return Err(malformed(format!("Id of request '{i}' should be '{i}'")));
            }
        }
        let mut responses: Vec<Value> = Vec::with_capacity(ops.len());
        let mut created: Vec<Option<String>> = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let id = Some(Value::from(i as u64));
            let outcome = self.transaction_op(session, op, &created);
            created.push(
                outcome
                    .as_ref()
                    .ok()
                    .and_then(|v| v.get("value"))
                    .and_then(Value::as_str)
                    .map(String::from),
            );
            let failed = outcome.is_err();
            responses.push(Response { id, outcome }.to_value());
            if failed {
                break;
            }
        }
        Ok(json!({"value": responses}))
    }

    fn transaction_op(
        &mut self,
        session: &str,
        op: Value,
        created: &[Option<String>],
    ) -> Result<Value, KurentoError> {
        let req = match parse_value(op) {
            Ok(Incoming::Request(r)) => r,
            Ok(Incoming::Response) | Err(_) => {
                return Err(KurentoError::new(
                    ErrorCode::MalformedTransaction,
                    "Transaction operations must be JSON-RPC requests",
                ))
            }
        };
        let mut params = req.params.unwrap_or_else(|| json!({}));
        resolve_newrefs(&mut params, created)?;
        if let Value::Object(m) = &mut params {
            m.insert("sessionId".into(), Value::from(session));
        }
        let call = parse_call(&req.method, Some(&params))?;
        let (_, outcome) = self.execute(None, call, Mode::InTransaction);
        outcome
    }
}

/// Replaces every `"newref:<k>"` string (recursively) with the id created by operation `k`.
fn resolve_newrefs(v: &mut Value, created: &[Option<String>]) -> Result<(), KurentoError> {
    match v {
        Value::String(s) => {
            if let Some(k) = s.strip_prefix("newref:") {
                let id = k
                    .parse::<usize>()
                    .ok()
                    .and_then(|k| created.get(k).cloned().flatten())
                    .ok_or_else(|| {
                        KurentoError::new(
                            ErrorCode::MalformedTransaction,
                            format!(
                                "'{s}' does not name an object created earlier in this transaction"
                            ),
                        )
                    })?;
                *s = id;
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| resolve_newrefs(x, created)),
        Value::Object(m) => m.values_mut().try_for_each(|x| resolve_newrefs(x, created)),
        _ => Ok(()),
    }
}
