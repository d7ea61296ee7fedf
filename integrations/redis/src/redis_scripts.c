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

const char *const pf__redis_scripts[SCRIPT_COUNT] = {
    [SCRIPT_BREAKER] = breaker_lua,
    [SCRIPT_RATELIMIT] = ratelimit_lua,
};
