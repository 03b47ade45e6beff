/**
 * The stored responses: in memory (the response cache's byte LRU) each expires with its ttl and the store stays
 * within its entry, byte and entry-size bounds; on real Redis (the shared 127.0.0.1:6379, under this test's own key
 * prefix, cleaned up) two gateways with one REDIS_URL share them (a continuation on another replica), each key expires
 * with `settings.responses.ttl_s`, and garbage under a key reads as no response.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import * as ResponsesStore from "../../src/Responses/Store.js"
import type { ResponsesStoreBounds, StoredResponse } from "../../src/Responses/Store.js"
import { Timer } from "../../src/Timer.js"
import type { TimerService } from "../../src/Timer.js"
import { deploymentOf, OpenAi, registryFromDocument, startUpstream } from "../support/FakeUpstreams.js"
import { startGateway, testKey } from "../support/Gateway.js"
import { call, postRaw } from "../support/Http.js"
import { scopedTestPrefix, sharedRedis, withSharedRedis } from "../Governance/RedisServer.js"

/** A timer whose time the test moves. */
const manualTimer = () => {
  let now = 1_000_000
  const timer: TimerService = { now: () => now, after: () => () => {} }
  return { timer, advance: (ms: number) => (now += ms) }
}

const stored = (id: string, text = "answer", owner = "operator"): StoredResponse => ({
  owner,
  response: { id, object: "response", status: "completed", output: [{ type: "message", role: "assistant", content: [{ type: "output_text", text }] }] },
  input: [{ role: "user", content: "question" }]
})

const bounds = (extra: Partial<ResponsesStoreBounds> = {}): ResponsesStoreBounds => ({ ttlMs: 1000, maxEntries: 10, maxBytes: 1_000_000, maxEntryBytes: 100_000, ...extra })

describe("stored responses in memory", () => {
  it.effect("kept until their ttl, then gone; deleted once", () =>
    Effect.gen(function* () {
      const { advance, timer } = manualTimer()
      const store = yield* Effect.provideService(ResponsesStore.makeMemory, Timer, timer)
      expect(yield* store.put(stored("resp_a"), bounds())).toBe(true)
      expect(yield* store.get("resp_a", bounds())).toEqual(stored("resp_a"))
      advance(999)
      expect((yield* store.get("resp_a", bounds()))?.owner).toBe("operator")
      advance(1)
      expect(yield* store.get("resp_a", bounds())).toBeUndefined()
      yield* store.put(stored("resp_b"), bounds())
      expect(yield* store.delete("resp_b")).toBe(true)
      expect(yield* store.delete("resp_b")).toBe(false)
      expect(yield* store.get("resp_b", bounds())).toBeUndefined()
    }))

  it.effect("bounded: the least recently used go first past max_entries or max_bytes; an entry over max_entry_bytes is not stored", () =>
    Effect.gen(function* () {
      const { timer } = manualTimer()
      const store = yield* Effect.provideService(ResponsesStore.makeMemory, Timer, timer)
      const two = bounds({ maxEntries: 2 })
      yield* store.put(stored("resp_1"), two)
      yield* store.put(stored("resp_2"), two)
      yield* store.get("resp_1", two)
      yield* store.put(stored("resp_3"), two)
      expect(yield* store.get("resp_2", two)).toBeUndefined()
      expect(yield* store.get("resp_1", two)).toBeDefined()
      expect(yield* store.get("resp_3", two)).toBeDefined()
      const size = ResponsesStore.serializeStored(stored("resp_4")).bytes
      const tight = bounds({ maxBytes: size * 2 + 10 })
      for (const id of ["resp_4", "resp_5", "resp_6"]) yield* store.put(stored(id), tight)
      expect(yield* store.get("resp_4", tight)).toBeUndefined()
      expect(yield* store.put(stored("resp_big", "x".repeat(2000)), bounds({ maxEntryBytes: 1000 }))).toBe(false)
      expect(yield* store.get("resp_big", bounds())).toBeUndefined()
    }))

  it("reads back only a stored response with the id asked for", () => {
    const { text } = ResponsesStore.serializeStored(stored("resp_x"))
    expect(ResponsesStore.decodeStored(text, "resp_x")).toEqual(stored("resp_x"))
    expect(ResponsesStore.decodeStored(text, "resp_y")).toBeUndefined()
    expect(ResponsesStore.decodeStored("{not json", "resp_x")).toBeUndefined()
    expect(ResponsesStore.decodeStored(JSON.stringify({ owner: "a", response: {}, input: [] }), "resp_x")).toBeUndefined()
  })
})

/** A key prefix of this test's own on the shared Redis; its response keys are deleted with the scope. */
const testPrefix = scopedTestPrefix("responses-", "response")

const withRedis = withSharedRedis

describe("stored responses on Redis", () => {
  it.scopedLive("shared by two gateways on one REDIS_URL; each key expires with settings.responses.ttl_s; garbage is no response", () =>
    Effect.gen(function* () {
      const prefix = yield* testPrefix
      const upstream = yield* startUpstream("openai", (upstreamCall) => OpenAi.completion({ content: `answer ${upstreamCall.index}` }))
      const registry = (ttl_s: number) =>
        registryFromDocument({ models: [deploymentOf("gpt", upstream)], settings: { retry: { max_retries: 0 }, responses: { ttl_s } } })
      const settings = { redisUrl: Option.some(Redacted.make(sharedRedis)), redisKeyPrefix: prefix }
      const one = yield* startGateway({ registry: registry(3600), settings })
      const two = yield* startGateway({ registry: registry(3600), settings, mount: "api" })
      const created = JSON.parse((yield* postRaw(`${one.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", input: "first" }))).text) as { id: string }
      const key = ResponsesStore.redisKeyOf(prefix, created.id)
      const ttl = yield* withRedis((redis) => redis.pttl(key))
      expect(ttl).toBeGreaterThan(3_500_000)
      expect(ttl).toBeLessThanOrEqual(3_600_000)
      // The other replica retrieves it and continues from it.
      const retrieved = yield* call(`${two.baseUrl}/v1/responses/${created.id}`, { headers: { authorization: `Bearer ${testKey}` } })
      expect(retrieved.status).toBe(200)
      expect(JSON.parse(retrieved.text)).toEqual(created)
      const continued = yield* postRaw(`${two.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", previous_response_id: created.id, input: "second", store: false }))
      expect(continued.status).toBe(200)
      expect(upstream.calls[1]!.json["messages"]).toEqual([
        { role: "user", content: "first" },
        { role: "assistant", content: "answer 0" },
        { role: "user", content: "second" }
      ])
      // Garbage under a response's key is no response.
      yield* withRedis((redis) => redis.set(key, "{garbage", "PX", 60_000))
      expect((yield* call(`${one.baseUrl}/v1/responses/${created.id}`, { headers: { authorization: `Bearer ${testKey}` } })).status).toBe(404)
      // A short ttl: the key expires in Redis, and the response with it.
      const brief = yield* startGateway({ registry: registry(1), settings })
      const short = JSON.parse((yield* postRaw(`${brief.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", input: "brief" }))).text) as { id: string }
      expect(yield* withRedis((redis) => redis.pttl(ResponsesStore.redisKeyOf(prefix, short.id)))).toBeLessThanOrEqual(1000)
      expect((yield* call(`${brief.baseUrl}/v1/responses/${short.id}`, { headers: { authorization: `Bearer ${testKey}` } })).status).toBe(200)
      yield* Effect.sleep("1200 millis")
      expect((yield* call(`${brief.baseUrl}/v1/responses/${short.id}`, { headers: { authorization: `Bearer ${testKey}` } })).status).toBe(404)
      expect(yield* withRedis((redis) => redis.exists(ResponsesStore.redisKeyOf(prefix, short.id)))).toBe(0)
    }))
})
