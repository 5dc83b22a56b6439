//! The store on Redis 7. Keys (docs/cluster.md):
//!
//! - `fluo:boot:<node>`: the node id's last boot (INCR at registration; no TTL);
//! - `fluo:node:<node>`: the node's record, JSON ([`NodeRecord`]), `PX 3000`: it expires 3 s
//!   after the last heartbeat;
//! - `fluo:nodes`: a set of node ids, pruned of those whose record expired when listed;
//! - `fluo:pipeline:<pipeline>`: the owner, JSON ([`Owner`]; a dead owner is told by its
//!   boot, see [`crate::Ownership::Gone`]), `PX` [`OWNED_TTL`], refreshed by its owner's
//!   heartbeats: a dead node's records go 10 min after its last heartbeat;
//! - `fluo:owned:<node>:<boot>`: the set of pipelines that boot of that node claimed (how its
//!   heartbeat finds the records to refresh), with the same TTL;
//! - `fluo:session:<session>`: the set of the owners a client session lives on, each as
//!   JSON ([`Owner`]), `PX` as its writer (the client's entry) says; written again while
//!   the client is connected there, it expires after the client left (docs/cluster.md).
//!
//! Checks and writes that must not interleave with another node's are Lua scripts (EVAL:
//! atomic in Redis, and nothing to load again after Redis restarts). One multiplexed
//! connection is kept; a call that finds it broken, or that times out, drops it (unless
//! another call replaced it already: connections carry a generation) and the next
//! call connects again, so Redis restarting costs the calls made while it is down, each of
//! them bounded by the time-out.

use crate::{Error, NodeId, NodeRecord, Owner, Ownership, NODE_TTL, OWNED_TTL};
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, FromRedisValue, RedisError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BOOT: &str = "fluo:boot:";
const NODE: &str = "fluo:node:";
const NODES: &str = "fluo:nodes";
const PIPELINE: &str = "fluo:pipeline:";
const OWNED: &str = "fluo:owned:";
const SESSION: &str = "fluo:session:";
/// Present for [`crate::SETTLE`] after a node found its records lost (Redis lost its data),
/// set again while it re-claims: the nodes are claiming their pipelines again.
const SETTLING: &str = "fluo:settling";

/// The key of the set of pipelines `node` claimed in `boot`.
fn owned_key(node: &str, boot: u64) -> String {
    format!("{OWNED}{node}:{boot}")
}

/// Writes a node's record unless a later boot of its id registered; returns the id's last
/// boot (raised to this one's if lower) and 1 when the store lost this node's records, else
/// 0. Lost: the boot counter was lower (Redis restarted empty), the node's record was gone
/// (but on the first heartbeat of a boot), or its set of owned pipelines holds fewer than
/// the node claimed (an older snapshot reloaded, keys evicted or deleted). Then, and while
/// the node says it re-claims, the settling marker is set (see [`SETTLING`]). Depending on
/// the store's state only, it says lost again when run again before the claims are.
/// Its owned pipelines' records (and their set) live [`OWNED_TTL`] more.
/// KEYS: node key, node set, boot key, owned set, settling marker. ARGV: record, id, boot,
/// TTL in ms, pipelines' TTL in ms, pipeline key prefix, settling time in ms, claimed count,
/// re-claiming (1/0), first heartbeat of the boot (1/0).
const HEARTBEAT: &str = r"
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local mine = tonumber(ARGV[3])
if last > mine then return {last, 0} end
local lost = 0
if last < mine then
  redis.call('SET', KEYS[3], ARGV[3])
  lost = 1
end
if ARGV[10] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then lost = 1 end
if redis.call('SCARD', KEYS[4]) < tonumber(ARGV[8]) then lost = 1 end
if lost == 1 or ARGV[9] == '1' then
  redis.call('SET', KEYS[5], '1', 'PX', ARGV[7])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
for _, p in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('PEXPIRE', ARGV[6] .. p, ARGV[5])
end
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {mine, lost}
";

/// The live records; ids whose record expired leave the set.
/// KEYS: node set. ARGV: node key prefix.
const NODES_LIVE: &str = r"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then table.insert(out, v) else redis.call('SREM', KEYS[1], id) end
end
return out
";

/// Removes a node's record if it is this boot's. KEYS: node key. ARGV: boot.
const LEAVE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).boot == tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return 0
";

/// `{1, owner}` when the claim holds (nobody owned it, this node in this boot did, or the
/// owner is gone), `{0, owner}` when a live node owns it.
/// The record and the claimer's set of owned pipelines live [`OWNED_TTL`].
/// KEYS: pipeline key, the claimer's owned set. ARGV: node id, boot, owner record, node key
/// prefix, pipeline id, TTL in ms.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local o = cjson.decode(cur)
  if not (o.node == ARGV[1] and o.boot == tonumber(ARGV[2])) then
    local n = redis.call('GET', ARGV[4] .. o.node)
    if n and cjson.decode(n).boot == o.boot then return {0, cur} end
  end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {1, ARGV[3]}
";

/// `{owner, 1}` when its node is live in that boot, `{owner, 0}` when gone, nil when unowned,
/// `{'', 2}` when no record is found while the store settles (the settling marker is set,
/// or no node is listed: it restarted and no node wrote its record yet).
/// KEYS: pipeline key, settling marker, node set. ARGV: node key prefix.
const OWNER: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then
  if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('SCARD', KEYS[3]) == 0 then
    return {'', 2}
  end
  return false
end
local o = cjson.decode(cur)
local n = redis.call('GET', ARGV[1] .. o.node)
if n and cjson.decode(n).boot == o.boot then return {cur, 1} end
return {cur, 0}
";

/// `{0, ''}` unowned, `{1, owner}` released, `{2, owner}` owned by another.
/// KEYS: pipeline key, the releaser's owned set. ARGV: node id, boot, pipeline id.
const RELEASE: &str = r"
redis.call('SREM', KEYS[2], ARGV[3])
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
local o = cjson.decode(cur)
if o.node == ARGV[1] and o.boot == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return {1, cur}
end
return {2, cur}
";

/// Adds owners to sessions' sets, each set living the TTL more.
/// KEYS: the sessions' keys. ARGV: TTL in ms, then per key its owners (JSON, one a line).
const SESSIONS_WRITE: &str = r"
for i, k in ipairs(KEYS) do
  for o in string.gmatch(ARGV[i + 1], '[^\n]+') do redis.call('SADD', k, o) end
  redis.call('PEXPIRE', k, ARGV[1])
end
return #KEYS
";

/// An EVAL of `script` on `keys` with `args`.
fn eval(script: &str, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    for a in args {
        c.arg(*a);
    }
    c
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Protocol(e.to_string()))
}

fn parse_owner(text: &str) -> Result<Owner, Error> {
    serde_json::from_str(text).map_err(|e| Error::Protocol(format!("an owner record: {e}")))
}

/// `url` fit to print: no user info (a password), no query (`?pass=`).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, "?..."),
        None => (rest, ""),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("...@{host}"),
        None => rest.to_string(),
    };
    format!("{scheme}://{rest}{query}")
}

/// An error Redis answered, in short: its code and, for a script's error, the script's own
/// message (without `user_script:N:` and the script's hash).
fn short(e: &RedisError) -> String {
    let code = e.code().unwrap_or("error");
    let detail = e.detail().unwrap_or("");
    let detail = detail.split(" script: ").next().unwrap_or("");
    let detail = match detail.strip_prefix("user_script:") {
        Some(d) => d.split_once(": ").map_or(d, |(_, m)| m),
        None => detail,
    };
    let detail: String = detail.trim().chars().take(120).collect();
    if detail.is_empty() {
        format!("Redis answered {code}")
    } else {
        format!("Redis answered {code}: {detail}")
    }
}

/// Whether `e` is Redis's answer (an error of a script, of a type): the connection works.
fn answered(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ResponseError
            | ErrorKind::ExtensionError
            | ErrorKind::TypeError
            | ErrorKind::ExecAbortError
            | ErrorKind::NoScriptError
    )
}

pub(crate) struct RedisStore {
    client: redis::Client,
    /// The connection, once made, with its generation; `None` after it failed.
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// The last connection's generation.
    generation: AtomicU64,
    timeout: Duration,
}

impl RedisStore {
    /// Checks `url` (redis:// or redis+unix://) without reaching it.
    pub(crate) fn open(url: &str, timeout: Duration) -> Result<RedisStore, Error> {
        let bad = || Error::BadUrl {
            url: redacted(url),
            why: "not a valid URL: use redis://host:port or redis+unix:///path".into(),
        };
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(bad());
        }
        let client = redis::Client::open(url).map_err(|_| bad())?;
        Ok(RedisStore {
            client,
            conn: Mutex::new(None),
            generation: AtomicU64::new(0),
            timeout,
        })
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops the connection of generation `failed` (0: none was used), unless another call
    /// replaced it already with a new one that has not failed.
    fn forget(&self, failed: u64) {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if failed != 0 && conn.as_ref().is_some_and(|(g, _)| *g == failed) {
            *conn = None;
        }
    }

    /// The connection, its generation and whether it was made before this call; connecting
    /// first if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection, bool), RedisError> {
        if let Some((g, c)) = self.cached() {
            return Ok((g, c, true));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some((g, c.clone()));
        Ok((g, c, false))
    }

    /// Runs `cmd`, connecting first if needed, all within the time-out. A connection made
    /// by an earlier call that fails (Redis restarted since, and only this call finds out) is
    /// made again at once, once; a failure of a new connection (or the time-out) drops it:
    /// the next call connects again. (A command whose answer was lost may run twice. The
    /// state it leaves is the same but for the boot counter's INCR, which then skips a
    /// number (a boot only has to grow); the second answer may differ: a release then finds
    /// no record, and a heartbeat whose first run raised the boot counter says lost only if
    /// the owned set holds fewer than the node claimed, the check it depends on.)
    async fn query<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, Error> {
        // The generation of the connection the command went on (0: none yet).
        let used = AtomicU64::new(0);
        let run = async {
            let (g, mut c, old) = self.connection().await?;
            used.store(g, Ordering::Relaxed);
            match cmd.query_async::<T>(&mut c).await {
                Err(e) if old && !e.is_timeout() && !answered(&e) => {
                    tracing::debug!(
                        "cluster: the connection to Redis broke ({e}); connecting again"
                    );
                    self.forget(g);
                    let (g, mut c, _) = self.connection().await?;
                    used.store(g, Ordering::Relaxed);
                    cmd.query_async::<T>(&mut c).await
                }
                r => r,
            }
        };
        let r = tokio::time::timeout(self.timeout, run).await;
        let used = used.load(Ordering::Relaxed);
        match r {
            Err(_) => {
                self.forget(used);
                Err(Error::Timeout(self.timeout))
            }
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => {
                self.forget(used);
                Err(Error::Timeout(self.timeout))
            }
            // Redis answered with an error (a script's, a type's): the connection is fine.
            Ok(Err(e)) if answered(&e) => {
                // The whole text names Redis internals (a script's hash, @user_script): for
                // the debug log only.
                tracing::debug!("cluster: Redis answered an error: {e}");
                Err(Error::Protocol(short(&e)))
            }
            // Anything else (refused, closed, reset, a broken stream, Redis still loading):
            // a new connection next time.
            Ok(Err(e)) => {
                self.forget(used);
                Err(Error::Unavailable(e.to_string()))
            }
        }
    }

    pub(crate) async fn next_boot(&self, id: &NodeId) -> Result<u64, Error> {
        let mut c = redis::cmd("INCR");
        c.arg(format!("{BOOT}{id}"));
        self.query(c).await
    }

    /// Whether the store had lost this node's records (see [`crate::Coordinator::heartbeat`]).
    pub(crate) async fn heartbeat(
        &self,
        r: &NodeRecord,
        beat: crate::Beat,
        first: bool,
    ) -> Result<bool, Error> {
        let id = r.info.id.as_str();
        let (node, boot_key) = (format!("{NODE}{id}"), format!("{BOOT}{id}"));
        let owned = owned_key(id, r.boot);
        let (record, boot) = (json(r)?, r.boot.to_string());
        let ttl = NODE_TTL.as_millis().to_string();
        let owned_ttl = OWNED_TTL.as_millis().to_string();
        let settle = crate::SETTLE.as_millis().to_string();
        let claimed = beat.claimed.to_string();
        let flag = |on: bool| if on { "1" } else { "0" };
        let (last, lost): (u64, i64) = self
            .query(eval(
                HEARTBEAT,
                &[
                    node.as_str(),
                    NODES,
                    boot_key.as_str(),
                    owned.as_str(),
                    SETTLING,
                ],
                &[
                    record.as_str(),
                    id,
                    boot.as_str(),
                    ttl.as_str(),
                    owned_ttl.as_str(),
                    PIPELINE,
                    settle.as_str(),
                    claimed.as_str(),
                    flag(beat.reclaiming),
                    flag(first),
                ],
            ))
            .await?;
        if last > r.boot {
            return Err(Error::Superseded {
                node: r.info.id.clone(),
                mine: r.boot,
                current: last,
            });
        }
        Ok(lost == 1)
    }

    pub(crate) async fn leave(&self, id: &NodeId, boot: u64) -> Result<(), Error> {
        let node = format!("{NODE}{id}");
        self.query::<i64>(eval(LEAVE, &[node.as_str()], &[boot.to_string().as_str()]))
            .await
            .map(|_| ())
    }

    pub(crate) async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        let texts: Vec<String> = self.query(eval(NODES_LIVE, &[NODES], &[NODE])).await?;
        // One record this node cannot read (another version's, or not ours) hides only
        // itself, not every other node.
        Ok(texts
            .iter()
            .filter_map(|t| match serde_json::from_str(t) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("cluster: a node record that does not parse, skipped: {e}");
                    None
                }
            })
            .collect())
    }

    pub(crate) async fn claim(&self, pipeline: &str, me: &Owner) -> Result<(), Error> {
        let key = format!("{PIPELINE}{pipeline}");
        let owned = owned_key(me.node.as_str(), me.boot);
        let (record, boot) = (json(me)?, me.boot.to_string());
        let ttl = OWNED_TTL.as_millis().to_string();
        let (ok, cur): (i64, String) = self
            .query(eval(
                CLAIM,
                &[key.as_str(), owned.as_str()],
                &[
                    me.node.as_str(),
                    boot.as_str(),
                    record.as_str(),
                    NODE,
                    pipeline,
                    ttl.as_str(),
                ],
            ))
            .await?;
        if ok == 1 {
            return Ok(());
        }
        Err(Error::Claimed {
            pipeline: pipeline.to_string(),
            owner: parse_owner(&cur)?,
        })
    }

    pub(crate) async fn owner(&self, pipeline: &str) -> Result<Ownership, Error> {
        let key = format!("{PIPELINE}{pipeline}");
        let found: Option<(String, i64)> = self
            .query(eval(OWNER, &[key.as_str(), SETTLING, NODES], &[NODE]))
            .await?;
        Ok(match found {
            None => Ownership::Unowned,
            Some((_, 2)) => return Err(Error::Settling),
            Some((o, 1)) => Ownership::Live(parse_owner(&o)?),
            Some((o, _)) => Ownership::Gone(parse_owner(&o)?),
        })
    }

    pub(crate) async fn write_sessions(
        &self,
        sessions: &[&crate::SessionOwners],
        ttl: Duration,
    ) -> Result<(), Error> {
        if sessions.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = sessions
            .iter()
            .map(|(s, _)| format!("{SESSION}{s}"))
            .collect();
        let mut args = vec![ttl.as_millis().max(1).to_string()];
        for (_, owners) in sessions {
            let lines: Result<Vec<String>, Error> = owners.iter().map(json).collect();
            args.push(lines?.join("\n"));
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.query::<i64>(eval(SESSIONS_WRITE, &keys, &args))
            .await
            .map(|_| ())
    }

    pub(crate) async fn session_owners(&self, session: &str) -> Result<Vec<Owner>, Error> {
        let mut c = redis::cmd("SMEMBERS");
        c.arg(format!("{SESSION}{session}"));
        let texts: Vec<String> = self.query(c).await?;
        // One record this node cannot read hides only itself.
        Ok(texts.iter().filter_map(|t| parse_owner(t).ok()).collect())
    }

    pub(crate) async fn release(&self, pipeline: &str, me: &Owner) -> Result<(), Error> {
        let key = format!("{PIPELINE}{pipeline}");
        let owned = owned_key(me.node.as_str(), me.boot);
        let boot = me.boot.to_string();
        let (code, cur): (i64, String) = self
            .query(eval(
                RELEASE,
                &[key.as_str(), owned.as_str()],
                &[me.node.as_str(), boot.as_str(), pipeline],
            ))
            .await?;
        match code {
            0 | 1 => Ok(()),
            _ => Err(Error::NotOwner {
                pipeline: pipeline.to_string(),
                owner: parse_owner(&cur)?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_told_without_its_password() {
        for (url, shown) in [
            ("redis://user:s3cret@[bad", "redis://...@[bad"),
            ("redis://:s3cret@host:notaport", "redis://...@host:notaport"),
            ("http://u:s3cret@redis:6379", "http://...@redis:6379"),
            ("redis+unix:///x?pass=s3cret&db=x", "redis+unix:///x?..."),
        ] {
            let e = RedisStore::open(url, Duration::from_millis(10))
                .err()
                .expect(url)
                .to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert_eq!(
                e,
                format!(
                    "cluster URL '{shown}': not a valid URL: use redis://host:port or \
                     redis+unix:///path"
                )
            );
        }
    }

    #[test]
    fn a_script_error_is_told_without_redis_internals() {
        let e = RedisError::from((
            ErrorKind::ResponseError,
            "An error was signalled by the server",
            "user_script:4: Expected value but found invalid token at character 1 script: \
             14714e36a1, on @user_script:4."
                .to_string(),
        ));
        let s = short(&e);
        assert!(!s.contains("14714e36") && !s.contains("user_script"), "{s}");
        assert!(s.contains("Expected value but found invalid token"), "{s}");
    }
}
