/**
 * The Redis store: the shared contract against the machine's Redis (two connections per test, so every test is
 * also a two-replica test), with a 2 s window so that waiting for it is short; then what only Redis has: key
 * expiry and hash tags, the Lua calendar, the script cache, and a Redis of the test's own that goes away and
 * comes back.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Option, Schedule } from "effect"
import { Redis } from "ioredis"
import { periodEndMs, periodName } from "../../src/Governance/Calendar.js"
import { calendarLua } from "../../src/Governance/RedisScripts.js"
import * as RedisStore from "../../src/Governance/RedisStore.js"
import * as StoreLayer from "../../src/Governance/StoreLayer.js"
import { Store, StoreError } from "../../src/Governance/Store.js"
import type { StoreService } from "../../src/Governance/Store.js"
import { deleteKeys, keysUnder, ownRedis, sparePort } from "./RedisServer.js"
import { freshKey, storeContract } from "./StoreContract.js"

const url = "redis://127.0.0.1:6379"
const prefix = `llmp-test-${Math.random().toString(36).slice(2, 10)}`
const options = { url, prefix, windowSeconds: 2, leaseTtlMs: 1500 }

afterAll(async () => {
  await deleteKeys(url, prefix)
  await deleteKeys(url, `${prefix}-layout`)
})

const withRedis = <A>(body: (redis: Redis) => Promise<A>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Redis(url)),
    (redis) => Effect.promise(() => body(redis)),
    (redis) => Effect.sync(() => redis.disconnect())
  )

storeContract({
  name: "RedisStore",
  test: (name, body) =>
    it.live(name, () =>
      Effect.scoped(
        Effect.gen(function* () {
          const stores = [yield* RedisStore.make(options), yield* RedisStore.make(options)] as const
          yield* body({
            stores,
            // a little over: the store's clock and the sleep's do not start at the same instant
            wait: (ms) => Effect.sleep(ms + 25),
            now: Effect.sync(() => Date.now()),
            clockToleranceMs: 2000,
            windowSeconds: options.windowSeconds,
            leaseTtlMs: options.leaseTtlMs,
            parallelRetryMs: 1000
          })
        })
      )
    )
})

/** The effect fails with StoreError, and does not hang (5 s at most) on the way. */
const expectStoreError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(
      effect.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("hung") }))
    )
    expect(error).toBeInstanceOf(StoreError)
  })

/** Pings until the store answers again (ioredis reconnects on its own), 10 s at most. */
const untilReachable = (store: StoreService) =>
  store.ping.pipe(Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 100 }))

describe("RedisStore", () => {
  it.live("every key expires, and the keys of one API key share one hash tag", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const layoutPrefix = `${prefix}-layout`
        const store = yield* RedisStore.make({ ...options, prefix: layoutPrefix })
        const keyId = "odd {key}:id/ü"
        const admission = yield* store.admit(keyId, { rpm: 5, tpm: 50, maxParallel: 2, budget: { usd: 5, period: "daily" } })
        if (admission._tag !== "Admitted") throw new Error("not admitted")
        yield* store.renew(keyId, admission.lease)
        yield* store.admit(keyId, {})
        yield* store.finish(admission.lease, { keyId, model: "m", promptTokens: 3, completionTokens: 4, spendUsd: 0.01, countInWindows: true })
        const keys = yield* withRedis(async (redis) => {
          const names = await keysUnder(redis, layoutPrefix)
          return Promise.all(names.map(async (name) => ({ name, pttl: await redis.pttl(name) })))
        })
        const tag = `{${layoutPrefix}:k:${encodeURIComponent(keyId)}}`
        const day = new Date().toISOString().slice(0, 10)
        const dayTag = `{${layoutPrefix}:u:${day}}`
        expect(keys.map((key) => key.name).sort()).toEqual(
          [
            `${tag}:req`,
            `${tag}:tok`,
            `${tag}:lease`,
            `${tag}:spend`,
            `${dayTag}:keys`,
            `${dayTag}:k:${encodeURIComponent(keyId)}`
          ].sort()
        )
        const ttlOf = (suffix: string) => keys.find((key) => key.name.endsWith(suffix))?.pttl ?? -1
        const windowTtl = (options.windowSeconds + 1) * 2000
        for (const suffix of [":req", ":tok"]) {
          expect(ttlOf(suffix)).toBeGreaterThan(0)
          expect(ttlOf(suffix)).toBeLessThanOrEqual(windowTtl)
        }
        expect(ttlOf(":lease")).toBeGreaterThan(0)
        expect(ttlOf(":lease")).toBeLessThanOrEqual(options.leaseTtlMs)
        const now = Date.now()
        expect(ttlOf(":spend")).toBeGreaterThan(periodEndMs("monthly", now) - now)
        expect(ttlOf(":spend")).toBeLessThanOrEqual(periodEndMs("monthly", now) - now + 86_400_000 + 2000)
        for (const suffix of [":keys", `:k:${encodeURIComponent(keyId)}`]) {
          expect(ttlOf(suffix)).toBeGreaterThan(90 * 86_400_000)
          expect(ttlOf(suffix)).toBeLessThanOrEqual(91 * 86_400_000)
        }
      })
    )
  )

  it.live("the scripts name UTC days and months, and find period ends, as Calendar.ts does", () =>
    Effect.gen(function* () {
      const instants = [
        0,
        Date.UTC(1999, 11, 31, 23, 59, 59, 999),
        Date.UTC(2000, 1, 29, 12),
        Date.UTC(2000, 11, 31, 23, 59, 59, 999),
        Date.UTC(2024, 1, 29, 0),
        Date.UTC(2024, 11, 31, 23, 59, 59, 999),
        Date.UTC(2100, 1, 28, 23, 59, 59, 999),
        Date.UTC(2100, 2, 1)
      ]
      let seed = 7
      for (let i = 0; i < 500; i++) {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
        instants.push(Math.floor((seed / 2 ** 31) * Date.UTC(2200, 0, 1)))
      }
      const lua = `${calendarLua}
local out = {}
for i = 1, #ARGV do
  local ms = tonumber(ARGV[i])
  out[#out + 1] = period_name('daily', ms)
  out[#out + 1] = period_name('monthly', ms)
  out[#out + 1] = string.format('%d', period_end_ms('daily', ms))
  out[#out + 1] = string.format('%d', period_end_ms('monthly', ms))
end
return out`
      const answer = yield* withRedis((redis) => redis.eval(lua, 0, ...instants.map(String)))
      const expected = instants.flatMap((ms) => [
        periodName("daily", ms),
        periodName("monthly", ms),
        String(periodEndMs("daily", ms)),
        String(periodEndMs("monthly", ms))
      ])
      expect(answer).toEqual(expected)
    })
  )

  it.live("a flushed script cache is reloaded (EVALSHA falls back to EVAL), in a pipelined batch of ends too", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* RedisStore.make(options)
        const key = freshKey("noscript")
        const first = yield* store.admit(key, { rpm: 2 })
        yield* withRedis((redis) => redis.script("FLUSH"))
        const second = yield* store.admit(key, { rpm: 2, maxParallel: 5 })
        expect(second._tag).toBe("Admitted")
        expect((yield* store.admit(key, { rpm: 2 }))._tag).toBe("Refused")
        // A batch of ends, pipelined, after another flush: every script of it runs all the same.
        yield* withRedis((redis) => redis.script("FLUSH"))
        const usage = { keyId: key, model: "m", promptTokens: 5, completionTokens: 2, spendUsd: 0, countInWindows: true }
        yield* store.finishAll([
          { lease: first._tag === "Admitted" ? first.lease : undefined, usage },
          { lease: second._tag === "Admitted" ? second.lease : undefined, usage }
        ])
        expect(yield* store.figures(key, { maxParallel: 5 })).toMatchObject({ inFlight: 0, tokensLastMinute: 14 })
        const day = new Date().toISOString().slice(0, 10)
        expect(yield* store.usage(day, key)).toEqual([
          { key, model: "m", requests: 2, prompt_tokens: 10, completion_tokens: 4, spend_usd: 0 }
        ])
      })
    )
  )

  it.live("starts while Redis is down, fails fast while it is down or hangs, and works again when it is back, without a restart", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const port = yield* sparePort
        const server = yield* ownRedis(port)
        // A minute's window: the counts must outlast the outages below (each a command timeout or a reconnection),
        // which on a busy machine took longer than the 3 s window the other tests use.
        const store = yield* RedisStore.make({ ...options, windowSeconds: 60, url: `redis://127.0.0.1:${port}` })
        const key = freshKey("outage")
        const usage = { keyId: key, model: "m", promptTokens: 1, completionTokens: 1, spendUsd: 0.01, countInWindows: true }

        yield* expectStoreError(store.admit(key, { rpm: 100 }))
        yield* expectStoreError(store.ping)

        yield* server.start
        yield* untilReachable(store)
        const admission = yield* store.admit(key, { rpm: 100 })
        expect(admission._tag).toBe("Admitted")

        yield* server.stop
        yield* expectStoreError(store.admit(key, { rpm: 100 }))
        yield* expectStoreError(store.finish(undefined, usage))
        yield* expectStoreError(store.figures(key, {}))
        yield* expectStoreError(store.usage("2025-01-01"))
        yield* expectStoreError(store.renew(key, "lease"))

        yield* server.start
        yield* untilReachable(store)
        expect((yield* store.admit(key, { rpm: 100 }))._tag).toBe("Admitted")
        yield* store.finish(undefined, usage)
        expect(yield* store.figures(key, {})).toMatchObject({ requestsLastMinute: 1, spendThisPeriodUsd: 0.01 })

        // a Redis that hangs with the connection open: the command timeout ends each call
        yield* server.freeze(true)
        yield* expectStoreError(store.ping)
        yield* expectStoreError(store.figures(key, {}))
        yield* server.freeze(false)
        yield* untilReachable(store)
        expect(yield* store.figures(key, {})).toMatchObject({ requestsLastMinute: 1 })
      })
    )
  )

  it.live("StoreLayer.fromUrl picks Redis for a URL and memory for none", () =>
    Effect.gen(function* () {
      const kindOf = (redisUrl: Option.Option<string>) =>
        Effect.scoped(
          Effect.map(Store, (store) => store.kind).pipe(Effect.provide(StoreLayer.fromUrl(redisUrl)))
        )
      expect(yield* kindOf(Option.none())).toBe("memory")
      expect(yield* kindOf(Option.some(url))).toBe("redis")
    })
  )
})
