/* The scripts' text (see redis_scripts.h). */
#include "redis_impl.h"
#include "redis_scripts.h"

/* Breaker state: the hash KEYS[1] = {gen, state, until (Redis ms; -1 =
 * held open)}. ARGV: op ("t" a change made on generation ARGV[2], "s" a
 * periodic comparison carrying the process's view at generation ARGV[2]),
 * generation, state (0 closed, 1 open, 2 half-open), open period in ms
 * (-1 = held open), channel, name, origin.
 *
 * A change is written when made on the stored generation (the stored one
 * + 1); a view, only when its generation is newer than the stored one
 * (an emptied Redis has generation 0: re-seeded). A write is PUBLISHed as
 * "B|name|gen|state|open ms|origin". Returns {written 0/1, gen, state,
 * open ms left (-1 held open, 0 not open), 1 if a view was written}. */
static const char breaker_lua[] =
    "local k = KEYS[1]\n"
    "local op = ARGV[1]\n"
    "local lg = tonumber(ARGV[2])\n"
    "local st = tonumber(ARGV[3])\n"
    "local om = tonumber(ARGV[4])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local cur = redis.call('HMGET', k, 'gen', 'state', 'until')\n"
    "local g = tonumber(cur[1]) or 0\n"
    "if (op == 't' and lg >= g) or lg > g then\n"
    "  local ng = lg\n"
    "  if op == 't' then ng = lg + 1 end\n"
    "  local u = 0\n"
    "  local left = 0\n"
    "  if st == 1 then\n"
    "    if om < 0 then u = -1; left = -1 else u = now + om; left = om end\n"
    "  end\n"
    "  redis.call('HSET', k, 'gen', ng, 'state', st, 'until', u)\n"
    "  redis.call('PUBLISH', ARGV[5], 'B|' .. ARGV[6] .. '|' .. ng .. '|' ..\n"
    "             st .. '|' .. left .. '|' .. ARGV[7])\n"
    "  local seeded = 0\n"
    "  if op == 's' then seeded = 1 end\n"
    "  return {1, ng, st, left, seeded}\n"
    "end\n"
    "local s = tonumber(cur[2]) or 0\n"
    "local u = tonumber(cur[3]) or 0\n"
    "local left = 0\n"
    "if s == 1 then\n"
    "  if u < 0 then left = -1 else left = u - now end\n"
    "  if left == 0 then left = 1 end\n"
    "  if left < -1 then left = 1 end\n"
    "end\n"
    "return {0, g, s, left, 0}\n";

/* Rate limit: GCRA on KEYS[1] = the theoretical arrival time in Redis
 * microseconds (redis-cell's and go-redis/redis_rate's algorithm), for
 * rate ARGV[1] per second and burst ARGV[2]. Lends up to ARGV[3] permits
 * (as many as the bucket holds now) and returns {lent, microseconds
 * until one more is due (0 when all were lent)}. The key expires once
 * the bucket would be full again. */
static const char ratelimit_lua[] =
    "local k = KEYS[1]\n"
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local want = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local iv = 1000000 / rate\n"
    "local tau = iv * burst\n"
    "local tat = tonumber(redis.call('GET', k)) or now\n"
    "if tat < now then tat = now end\n"
    "local n = math.floor((now + tau - tat) / iv + 1e-9)\n"
    "if n > want then n = want end\n"
    "if n < 0 then n = 0 end\n"
    "if n > 0 then\n"
    "  tat = tat + n * iv\n"
    "  redis.call('SET', k, string.format('%.3f', tat), 'PX',\n"
    "             math.ceil(tau / 1000) + 1000)\n"
    "end\n"
    "local wait = 0\n"
    "if n < want then wait = math.ceil(tat + iv - tau - now) end\n"
    "if wait < 1 then wait = 1 end\n"
    "if n == want then wait = 0 end\n"
    "return {n, wait}\n";

/* Bulkhead leases: the hash KEYS[1] maps each holder (a process's
 * object) to "count:expiry ms:token:seq"; KEYS[2] counts fencing tokens.
 * ARGV: holder, count wanted, limit, lease ms, the holder's token (0 =
 * none), the request's sequence number. Expired leases are dropped first.
 * The request SETS the holder's count (never adds to it): a request that
 * timed out at the client and runs late cannot take places nobody will
 * give back, and one older than the holder's last (seq) changes nothing.
 * A lease that expired, or a token that does not match, gets a new token
 * (fencing: the holder learns its places were lost). Grants at most what
 * the other holders leave of the limit. Returns {count granted, token,
 * count of the others, applied 0/1}. */
static const char bulkhead_lua[] =
    "local k = KEYS[1]\n"
    "local holder = ARGV[1]\n"
    "local want = tonumber(ARGV[2])\n"
    "local limit = tonumber(ARGV[3])\n"
    "local ttl = tonumber(ARGV[4])\n"
    "local token = tonumber(ARGV[5])\n"
    "local seq = tonumber(ARGV[6])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local all = redis.call('HGETALL', k)\n"
    "local others = 0\n"
    "local mine = nil\n"
    "for i = 1, #all, 2 do\n"
    "  local c, e, tk, sq = string.match(all[i + 1],\n"
    "    '^(%d+):(%d+):(%d+):(%d+)$')\n"
    "  if c == nil or tonumber(e) < now then\n"
    "    redis.call('HDEL', k, all[i])\n"
    "  elseif all[i] == holder then\n"
    "    mine = {tonumber(c), tonumber(tk), tonumber(sq)}\n"
    "  else\n"
    "    others = others + tonumber(c)\n"
    "  end\n"
    "end\n"
    "if mine ~= nil and seq <= mine[3] then\n"
    "  return {mine[1], mine[2], others, 0}\n"
    "end\n"
    "local tk = token\n"
    "if mine == nil or mine[2] ~= token then\n"
    "  tk = redis.call('INCR', KEYS[2])\n"
    "end\n"
    "local g = want\n"
    "if g > limit - others then g = limit - others end\n"
    "if g < 0 then g = 0 end\n"
    "if g == 0 then\n"
    "  redis.call('HDEL', k, holder)\n"
    "else\n"
    "  redis.call('HSET', k, holder, string.format('%d:%d:%d:%d', g,\n"
    "             now + ttl, tk, seq))\n"
    "  redis.call('PEXPIRE', k, ttl * 2)\n"
    "end\n"
    "return {g, tk, others, 1}\n";

/* Retry budgets: the hash KEYS[1] maps each holder (a process's budget)
 * to "calls:retries:expiry ms", its counts in its window as it last
 * reported them. ARGV: holder, calls, retries, ms the report lasts.
 * Expired reports are dropped; the holder's is replaced. Returns {the
 * others' calls, the others' retries}. */
static const char budget_lua[] =
    "local k = KEYS[1]\n"
    "local holder = ARGV[1]\n"
    "local ttl = tonumber(ARGV[4])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local all = redis.call('HGETALL', k)\n"
    "local oc = 0\n"
    "local orr = 0\n"
    "for i = 1, #all, 2 do\n"
    "  local c, r, e = string.match(all[i + 1], '^(%d+):(%d+):(%d+)$')\n"
    "  if c == nil or tonumber(e) < now then\n"
    "    redis.call('HDEL', k, all[i])\n"
    "  elseif all[i] ~= holder then\n"
    "    oc = oc + tonumber(c)\n"
    "    orr = orr + tonumber(r)\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', k, holder, string.format('%d:%d:%d',\n"
    "           tonumber(ARGV[2]), tonumber(ARGV[3]), now + ttl))\n"
    "redis.call('PEXPIRE', k, ttl * 2)\n"
    "return {oc, orr}\n";

const char *const pf__redis_scripts[SCRIPT_COUNT] = {
    [SCRIPT_BREAKER] = breaker_lua,
    [SCRIPT_RATELIMIT] = ratelimit_lua,
    [SCRIPT_BULKHEAD] = bulkhead_lua,
    [SCRIPT_BUDGET] = budget_lua,
};
