/**
 * Governance through the whole gateway (memory store): virtual keys and their models, rpm / tpm / max_parallel /
 * budget with OpenAI's rate-limit headers, usage rows equal to what the clients saw, a cancelled stream counted
 * from the text it delivered, the admin routes, and the official openai SDK against a limited key.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { countTokens } from "gpt-tokenizer/encoding/o200k_base"
import OpenAI from "openai"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { startGateway, testKey } from "../support/Gateway.js"
import { deploymentOf, hang, OpenAi, registryFromDocument, sse, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream } from "../support/FakeUpstreams.js"
import { call, chatRequest, expectEnvelope, postChat } from "../support/Http.js"
import { ssePayloads } from "../support/Sse.js"

const secretOf = (id: string) => `sk-llmp-${id}-${"x".repeat(24)}`

/** A `keys:` entry with its secret given as a digest. */
const keyEntry = (id: string, extra: Record<string, unknown> = {}) => ({ id, key_sha256: sha256Hex(secretOf(id)), ...extra })

const asKey = (id: string) => ({ authorization: `Bearer ${secretOf(id)}` })

const operator = { authorization: `Bearer ${testKey}` }

/** A gateway with the built-in mock (and optionally an upstream as `up`) and the given keys. */
const gatewayWith = (keys: ReadonlyArray<Record<string, unknown>>, upstream?: FakeUpstream, models: ReadonlyArray<Record<string, unknown>> = []) =>
  startGateway({
    registry: registryFromDocument({
      models: [{ name: "mock", provider: "mock" }, { name: "mock-2", provider: "mock" }, ...(upstream === undefined ? [] : [deploymentOf("up", upstream)]), ...models],
      keys,
      settings: { retry: { max_retries: 0 } }
    }),
    settings: { shutdownGraceMs: 100 }
  })

interface UsageReport {
  readonly day: string
  readonly rows: ReadonlyArray<{ readonly key: string; readonly model: string; readonly requests: number; readonly prompt_tokens: number; readonly completion_tokens: number; readonly spend_usd: number }>
}

const usageOf = (baseUrl: string, key?: string) =>
  Effect.map(call(`${baseUrl}/admin/usage${key === undefined ? "" : `?key=${key}`}`, { headers: operator }), (answer) => {
    expect(answer.status).toBe(200)
    return JSON.parse(answer.text) as UsageReport
  })

/** Waits (bounded) until the usage rows of `key` satisfy `done`: they are written after the answer. */
const usageWhen = (baseUrl: string, key: string, done: (report: UsageReport) => boolean) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 100; attempt++) {
      const report = yield* usageOf(baseUrl, key)
      if (done(report)) return report
      yield* Effect.sleep("20 millis")
    }
    return yield* usageOf(baseUrl, key)
  })

describe("virtual keys and their models", () => {
  it.scopedLive("a key reaches only its models: others are 404 model_not_found and are not listed", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("search", { models: ["mock", "gpt-*"] }), keyEntry("all")])
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("search"))).status).toBe(200)
      const refused = expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("mock-2"), asKey("search")), 404, "model_not_found")
      expect(refused.message).toContain("mock-2")
      const listed = JSON.parse((yield* call(`${gateway.baseUrl}/v1/models`, { headers: asKey("search") })).text) as { data: ReadonlyArray<{ id: string }> }
      expect(listed.data.map((model) => model.id)).toEqual(["mock"])
      const llm = JSON.parse((yield* call(`${gateway.baseUrl}/v1/llm/models`, { headers: asKey("search") })).text) as { models: ReadonlyArray<{ id: string }> }
      expect(llm.models.map((model) => model.id)).toEqual(["mock"])
      expect((yield* call(`${gateway.baseUrl}/v1/models/mock-2`, { headers: asKey("search") })).status).toBe(404)
      // a key without `models` and the operator key see everything
      const everything = JSON.parse((yield* call(`${gateway.baseUrl}/v1/models`, { headers: asKey("all") })).text) as { data: ReadonlyArray<{ id: string }> }
      expect(everything.data.map((model) => model.id)).toEqual(["mock", "mock-2"])
      // x-internal-auth works for virtual keys too; a wrong secret is 401
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), { "x-internal-auth": secretOf("all"), authorization: "" })).status).toBe(200)
      expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("mock"), { authorization: "Bearer sk-llmp-nobody" }), 401, "invalid_api_key")
    }))

  it.scopedLive("the admin routes and /metrics are the operator's: a virtual key gets 403", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("team", { models: ["mock"], limits: { rpm: 100, tpm: 1000, max_parallel: 4, budget: { usd: 2, period: "daily" } } })])
      for (const path of ["/admin/keys", "/admin/usage", "/metrics"]) {
        expectEnvelope(yield* call(`${gateway.baseUrl}${path}`, { headers: asKey("team") }), 403, "insufficient_permissions")
      }
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("team"))).status).toBe(200)
      const keys = yield* call(`${gateway.baseUrl}/admin/keys`, { headers: operator })
      expect(keys.status).toBe(200)
      expect(keys.text).not.toContain(sha256Hex(secretOf("team")))
      expect(keys.text).not.toContain(secretOf("team"))
      const listed = JSON.parse(keys.text) as { keys: ReadonlyArray<Record<string, unknown>> }
      expect(listed.keys).toHaveLength(1)
      expect(listed.keys[0]).toMatchObject({
        id: "team",
        models: ["mock"],
        limits: { rpm: 100, tpm: 1000, max_parallel: 4, budget: { usd: 2, period: "daily" } },
        current: { requests_last_minute: 1, in_flight: 0 }
      })
    }))
})

describe("limits", () => {
  it.scopedLive("rpm: the request past the limit is 429 rate_limit_exceeded, naming the limit and the key, with Retry-After and OpenAI's headers", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("tight", { limits: { rpm: 3, tpm: 100_000 } })])
      const remaining: Array<string | null> = []
      for (let index = 0; index < 3; index++) {
        const answer = yield* postChat(gateway.baseUrl, chatRequest("mock", { stream: index === 1 }), asKey("tight"))
        expect(answer.status).toBe(200)
        expect(answer.headers.get("x-ratelimit-limit-requests")).toBe("3")
        expect(answer.headers.get("x-ratelimit-limit-tokens")).toBe("100000")
        expect(answer.headers.get("x-ratelimit-reset-requests")).toMatch(/^(\d+ms|(\d+h)?(\d+m)?\d+s)$/)
        remaining.push(answer.headers.get("x-ratelimit-remaining-requests"))
      }
      expect(remaining).toEqual(["2", "1", "0"])
      const refused = yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("tight"))
      const error = expectEnvelope(refused, 429, "rate_limit_exceeded")
      expect(error.type).toBe("rate_limit_error")
      expect(error.message).toContain("tight")
      expect(error.message).toContain("rpm")
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(61)
      expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      // the operator key has no limits
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), operator)).status).toBe(200)
    }))

  it.scopedLive("tpm: refused once the window's tokens reach the limit", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("tokens", { limits: { tpm: 12 } })])
      const message = "one two three four five"
      let admitted = 0
      let refusal: ReturnType<typeof expectEnvelope> | undefined
      for (let index = 0; index < 5 && refusal === undefined; index++) {
        const answer = yield* postChat(gateway.baseUrl, { model: "mock", messages: [{ role: "user", content: message }] }, asKey("tokens"))
        if (answer.status === 200) {
          admitted++
          // the usage is recorded after the answer: let it land before the next request
          yield* usageWhen(gateway.baseUrl, "tokens", (report) => (report.rows[0]?.requests ?? 0) === admitted)
        } else refusal = expectEnvelope(answer, 429, "rate_limit_exceeded")
      }
      // each request uses 10 tokens (5 prompt + 5 completion): the second reaches 20 ≥ 12, the third is refused
      expect(admitted).toBe(2)
      expect(refusal?.message).toContain("tpm")
    }))

  it.scopedLive("max_parallel: streams count until they end or are cancelled", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [sse(OpenAi.streamFrames(["a", "b", "c", "d", "e", "f"]), { gapMs: 150 })])
      const gateway = yield* gatewayWith([keyEntry("pair", { limits: { max_parallel: 2 } })], upstream)
      const open = (signal: AbortSignal) =>
        fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { ...asKey("pair"), "content-type": "application/json" },
          body: JSON.stringify(chatRequest("up", { stream: true })),
          signal
        })
      const first = new AbortController()
      const second = new AbortController()
      const [one, two] = yield* Effect.promise(() => Promise.all([open(first.signal), open(second.signal)]))
      expect([one.status, two.status]).toEqual([200, 200])
      const third = yield* postChat(gateway.baseUrl, chatRequest("up", { stream: true }), asKey("pair"))
      const error = expectEnvelope(third, 429, "rate_limit_exceeded")
      expect(error.message).toContain("max_parallel")
      expect(third.headers.get("retry-after")).toBe("1")
      // one stream cancelled: its slot is free
      first.abort()
      yield* Effect.promise(() => one.text().catch(() => ""))
      let admitted = 0
      for (let attempt = 0; attempt < 50 && admitted === 0; attempt++) {
        const again = yield* postChat(gateway.baseUrl, chatRequest("up", { stream: true }), asKey("pair"))
        if (again.status === 200) admitted++
        else yield* Effect.sleep("20 millis")
      }
      expect(admitted).toBe(1)
      second.abort()
      yield* Effect.promise(() => two.text().catch(() => ""))
    }))

  it.scopedLive("max_parallel: a client that leaves a non-streamed request frees its slot, and the request counts", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [hang])
      const gateway = yield* gatewayWith([keyEntry("single", { limits: { max_parallel: 1 } })], upstream)
      const controller = new AbortController()
      const left = fetch(`${gateway.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { ...asKey("single"), "content-type": "application/json" },
        body: JSON.stringify(chatRequest("up")),
        signal: controller.signal
      }).catch(() => undefined)
      yield* upstream.awaitCalls(1)
      controller.abort()
      yield* Effect.promise(() => left)
      let status = 0
      for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
        status = (yield* postChat(gateway.baseUrl, chatRequest("mock"), asKey("single"))).status
        if (status !== 200) yield* Effect.sleep("20 millis")
      }
      expect(status).toBe(200)
      const report = yield* usageWhen(gateway.baseUrl, "single", (report) => report.rows.length === 2)
      expect(report.rows.find((row) => row.model === "up")).toMatchObject({ requests: 1, prompt_tokens: 0, completion_tokens: 0 })
    }))

  it.scopedLive("budget: spend by the serving model's price; once exhausted, 429 insufficient_quota until the period rolls over", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("payer", { limits: { budget: { usd: 0.0025, period: "daily" } } })], undefined, [
        { name: "priced", provider: "mock", price: { input_per_mtok: 100, output_per_mtok: 300 } }
      ])
      // "a b c d" is 4 prompt and 4 completion tokens: 4 × 100 + 4 × 300 = 1600 USD per million = 0.0016 USD
      const body = { model: "priced", messages: [{ role: "user", content: "a b c d" }] }
      expect((yield* postChat(gateway.baseUrl, body, asKey("payer"))).status).toBe(200)
      yield* usageWhen(gateway.baseUrl, "payer", (report) => report.rows.length > 0)
      expect((yield* postChat(gateway.baseUrl, body, asKey("payer"))).status).toBe(200)
      const report = yield* usageWhen(gateway.baseUrl, "payer", (report) => (report.rows[0]?.requests ?? 0) === 2)
      expect(report.rows[0]?.spend_usd).toBeCloseTo(0.0032, 9)
      const refused = yield* postChat(gateway.baseUrl, body, asKey("payer"))
      const error = expectEnvelope(refused, 429, "insufficient_quota")
      expect(error.type).toBe("insufficient_quota")
      expect(error.message).toContain("payer")
      const untilMidnight = Math.ceil((Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1) - Date.now()) / 1000)
      expect(Math.abs(Number(refused.headers.get("retry-after")) - untilMidnight)).toBeLessThanOrEqual(5)
      const keys = JSON.parse((yield* call(`${gateway.baseUrl}/admin/keys`, { headers: operator })).text) as {
        keys: ReadonlyArray<{ current: { spend_this_period_usd: number } }>
      }
      expect(keys.keys[0]?.current.spend_this_period_usd).toBeCloseTo(0.0032, 9)
    }))
})

describe("usage accounting", () => {
  it.scopedLive("usage rows equal the sum of the usage the clients saw, per key and model; refusals count as requests", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([keyEntry("acct", { models: ["mock"] })])
      let prompt = 0
      let completion = 0
      const sentences = ["alpha beta", "gamma delta epsilon", "zeta"]
      for (const [index, sentence] of sentences.entries()) {
        const stream = index % 2 === 1
        const answer = yield* postChat(
          gateway.baseUrl,
          { model: "mock", messages: [{ role: "user", content: sentence }], ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) },
          asKey("acct")
        )
        expect(answer.status).toBe(200)
        const usage = stream
          ? (ssePayloads(answer.text).flatMap((payload) => (typeof payload === "object" && payload !== null && "usage" in payload && payload.usage != null ? [payload.usage] : []))[0] as { prompt_tokens: number; completion_tokens: number })
          : (JSON.parse(answer.text) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage
        prompt += usage.prompt_tokens
        completion += usage.completion_tokens
      }
      // a stream whose client did not ask for usage is accounted all the same, from the usage the gateway asked for
      const quiet = yield* postChat(gateway.baseUrl, { model: "mock", messages: [{ role: "user", content: "eta theta" }], stream: true }, asKey("acct"))
      expect(quiet.text).not.toContain('"usage"')
      prompt += 2
      completion += 2
      // refused: a model the key may not use, still a request
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock-2"), asKey("acct"))).status).toBe(404)
      const report = yield* usageWhen(gateway.baseUrl, "acct", (report) => report.rows.reduce((sum, row) => sum + row.requests, 0) === 5)
      const mockRow = report.rows.find((row) => row.model === "mock")
      expect(mockRow).toMatchObject({ key: "acct", requests: 4, prompt_tokens: prompt, completion_tokens: completion, spend_usd: 0 })
      expect(report.rows.find((row) => row.model === "mock-2")).toMatchObject({ requests: 1, prompt_tokens: 0, completion_tokens: 0 })
      // the operator's requests are rows of their own
      expect((yield* postChat(gateway.baseUrl, chatRequest("mock"), operator)).status).toBe(200)
      const all = yield* usageWhen(gateway.baseUrl, "operator", (report) => report.rows.length > 0)
      expect(all.rows[0]).toMatchObject({ key: "operator", model: "mock", requests: 1 })
      // a day with nothing is empty, and a malformed day is a 400
      expect((yield* usageOf(gateway.baseUrl)).rows.length).toBeGreaterThanOrEqual(2)
      expect(JSON.parse((yield* call(`${gateway.baseUrl}/admin/usage?day=2001-01-01`, { headers: operator })).text)).toEqual({ day: "2001-01-01", rows: [] })
      expectEnvelope(yield* call(`${gateway.baseUrl}/admin/usage?day=yesterday`, { headers: operator }), 400)
    }))

  it.scopedLive("a cancelled stream is counted from the prompt and the text it actually delivered, with the tokenizer", () =>
    Effect.gen(function* () {
      const words = ["Sphinx ", "of ", "black ", "quartz, ", "judge ", "my ", "vow. ", "never ", "sent"]
      // no usage ever: the upstream is cut off by the client before its end
      const upstream = yield* startUpstream("openai", [sse(OpenAi.streamFrames(words).slice(0, 8), { gapMs: 30, then: "stall" })])
      const gateway = yield* gatewayWith([keyEntry("cancel")], upstream)
      const prompt = "count what you delivered"
      const controller = new AbortController()
      const delivered = yield* Effect.promise(async () => {
        const response = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { ...asKey("cancel"), "content-type": "application/json" },
          body: JSON.stringify({ model: "up", messages: [{ role: "user", content: prompt }], stream: true }),
          signal: controller.signal
        })
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = ""
        while (!text.includes("quartz")) {
          const { done, value } = await reader.read()
          if (done) break
          text += decoder.decode(value, { stream: true })
        }
        controller.abort()
        return ssePayloads(text.slice(0, text.lastIndexOf("\n\n") + 2))
          .flatMap((payload) => (typeof payload === "object" && payload !== null && "choices" in payload ? (payload as { choices: ReadonlyArray<{ delta: { content?: string } }> }).choices : []))
          .map((choice) => choice.delta.content ?? "")
          .join("")
      })
      expect(delivered).toContain("quartz")
      expect(delivered).not.toContain("never")
      const report = yield* usageWhen(gateway.baseUrl, "cancel", (report) => (report.rows[0]?.completion_tokens ?? 0) > 0)
      expect(report.rows[0]).toMatchObject({
        key: "cancel",
        model: "up",
        requests: 1,
        prompt_tokens: countTokens(prompt) + 3 + 3,
        completion_tokens: countTokens(delivered)
      })
      // the upstream was asked for usage even though the client was not
      expect((upstream.calls[0]?.body as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage).toBe(true)
    }))
})

describe("the openai SDK against a limited key", () => {
  it.scopedLive("with maxRetries 0 it gets a RateLimitError carrying the headers; with its default retries it waits Retry-After and succeeds", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [sse(OpenAi.streamFrames(["slow", " answer", " here"]), { gapMs: 120 })])
      const gateway = yield* gatewayWith([keyEntry("sdk", { limits: { max_parallel: 1, rpm: 1000 } })], upstream)
      const strict = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: secretOf("sdk"), maxRetries: 0, timeout: 10_000 })
      const patient = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: secretOf("sdk"), timeout: 10_000 })
      // hold the key's one slot with a slow stream (~0.7 s)
      const holding = yield* Effect.fork(
        Effect.promise(async () => {
          const stream = await strict.chat.completions.create({ model: "up", messages: [{ role: "user", content: "hold" }], stream: true })
          for await (const _chunk of stream) {
            // read to the end
          }
        })
      )
      yield* upstream.awaitCalls(1)
      const refused = yield* Effect.flip(
        Effect.tryPromise({ try: () => strict.chat.completions.create({ model: "mock", messages: [{ role: "user", content: "now" }] }), catch: (error) => error })
      )
      expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
      const rateLimited = refused as InstanceType<typeof OpenAI.RateLimitError>
      expect(rateLimited.status).toBe(429)
      expect(rateLimited.code).toBe("rate_limit_exceeded")
      expect(rateLimited.headers?.get("retry-after")).toBe("1")
      expect(rateLimited.headers?.get("x-ratelimit-limit-requests")).toBe("1000")
      // the SDK retries on 429 after Retry-After (1 s), by then the slot is free again
      const completion = yield* Effect.promise(() => patient.chat.completions.create({ model: "mock", messages: [{ role: "user", content: "patient" }] }))
      expect(completion.choices[0]?.message.content).toBe("patient")
      yield* holding.await
    }))
})
