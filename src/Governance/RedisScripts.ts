/**
 * The Lua scripts of the Redis store. Each runs atomically inside Redis on Redis's own clock (`TIME`), and touches
 * only the keys it is given, which share one hash tag (one Redis Cluster slot). They repeat `Window.ts` and
 * `Calendar.ts` in Lua; the contract tests hold both stores to the same answers.
 */
import { createHash } from "node:crypto"

/** A script and its SHA-1, for EVALSHA. */
export interface LuaScript {
  readonly name: string
  readonly lua: string
  readonly sha: string
}

const script = (name: string, lua: string): LuaScript => ({
  name,
  lua,
  sha: createHash("sha1").update(lua).digest("hex")
})

/** `now_s` and `now_ms` from Redis's clock. */
const clockLua = `
local redis_time = redis.call('TIME')
local now_s = tonumber(redis_time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(redis_time[2]) / 1000)
`

/**
 * UTC calendar from epoch days (Howard Hinnant's civil-date algorithms: Redis's Lua has no `os.date`), and the
 * period names and ends of `Calendar.ts`.
 */
export const calendarLua = `
local day_ms = 86400000
local function civil_from_days(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function period_name(period, ms)
  local y, m, d = civil_from_days(math.floor(ms / day_ms))
  if period == 'daily' then return string.format('d:%04d-%02d-%02d', y, m, d) end
  return string.format('m:%04d-%02d', y, m)
end
local function period_end_ms(period, ms)
  local days = math.floor(ms / day_ms)
  if period == 'daily' then return (days + 1) * day_ms end
  local y, m = civil_from_days(days)
  if m == 12 then y, m = y + 1, 1 else m = m + 1 end
  return days_from_civil(y, m, 1) * day_ms
end
`

/** Sliding windows of one-second buckets kept in a hash (epoch second → amount); ARGV[1] is the window length. */
const windowLua = `
local window_seconds = tonumber(ARGV[1])
local oldest_second = now_s - window_seconds
local bucket_ttl_ms = (window_seconds + 1) * 2000
local function leaves_at(second) return (second + window_seconds + 1) * 1000 end
-- the buckets still inside the window, oldest first, and their total; the ones that left are deleted
local function current_window(key)
  local flat = redis.call('HGETALL', key)
  local buckets, total = {}, 0
  for i = 1, #flat, 2 do
    local second = tonumber(flat[i])
    if second < oldest_second then
      redis.call('HDEL', key, flat[i])
    else
      local amount = tonumber(flat[i + 1])
      buckets[#buckets + 1] = { second, amount }
      total = total + amount
    end
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  return buckets, total
end
local function retry_after(buckets, total, limit)
  for i = 1, #buckets do
    total = total - buckets[i][2]
    if total < limit then return math.max(0, leaves_at(buckets[i][1]) - now_ms) end
  end
  return (window_seconds + 1) * 1000
end
local function reset_ms(buckets)
  if #buckets == 0 then return 0 end
  return math.max(0, leaves_at(buckets[#buckets][1]) - now_ms)
end
`

/**
 * One admission. KEYS: requests, tokens, leases, spend. ARGV: window seconds, rpm, tpm, max parallel, budget in
 * nano-dollars (each '' when the key has no such limit), budget period, lease, lease ttl ms, parallel retry ms.
 * Answers { refused by (0 admitted, 1 budget, 2 max_parallel, 3 rpm, 4 tpm), retry after ms, requests in the
 * window, their reset ms, tokens in the window, their reset ms }.
 */
export const admit = script(
  "admit",
  `${clockLua}${calendarLua}${windowLua}
local rpm, tpm, max_parallel, budget_nano = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lease_ttl_ms = tonumber(ARGV[8])
local requests, request_total = current_window(KEYS[1])
local tokens, token_total = current_window(KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
local in_flight = redis.call('ZCARD', KEYS[3])
local function refuse(limit_code, retry_ms)
  return { limit_code, retry_ms, request_total, reset_ms(requests), token_total, reset_ms(tokens) }
end
if budget_nano then
  local spent = tonumber(redis.call('HGET', KEYS[4], period_name(ARGV[6], now_ms)) or '0')
  if spent >= budget_nano then return refuse(1, period_end_ms(ARGV[6], now_ms) - now_ms) end
end
if max_parallel and in_flight >= max_parallel then return refuse(2, tonumber(ARGV[9])) end
if rpm and request_total >= rpm then return refuse(3, retry_after(requests, request_total, rpm)) end
if tpm and token_total >= tpm then return refuse(4, retry_after(tokens, token_total, tpm)) end
redis.call('HINCRBY', KEYS[1], now_s, 1)
redis.call('PEXPIRE', KEYS[1], bucket_ttl_ms)
redis.call('ZADD', KEYS[3], now_ms + lease_ttl_ms, ARGV[7])
redis.call('PEXPIRE', KEYS[3], lease_ttl_ms)
return { 0, 0, request_total + 1, leaves_at(now_s) - now_ms, token_total, reset_ms(tokens) }
`
)

/** Extends a live lease. KEYS: leases. ARGV: lease, lease ttl ms. Answers 1 when renewed, 0 when it had expired. */
export const renew = script(
  "renew",
  `${clockLua}
local lease_ttl_ms = tonumber(ARGV[2])
local expires_at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires_at or tonumber(expires_at) <= now_ms then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now_ms + lease_ttl_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease_ttl_ms)
return 1
`
)

/**
 * A key's side of a finished request. KEYS: tokens, leases, spend. ARGV: window seconds, lease ('' for none),
 * tokens, spend in nano-dollars, how long spend outlives its month (ms). Spend goes to the current UTC day and
 * month; older periods are dropped (nothing reads them).
 */
export const finishKey = script(
  "finishKey",
  `${clockLua}${calendarLua}${windowLua}
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
if tonumber(ARGV[3]) > 0 then
  redis.call('HINCRBY', KEYS[1], now_s, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], bucket_ttl_ms)
end
if tonumber(ARGV[4]) ~= 0 then
  local day, month = period_name('daily', now_ms), period_name('monthly', now_ms)
  for _, name in ipairs(redis.call('HKEYS', KEYS[3])) do
    if name ~= day and name ~= month then redis.call('HDEL', KEYS[3], name) end
  end
  redis.call('HINCRBY', KEYS[3], day, ARGV[4])
  redis.call('HINCRBY', KEYS[3], month, ARGV[4])
  redis.call('PEXPIREAT', KEYS[3], period_end_ms('monthly', now_ms) + tonumber(ARGV[5]))
end
return 1
`
)

/**
 * One usage row increment. KEYS: the day's set of key ids, the key's row hash of that day (fields `r:`, `p:`, `c:`,
 * `s:` + model: requests, prompt and completion tokens, nano-dollars). ARGV: key id, model, prompt tokens,
 * completion tokens, spend in nano-dollars, when the day's rows expire (epoch ms).
 */
export const recordUsage = script(
  "recordUsage",
  `
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[2], 1)
redis.call('HINCRBY', KEYS[2], 'p:' .. ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[2], 'c:' .. ARGV[2], ARGV[4])
redis.call('HINCRBY', KEYS[2], 's:' .. ARGV[2], ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
redis.call('PEXPIREAT', KEYS[2], ARGV[6])
return 1
`
)

/**
 * A key's current figures. KEYS: requests, tokens, leases, spend. ARGV: window seconds, budget period. Answers
 * { requests in the window, tokens in the window, live leases, spend this period in nano-dollars }.
 */
export const figures = script(
  "figures",
  `${clockLua}${calendarLua}${windowLua}
local _, request_total = current_window(KEYS[1])
local _, token_total = current_window(KEYS[2])
local in_flight = redis.call('ZCOUNT', KEYS[3], '(' .. string.format('%d', now_ms), '+inf')
local spent = tonumber(redis.call('HGET', KEYS[4], period_name(ARGV[2], now_ms)) or '0')
return { request_total, token_total, in_flight, spent }
`
)

/** Every script, to load when a connection becomes ready. */
export const all: ReadonlyArray<LuaScript> = [admit, renew, finishKey, recordUsage, figures]
