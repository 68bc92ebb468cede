import type { Redis } from 'ioredis';

/*
 * The Lua scripts behind RedisLimits and RedisBus. Each runs atomically, so a
 * check and the count it guards can never be split by another member. Clocks
 * are Redis's (TIME), never a member's: members on several hosts agree on
 * bucket refills and expiries whatever their own clocks say.
 *
 * The limits' keys (KEYS[1..3] of every limits script):
 *   members  ZSET   member id -> when it expires (ms), unless it heartbeats
 *   agg      HASH   field -> sum over the live members
 *   m:<id>   HASH   field -> what one member holds
 * Fields: `g` (gateway), `r:<route>`, `i:<scope> <key>` (per address).
 * ARGV[1..3] of every limits script: member id, the prefix of member hashes, member TTL (ms).
 */

const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Takes a member out: its holdings leave the aggregate, so a crashed member's sessions expire.
local function drop(members, agg, mprefix, id)
  local mkey = mprefix .. id
  local h = redis.call('HGETALL', mkey)
  for i = 1, #h, 2 do
    if redis.call('HINCRBY', agg, h[i], -tonumber(h[i + 1])) <= 0 then redis.call('HDEL', agg, h[i]) end
  end
  redis.call('DEL', mkey)
  redis.call('ZREM', members, id)
end
-- A few at a time: every call reaps, so the dead go soon without one call doing unbounded work.
local function reap(members, agg, mprefix, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', members, '-inf', now, 'LIMIT', 0, 8)) do
    drop(members, agg, mprefix, id)
  end
end
local now = now_ms()
reap(KEYS[1], KEYS[2], ARGV[2], now)
local missing = redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and 1 or 0
`;

/**
 * KEYS[4]: the address's token bucket. ARGV[4..10]: rate/s, burst, per-address field,
 * perIp.maxConnections, route field, routeMax, globalMax.
 * Returns {outcome, detail, missing}: 0 admitted; 1 rate (detail: ms until a token);
 * 2 per-address sessions (detail: how many); 3 route or gateway cap.
 * `missing`: this member was not registered (reaped as dead): the caller must resync.
 */
const ADMIT = `${PRELUDE}
local rate = tonumber(ARGV[4])
if rate > 0 then
  local burst = tonumber(ARGV[5])
  local b = redis.call('HMGET', KEYS[4], 't', 's')
  local tokens = burst
  if b[2] then
    local elapsed = now - tonumber(b[2])
    tokens = tonumber(b[1])
    if elapsed > 0 then tokens = tokens + elapsed * rate / 1000 end
    if tokens > burst then tokens = burst end
  end
  local ok = tokens >= 1
  if ok then tokens = tokens - 1 end
  redis.call('HSET', KEYS[4], 't', tostring(tokens), 's', now)
  -- Once full again a bucket is the same as no bucket: let idle ones vanish.
  redis.call('PEXPIRE', KEYS[4], math.ceil(burst * 1000 / rate) + 1000)
  if not ok then return {1, math.ceil((1 - tokens) * 1000 / rate), missing} end
end
local ip = tonumber(redis.call('HGET', KEYS[2], ARGV[6]) or '0')
if ip >= tonumber(ARGV[7]) then return {2, ip, missing} end
if tonumber(redis.call('HGET', KEYS[2], ARGV[8]) or '0') >= tonumber(ARGV[9])
  or tonumber(redis.call('HGET', KEYS[2], 'g') or '0') >= tonumber(ARGV[10]) then
  return {3, 0, missing}
end
for _, f in ipairs({ARGV[6], ARGV[8], 'g'}) do
  redis.call('HINCRBY', KEYS[2], f, 1)
  redis.call('HINCRBY', KEYS[3], f, 1)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return {0, 0, missing}
`;

/**
 * ARGV[4..]: field, delta pairs (a release is -1s). A member hash never goes
 * below 0 and the aggregate moves only by what the member really gave back:
 * a resync may already have left a released session out. Returns `missing`;
 * a reaped member changes nothing (its counts are gone) and must resync.
 */
const MOVE = `${PRELUDE}
if missing == 1 then return 1 end
for i = 4, #ARGV, 2 do
  local f, d = ARGV[i], tonumber(ARGV[i + 1])
  local v = redis.call('HINCRBY', KEYS[3], f, d)
  if v <= 0 then
    redis.call('HDEL', KEYS[3], f)
    if v < 0 then d = d - v end
  end
  if d ~= 0 and redis.call('HINCRBY', KEYS[2], f, d) <= 0 then redis.call('HDEL', KEYS[2], f) end
end
return 0
`;

/** Refreshes the member's expiry; returns `missing` (then it stays out until a resync). */
const HEARTBEAT = `${PRELUDE}
if missing == 0 then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1]) end
return missing
`;

/**
 * ARGV[4]: 'reset', 'add' or 'leave'; ARGV[5..]: field, count pairs. 'reset'
 * replaces the member's hash with the counts given and moves the aggregate by
 * the difference; 'add' adds more (the next chunk of one snapshot: returns
 * `missing` and changes nothing if the member is gone); 'leave' takes the
 * member out for good.
 */
const SYNC = `${PRELUDE}
if ARGV[4] == 'add' then
  if missing == 1 then return 1 end
else
  drop(KEYS[1], KEYS[2], ARGV[2], ARGV[1])
  if ARGV[4] == 'leave' then return 0 end
end
for i = 5, #ARGV, 2 do
  local f, n = ARGV[i], tonumber(ARGV[i + 1])
  if n > 0 then
    redis.call('HINCRBY', KEYS[2], f, n)
    redis.call('HINCRBY', KEYS[3], f, n)
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 0
`;

/** KEYS: drains hash, channel. ARGV: target, '1' drained or '0', the message to publish. */
const DRAIN = `
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], ARGV[1], '1') else redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 0
`;

/**
 * KEYS: records hash (id -> JSON), heartbeats ZSET (id -> Redis ms). ARGV: TTL (ms),
 * then for a write: id, JSON. Prunes the stale, writes, and returns id, JSON,
 * heartbeat triples of the live records.
 */
const REGISTRY = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
if ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[2], now, ARGV[2])
end
local out = {}
local hb = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #hb, 2 do
  local json = redis.call('HGET', KEYS[1], hb[i])
  if json then
    out[#out + 1] = hb[i]
    out[#out + 1] = json
    out[#out + 1] = hb[i + 1]
  end
end
return out
`;

type Arg = string | number;

export interface LimitsCommands {
  wsgateAdmit(...args: Arg[]): Promise<[number, number, number]>;
  wsgateMove(...args: Arg[]): Promise<number>;
  wsgateHeartbeat(...args: Arg[]): Promise<number>;
  wsgateSync(...args: Arg[]): Promise<number>;
}

export interface BusCommands {
  wsgateDrain(...args: Arg[]): Promise<number>;
  wsgateRegistry(...args: Arg[]): Promise<string[]>;
}

export function defineLimitsCommands(client: Redis): Redis & LimitsCommands {
  client.defineCommand('wsgateAdmit', { numberOfKeys: 4, lua: ADMIT });
  client.defineCommand('wsgateMove', { numberOfKeys: 3, lua: MOVE });
  client.defineCommand('wsgateHeartbeat', { numberOfKeys: 3, lua: HEARTBEAT });
  client.defineCommand('wsgateSync', { numberOfKeys: 3, lua: SYNC });
  return client as Redis & LimitsCommands;
}

export function defineBusCommands(client: Redis): Redis & BusCommands {
  client.defineCommand('wsgateDrain', { numberOfKeys: 2, lua: DRAIN });
  client.defineCommand('wsgateRegistry', { numberOfKeys: 2, lua: REGISTRY });
  return client as Redis & BusCommands;
}
