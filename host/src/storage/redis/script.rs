//! The commit: the Lua script that checks and applies a whole batch atomically inside Redis,
//! the `EVALSHA` that sends it (loading the script again on `NOSCRIPT`), and the reading of its
//! reply. In one file because the script's `KEYS`/`ARGV` layout and its reply format are a
//! protocol between the Lua text and the Rust code on either side of it, which must change
//! together.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, Script, ServerErrorKind, Value};

use super::RedisStorage;
use super::connection::Stage;
use crate::storage::{CommitOutcome, StorageError, Write, WriteOp};

/// The conditional, atomic commit of one batch (see [`RedisStorage`] for the layout).
///
/// Redis runs a script alone, so nothing changes between its checks and its writes. Everything
/// that could make a write fail midway (a key of the wrong type) is checked before the first
/// write, because Redis does not roll a script back; on OOM the first write is refused and so
/// nothing is applied either. Keys and values arrive as binary arguments, never as Lua source.
const COMMIT_LUA: &str = r#"
-- KEYS[1] version counter, KEYS[2] sorted set of live keys, KEYS[2 + i] hash of write i.
-- ARGV[4i-3 .. 4i]: write i's key, op ('put' or 'del'), expected version ('' = none), value.
-- Returns {1, version of each write (0 for a delete)} or {0, index of the first failing write}.
local n = #KEYS - 2
local counter = redis.call('GET', KEYS[1])
if counter and not string.match(counter, '^%d+$') then
  return redis.error_reply('CKPTDAMAGED the version counter is not a number')
end
local index_type = redis.call('TYPE', KEYS[2])['ok']
if index_type ~= 'zset' and index_type ~= 'none' then
  return redis.error_reply('CKPTDAMAGED the key index is a ' .. index_type .. ', not a zset')
end
for i = 1, n do
  local entry_type = redis.call('TYPE', KEYS[2 + i])['ok']
  if entry_type ~= 'hash' and entry_type ~= 'none' then
    return redis.error_reply('CKPTDAMAGED the entry of write ' .. (i - 1) .. ' is a '
      .. entry_type .. ', not a hash')
  end
end
for i = 1, n do
  local expected = ARGV[4 * i - 1]
  if expected ~= '' then
    local current = redis.call('HGET', KEYS[2 + i], 'ver') or '0'
    if current ~= expected then
      return {0, i - 1}
    end
  end
end
local reply = {1}
for i = 1, n do
  local key = ARGV[4 * i - 3]
  if ARGV[4 * i - 2] == 'put' then
    local version = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2 + i], 'v', ARGV[4 * i], 'ver', string.format('%d', version))
    redis.call('ZADD', KEYS[2], 0, key)
    reply[i + 1] = version
  else
    redis.call('DEL', KEYS[2 + i])
    redis.call('ZREM', KEYS[2], key)
    reply[i + 1] = 0
  end
end
return reply
"#;

static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMMIT_LUA));

impl RedisStorage {
    /// Sends one batch as one `EVALSHA` of the commit script on a pooled connection and reads
    /// the outcome from its reply.
    pub(super) fn run_commit_script(
        &self,
        writes: &[Write],
    ) -> Result<CommitOutcome, StorageError> {
        let cmd = self.commit_command(writes);
        let mut conn = self.connection("commit")?;
        let mut reply = cmd.query::<Value>(&mut conn.inner);
        if matches!(&reply, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)) {
            // The server does not know the script yet (new, restarted or flushed): it ran
            // nothing. Load it and send the commit again.
            if let Err(e) = COMMIT_SCRIPT.load(&mut conn.inner) {
                conn.broken = true;
                return Err(self.error("commit (loading the script)", Stage::NotApplied, &e));
            }
            reply = cmd.query::<Value>(&mut conn.inner);
        }
        let reply = reply.map_err(|e| {
            conn.broken = true;
            self.error("commit", Stage::InFlight, &e)
        })?;
        commit_outcome(&reply, writes).ok_or_else(|| {
            conn.broken = true;
            StorageError::Timeout(format!(
                "redis commit at {}: unexpected reply {reply:?}; whether the batch was applied \
                 is unknown",
                self.server
            ))
        })
    }

    fn commit_command(&self, writes: &[Write]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(COMMIT_SCRIPT.get_hash())
            .arg(writes.len() + 2)
            .arg(&self.keys.counter)
            .arg(&self.keys.index);
        for write in writes {
            cmd.arg(self.keys.entry(&write.key));
        }
        for write in writes {
            let expected = write
                .expected_version
                .map_or_else(String::new, |v| v.to_string());
            cmd.arg(write.key.as_bytes());
            match &write.op {
                WriteOp::Put(value) => cmd.arg("put").arg(expected).arg(value.as_slice()),
                WriteOp::Delete => cmd.arg("del").arg(expected).arg(&[] as &[u8]),
            };
        }
        cmd
    }
}

/// Reads the script's reply: `[1, version...]` or `[0, index]`.
fn commit_outcome(reply: &Value, writes: &[Write]) -> Option<CommitOutcome> {
    let Value::Array(items) = reply else {
        return None;
    };
    let ints: Option<Vec<i64>> = items
        .iter()
        .map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .collect();
    match ints?.as_slice() {
        [0, index] => {
            let index = u32::try_from(*index).ok()?;
            (usize::try_from(index).ok()? < writes.len()).then_some(CommitOutcome::Conflict(index))
        }
        [1, versions @ ..] if versions.len() == writes.len() => {
            let versions: Option<Vec<u64>> = versions
                .iter()
                .zip(writes)
                .map(|(v, w)| {
                    let v = u64::try_from(*v).ok()?;
                    let ok = match w.op {
                        WriteOp::Put(_) => v > 0,
                        WriteOp::Delete => v == 0,
                    };
                    ok.then_some(v)
                })
                .collect();
            Some(CommitOutcome::Committed(versions?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Write {
        Write {
            key: key.to_owned(),
            expected_version: None,
            op: WriteOp::Put(vec![1]),
        }
    }

    #[test]
    fn script_replies_outside_the_protocol_are_not_taken_as_outcomes() {
        let writes = [put("a"), put("b")];
        let ints = |v: &[i64]| Value::Array(v.iter().map(|i| Value::Int(*i)).collect());
        assert_eq!(
            commit_outcome(&ints(&[1, 4, 5]), &writes),
            Some(CommitOutcome::Committed(vec![4, 5]))
        );
        assert_eq!(
            commit_outcome(&ints(&[0, 1]), &writes),
            Some(CommitOutcome::Conflict(1))
        );
        for bad in [
            ints(&[1, 4]),
            ints(&[1, 4, 0]),
            ints(&[0, 2]),
            ints(&[0, -1]),
            ints(&[2]),
            Value::Nil,
        ] {
            assert_eq!(commit_outcome(&bad, &writes), None, "{bad:?}");
        }
    }
}
