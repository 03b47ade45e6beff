/**
 * The response cache on real Redis: two gateways with one REDIS_URL share entries (replicas); an entry expires with
 * a short ttl; whatever else sits under a key (garbage, another key's entry, an oversized value) is a miss, never
 * served, and is replaced by the fresh answer; a Redis that goes away is a miss, not a failed request, and the cache
 * works again once it is back.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { serializeCompletion } from "../../src/Cache/Entry.js"
import { cacheKey } from "../../src/Cache/Key.js"
import * as RedisCacheStore from "../../src/Cache/RedisStore.js"
import { startGateway, testKey } from "../support/Gateway.js"
import { deploymentOf, OpenAi, registryFromDocument, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream } from "../support/FakeUpstreams.js"
import { call, chatRequest, postChat } from "../support/Http.js"
import { ownRedis, scopedTestPrefix, sharedRedis, sparePort, withSharedRedis } from "../Governance/RedisServer.js"

/** A key prefix of this test's own on the shared Redis; its cache keys are deleted with the scope. */
const testPrefix = scopedTestPrefix("", "cache")

const withRedis = withSharedRedis

const counting = startUpstream("openai", (call) => OpenAi.completion({ content: `answer ${call.index}` }))

const registry = (upstream: FakeUpstream, ttl_s = 600, settings: Record<string, unknown> = {}) =>
  registryFromDocument({ models: [{ ...deploymentOf("cached", upstream), cache: { ttl_s } }], settings: { retry: { max_retries: 0 }, ...settings } })

const onRedis = (prefix: string, url = sharedRedis) => ({ redisUrl: Option.some(Redacted.make(url)), redisKeyPrefix: prefix })

const cacheOf = (answer: { readonly headers: Headers }) => answer.headers.get("x-llm-proxy-cache")
const contentOf = (answer: { readonly text: string }) => (JSON.parse(answer.text) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content

/** Waits (bounded) until Redis holds the key: entries are written after the answer. */
const stored = (key: string) =>
  withRedis(async (redis) => {
    for (let attempt = 0; attempt < 100; attempt++) {
      if ((await redis.exists(key)) === 1) return true
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return false
  })

describe("the response cache on Redis", () => {
  it.scopedLive("replicas on one REDIS_URL share entries; an entry expires with its ttl", () =>
    Effect.gen(function* () {
      const prefix = yield* testPrefix
      const upstream = yield* counting
      const one = yield* startGateway({ registry: registry(upstream, 1), settings: onRedis(prefix) })
      const two = yield* startGateway({ registry: registry(upstream, 1), settings: onRedis(prefix) })
      const body = chatRequest("cached", { seed: 1 })
      expect(cacheOf(yield* postChat(one.baseUrl, body))).toBe("miss")
      expect(yield* stored(RedisCacheStore.redisKeyOf(prefix, cacheKey(body, "cached", "operator")))).toBe(true)
      const fromTwo = yield* postChat(two.baseUrl, body)
      expect(cacheOf(fromTwo)).toBe("hit")
      expect(contentOf(fromTwo)).toBe("answer 0")
      expect(upstream.calls).toHaveLength(1)
      // ttl_s: 1 — Redis expires it
      yield* Effect.sleep("1100 millis")
      const expired = yield* postChat(two.baseUrl, body)
      expect(cacheOf(expired)).toBe("miss")
      expect(contentOf(expired)).toBe("answer 1")
    }))

  it.scopedLive("garbage, another key's entry or an oversized value under a key is a miss, and is replaced", () =>
    Effect.gen(function* () {
      const prefix = yield* testPrefix
      const upstream = yield* counting
      const gateway = yield* startGateway({ registry: registry(upstream, 600, { cache: { max_entry_bytes: 4096 } }), settings: onRedis(prefix) })
      const cases: ReadonlyArray<(key: string) => string> = [
        () => "\u0000\u00ff not json {{{",
        () => JSON.stringify({ format: "llm-proxy.cache", v: 1, kind: "json", key: "x", created_at: 1 }),
        () => serializeCompletion("another-key", Date.now(), JSON.parse(JSON.stringify(OpenAi.completionBody({ content: "forged" })))).text,
        (key) => serializeCompletion(key, Date.now(), JSON.parse(JSON.stringify(OpenAi.completionBody({ content: "z".repeat(5000) })))).text,
        (key) => `${serializeCompletion(key, Date.now(), JSON.parse(JSON.stringify(OpenAi.completionBody({ content: "cut" })))).text.slice(0, -20)}`,
        (key) => JSON.stringify({ format: "llm-proxy.cache", v: 1, kind: "stream", key, created_at: 1, chunks: [{ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "no finish" }, finish_reason: null }] }] })
      ]
      for (const [index, bad] of cases.entries()) {
        const body = chatRequest("cached", { seed: 100 + index })
        const key = cacheKey(body, "cached", "operator")
        const redisKey = RedisCacheStore.redisKeyOf(prefix, key)
        yield* withRedis((redis) => redis.set(redisKey, bad(key)))
        const answer = yield* postChat(gateway.baseUrl, body)
        expect(answer.status).toBe(200)
        expect(cacheOf(answer)).toBe("miss")
        expect(contentOf(answer)).toBe(`answer ${index}`)
        // the fresh answer replaced it
        for (let attempt = 0; attempt < 100; attempt++) {
          const now = yield* withRedis((redis) => redis.get(redisKey))
          if (now !== bad(key)) break
          yield* Effect.sleep("10 millis")
        }
        const again = yield* postChat(gateway.baseUrl, body)
        expect(cacheOf(again)).toBe("hit")
        expect(contentOf(again)).toBe(`answer ${index}`)
      }
      expect(upstream.calls).toHaveLength(cases.length)
    }))

  it.scopedLive("a Redis that goes away is a miss, never a failed request; the cache works again when it is back", () =>
    Effect.gen(function* () {
      const port = yield* sparePort
      const redis = yield* ownRedis(port)
      yield* redis.start
      const upstream = yield* counting
      const url = `redis://127.0.0.1:${port}`
      const gateway = yield* startGateway({ registry: registry(upstream), cacheStore: RedisCacheStore.layer(url, { prefix: "own" }) })
      const body = chatRequest("cached", { seed: 7 })
      expect(cacheOf(yield* postChat(gateway.baseUrl, body))).toBe("miss")
      yield* Effect.sleep("50 millis")
      expect(cacheOf(yield* postChat(gateway.baseUrl, body))).toBe("hit")
      yield* redis.stop
      for (let index = 0; index < 3; index++) {
        const answer = yield* postChat(gateway.baseUrl, body)
        expect(answer.status).toBe(200)
        expect(cacheOf(answer)).toBe("miss")
      }
      const metrics = yield* call(`${gateway.baseUrl}/metrics`, { headers: { authorization: `Bearer ${testKey}` } })
      expect(metrics.text).toMatch(/llm_proxy_store_errors_total\{operation="cache_read"\} [1-9]/)
      yield* redis.start
      let back = false
      for (let attempt = 0; attempt < 50 && !back; attempt++) {
        yield* postChat(gateway.baseUrl, body)
        yield* Effect.sleep("100 millis")
        back = cacheOf(yield* postChat(gateway.baseUrl, body)) === "hit"
      }
      expect(back).toBe(true)
      // a frozen Redis (nothing answers) costs a request at most the command timeout, and is a miss too
      yield* redis.freeze(true)
      const started = performance.now()
      const frozen = yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 8 }))
      expect(frozen.status).toBe(200)
      expect(cacheOf(frozen)).toBe("miss")
      expect(performance.now() - started).toBeLessThan(2500)
      yield* redis.freeze(false)
    }), 30_000)
})
