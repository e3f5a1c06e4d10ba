package cluster

import "github.com/redis/go-redis/v9"

// The Lua scripts make each read-check-write atomic in Redis. An owner is
// "<node-id> <incarnation>"; it is alive while node:<node-id> holds the same
// incarnation (node ids contain no spaces, incarnations are hex).

// registerScript writes the heartbeat unless another live process holds the
// node id (a different incarnation whose key has not expired).
//
//	KEYS: node key, nodes set. ARGV: node id, incarnation, info JSON, expiry ms.
//	Returns 1 when it refreshed the heartbeat, 2 when it had to create it
//	(first start, expired, or lost by Redis), 0 when the id is taken.
var registerScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'inc')
if cur and cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'inc', ARGV[2], 'info', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
if cur then return 1 end
return 2
`)

// leaveScript removes the node's heartbeat if it is still this
// incarnation's.
//
//	KEYS: node key, nodes set. ARGV: node id, incarnation.
var leaveScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'inc') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 0
`)

// listScript returns the info of every live node and prunes the index of
// the dead.
//
//	KEYS: nodes set. ARGV: node key prefix.
var listScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local info = redis.call('HGET', ARGV[1] .. id, 'info')
  if info then table.insert(out, info) else redis.call('SREM', KEYS[1], id) end
end
return out
`)

// claimScript claims a session id for this node, unless a live node other
// than this incarnation holds it. Claiming an id this incarnation holds
// succeeds (re-claims after a Redis outage are idempotent).
//
//	KEYS: claim key, this node's key. ARGV: owner, incarnation, node key prefix.
//	Returns {1, previous owner or ""} when granted, {0, owner} when taken,
//	{-1, ""} when this node is not registered.
var claimScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], 'inc') ~= ARGV[2] then return {-1, ''} end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  local node, inc = string.match(cur, '^(%S+) (%S+)$')
  if node and redis.call('HGET', ARGV[3] .. node, 'inc') == inc then return {0, cur} end
end
redis.call('SET', KEYS[1], ARGV[1])
if cur == ARGV[1] then cur = false end
return {1, cur or ''}
`)

// releaseScript deletes a claim only if this owner holds it.
//
//	KEYS: claim key. ARGV: owner.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// locateScript returns the info of the live node that holds a claim, or
// nil.
//
//	KEYS: claim key. ARGV: node key prefix.
var locateScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local node, inc = string.match(cur, '^(%S+) (%S+)$')
if not node then return false end
local h = redis.call('HMGET', ARGV[1] .. node, 'inc', 'info')
if h[1] ~= inc then return false end
return h[2]
`)

// aliveScript returns, for each node id and incarnation pair, 1 when that
// incarnation's heartbeat is live.
//
//	ARGV: node key prefix, id1, inc1, id2, inc2, ...
var aliveScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', ARGV[1] .. ARGV[i], 'inc') == ARGV[i+1] then out[#out+1] = 1 else out[#out+1] = 0 end
end
return out
`)
