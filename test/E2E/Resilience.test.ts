/**
 * Retries, fallbacks, load balancing, the stream commit point and deadlines, over HTTP, against real upstream
 * servers that fail on purpose. Retry delays are tiny so the real clock keeps these fast.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startGateway } from "../support/Gateway.js"
import {
  Anthropic,
  deploymentOf,
  hang,
  htmlBadGateway,
  OpenAi,
  malformedSse,
  registryFromDocument,
  resetAfter,
  sse,
  stallAfter,
  startUpstream
} from "../support/FakeUpstreams.js"
import type { Script } from "../support/FakeUpstreams.js"
import { chatRequest, expectEnvelope, postChat } from "../support/Http.js"
import type { Answer } from "../support/Http.js"
import { isErrorFrame, ssePayloads, streamedContent, streamError } from "../support/Sse.js"

const retry = { max_retries: 2, initial_delay_ms: 1, max_delay_ms: 5 }

const gatewayWith = (models: ReadonlyArray<Record<string, unknown>>, timeouts: Record<string, number> = {}) =>
  startGateway({
    registry: registryFromDocument({ models, settings: { retry, timeouts } }),
    settings: { shutdownGraceMs: 100 }
  })

/** One OpenAI-compatible upstream answering `script`, behind a gateway model named `m`. */
const single = (script: Script, timeouts: Record<string, number> = {}) =>
  Effect.gen(function* () {
    const upstream = yield* startUpstream("openai", script)
    const gateway = yield* gatewayWith([deploymentOf("m", upstream)], timeouts)
    return { upstream, gateway }
  })

const chat = (baseUrl: string, model = "m") => postChat(baseUrl, chatRequest(model))
const chatStream = (baseUrl: string, model = "m") => postChat(baseUrl, chatRequest(model, { stream: true }))

const content = (answer: Answer): string | null | undefined =>
  (JSON.parse(answer.text) as { choices: ReadonlyArray<{ message: { content: string | null } }> }).choices[0]?.message.content

const rateLimited = OpenAi.error(429, "Rate limit reached for requests", {
  type: "requests",
  code: "rate_limit_exceeded",
  headers: { "retry-after": "0" }
})
const serverError = OpenAi.error(500, "The server had an error while processing your request.", { type: "server_error" })
const tokens = ["Hello", " from", " the", " stream", "."]

describe("retries and fallbacks", () => {
  it.scopedLive("retries 429 twice (Retry-After: 0) and succeeds on the third upstream call", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([rateLimited, rateLimited, OpenAi.completion({ content: "third time lucky" })])
      const answer = yield* chat(gateway.baseUrl)
      expect(answer.status).toBe(200)
      expect(content(answer)).toBe("third time lucky")
      expect(answer.headers.get("x-llm-proxy-attempts")).toBe("3")
      expect(upstream.calls).toHaveLength(3)
    }))

  it.scopedLive("waits as long as the upstream's Retry-After asks before retrying", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([
        OpenAi.error(429, "Rate limit reached", { code: "rate_limit_exceeded", headers: { "retry-after-ms": "300" } }),
        OpenAi.completion({ content: "after the wait" })
      ])
      const answer = yield* chat(gateway.baseUrl)
      expect(answer.status).toBe(200)
      expect(content(answer)).toBe("after the wait")
      const [first, second] = upstream.calls
      // The computed backoff would be under 5 ms; the upstream asked for 300.
      expect(second!.receivedAt - first!.receivedAt).toBeGreaterThanOrEqual(290)
    }))

  it.scopedLive("retries an overloaded Anthropic upstream (529) too", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("anthropic", [
        Anthropic.error(529, "overloaded_error", "Overloaded"),
        Anthropic.message([{ type: "text", text: "recovered" }])
      ])
      const gateway = yield* gatewayWith([deploymentOf("claude", upstream)])
      const answer = yield* chat(gateway.baseUrl, "claude")
      expect(answer.status).toBe(200)
      expect(content(answer)).toBe("recovered")
      expect(answer.headers.get("x-llm-proxy-attempts")).toBe("2")
      expect(upstream.calls).toHaveLength(2)
    }))

  it.scopedLive("does not retry a 400, and passes the upstream's message, param and code on", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([
        OpenAi.error(400, "Invalid 'messages[0].content': string too long.", {
          param: "messages[0].content",
          code: "string_above_max_length"
        }),
        OpenAi.completion()
      ])
      const answer = yield* chat(gateway.baseUrl)
      expect(expectEnvelope(answer, 400)).toStrictEqual({
        message: "Invalid 'messages[0].content': string too long.",
        type: "invalid_request_error",
        param: "messages[0].content",
        code: "string_above_max_length"
      })
      expect(upstream.calls).toHaveLength(1)
    }))

  it.scopedLive("falls back to the next model after the primary's retries, naming the fallback", () =>
    Effect.gen(function* () {
      const primary = yield* startUpstream("openai", [serverError])
      const backup = yield* startUpstream("openai", [OpenAi.completion({ content: "from the backup", model: "backup-upstream" })])
      const gateway = yield* gatewayWith([deploymentOf("primary", primary, { fallbacks: ["backup"] }), deploymentOf("backup", backup)])
      const answer = yield* chat(gateway.baseUrl, "primary")
      expect(answer.status).toBe(200)
      expect(content(answer)).toBe("from the backup")
      expect((JSON.parse(answer.text) as { model: string }).model).toBe("backup")
      expect(answer.headers.get("x-llm-proxy-model")).toBe("backup")
      expect(answer.headers.get("x-llm-proxy-attempts")).toBe("4")
      expect(primary.calls).toHaveLength(1 + retry.max_retries)
      expect(backup.calls).toHaveLength(1)
      expect(backup.calls[0]?.json["model"]).toBe("backup-upstream")
    }))

  it.scopedLive("answers a 5xx envelope after 1 + max_retries calls when there is no fallback", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([serverError])
      const answer = yield* chat(gateway.baseUrl)
      expect(expectEnvelope(answer, 502)).toMatchObject({ type: "upstream_error", code: "upstream_unavailable" })
      expect(upstream.calls).toHaveLength(1 + retry.max_retries)
    }))

  it.scopedLive("answers 429 with a Retry-After header when the upstream is still rate limited after retries", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([rateLimited])
      const answer = yield* chat(gateway.baseUrl)
      expect(expectEnvelope(answer, 429)).toMatchObject({ type: "rate_limit_error", code: "rate_limit_exceeded" })
      expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/)
      expect(upstream.calls).toHaveLength(1 + retry.max_retries)
    }))

  it.scopedLive("answers 502 when the upstream refuses the gateway's key, without retrying", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([
        OpenAi.error(401, "Incorrect API key provided: sk-upstr***", { code: "invalid_api_key" })
      ])
      const answer = yield* chat(gateway.baseUrl)
      const error = expectEnvelope(answer, 502)
      expect(error).toMatchObject({ type: "upstream_error", code: "upstream_authentication_failed" })
      expect(error.message).not.toContain("sk-upstr")
      expect(upstream.calls).toHaveLength(1)
    }))

  it.scopedLive("answers a 502 envelope, with no HTML in it, for an HTML 502 page", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([htmlBadGateway])
      for (const answer of [yield* chat(gateway.baseUrl), yield* chatStream(gateway.baseUrl)]) {
        expect(expectEnvelope(answer, 502)).toMatchObject({ type: "upstream_error", code: "upstream_unavailable" })
        expect(answer.text).not.toMatch(/<html|<h1|nginx/i)
      }
      expect(upstream.calls).toHaveLength(2 * (1 + retry.max_retries))
    }))

  it.scopedLive("balances traffic between two deployments sharing a name", () =>
    Effect.gen(function* () {
      const a = yield* startUpstream("openai", [OpenAi.completion({ content: "a" })])
      const b = yield* startUpstream("openai", [OpenAi.completion({ content: "b" })])
      const gateway = yield* gatewayWith([deploymentOf("shared", a), deploymentOf("shared", b)])
      const answers = yield* Effect.forEach(Array.from({ length: 40 }), () => chat(gateway.baseUrl, "shared"), { concurrency: 8 })
      expect(answers.every((answer) => answer.status === 200)).toBe(true)
      const served = answers.map(content)
      expect(served.filter((text) => text === "a")).toHaveLength(a.calls.length)
      expect(a.calls.length + b.calls.length).toBe(40)
      expect(a.calls.length).toBeGreaterThanOrEqual(5)
      expect(b.calls.length).toBeGreaterThanOrEqual(5)
    }))
})

describe("streams and the commit point", () => {
  it.scopedLive("retries a 503 before the first chunk; the client sees a clean 200 stream", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([
        OpenAi.error(503, "The engine is currently overloaded", { type: "server_error" }),
        OpenAi.stream(tokens)
      ])
      const answer = yield* chatStream(gateway.baseUrl)
      expect(answer.status).toBe(200)
      expect(answer.headers.get("content-type")).toContain("text/event-stream")
      expect(answer.headers.get("x-llm-proxy-attempts")).toBe("2")
      const payloads = ssePayloads(answer.text)
      expect(streamedContent(answer.text)).toBe("Hello from the stream.")
      expect(payloads.some(isErrorFrame)).toBe(false)
      expect(payloads.filter((payload) => payload === "[DONE]")).toHaveLength(1)
      expect(payloads.at(-1)).toBe("[DONE]")
      expect(upstream.calls).toHaveLength(2)
    }))

  it.scopedLive("ends with one error frame and no [DONE] when the upstream resets after the commit", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([resetAfter(OpenAi.streamFrames(tokens), 3)])
      const answer = yield* chatStream(gateway.baseUrl)
      expect(answer.status).toBe(200)
      const payloads = ssePayloads(answer.text)
      expect(streamedContent(answer.text)).toBe("Hello from")
      expect(payloads).not.toContain("[DONE]")
      expect(payloads.filter(isErrorFrame)).toHaveLength(1)
      expect(streamError(answer.text)).toMatchObject({ type: "upstream_error", code: "upstream_unavailable" })
      expect(upstream.calls).toHaveLength(1)
    }))

  it.scopedLive("relays an upstream's in-stream error payload as the gateway's error frame", () =>
    Effect.gen(function* () {
      const good = OpenAi.streamFrames(tokens)
      const { gateway } = yield* single([
        sse([good[0]!, good[1]!, `data: ${JSON.stringify({ error: { message: "The server had an error", type: "server_error", param: null, code: null } })}\n\n`])
      ])
      const answer = yield* chatStream(gateway.baseUrl)
      expect(answer.status).toBe(200)
      const payloads = ssePayloads(answer.text)
      expect(streamedContent(answer.text)).toBe("Hello")
      expect(payloads).not.toContain("[DONE]")
      expect(payloads.filter(isErrorFrame)).toHaveLength(1)
      expect(streamError(answer.text)).toMatchObject({ message: "The server had an error", type: "upstream_error" })
    }))

  it.scopedLive("answers 502 for malformed SSE before the commit, and an error frame after it", () =>
    Effect.gen(function* () {
      const good = OpenAi.streamFrames(tokens)
      const { gateway, upstream } = yield* single([
        malformedSse(),
        malformedSse(good.slice(0, 2))
      ])
      const before = yield* chatStream(gateway.baseUrl)
      expect(expectEnvelope(before, 502)).toMatchObject({ type: "upstream_error", code: "upstream_malformed_response" })
      expect(upstream.calls).toHaveLength(1)

      const after = yield* chatStream(gateway.baseUrl)
      expect(after.status).toBe(200)
      const payloads = ssePayloads(after.text)
      expect(streamedContent(after.text)).toBe("Hello")
      expect(payloads).not.toContain("[DONE]")
      expect(streamError(after.text)).toMatchObject({ code: "upstream_malformed_response" })
      expect(upstream.calls).toHaveLength(2)
    }))

  it.scopedLive("answers 504 when a stream stalls before its first chunk (first_token_ms), after retries", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([stallAfter([], 0)], { first_token_ms: 100 })
      const started = performance.now()
      const answer = yield* chatStream(gateway.baseUrl)
      expect(expectEnvelope(answer, 504)).toMatchObject({ type: "timeout_error", code: "upstream_timeout" })
      expect(performance.now() - started).toBeLessThan(3_000)
      expect(upstream.calls).toHaveLength(1 + retry.max_retries)
      // Every stalled attempt was abandoned: its upstream connection was closed by the gateway.
      yield* Effect.promise(() => Promise.all(upstream.calls.map((call) => call.closed)))
      expect(upstream.calls.every((call) => call.closedByClient)).toBe(true)
    }))

  it.scopedLive("ends with a timeout error frame when a committed stream stalls", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* single([stallAfter(OpenAi.streamFrames(tokens), 2)], { first_token_ms: 150 })
      const answer = yield* chatStream(gateway.baseUrl)
      expect(answer.status).toBe(200)
      const payloads = ssePayloads(answer.text)
      expect(streamedContent(answer.text)).toBe("Hello")
      expect(payloads).not.toContain("[DONE]")
      expect(streamError(answer.text)).toMatchObject({ type: "timeout_error", code: "upstream_timeout" })
      expect(upstream.calls).toHaveLength(1)
      yield* Effect.promise(() => upstream.calls[0]!.closed)
      expect(upstream.calls[0]?.closedByClient).toBe(true)
    }))

  const slowCompletions = [
    ["sends nothing", hang],
    [
      "stalls in its body after the headers",
      sse(["{\"id\":\"chatcmpl-1\",\"object\":"], { headers: { "content-type": "application/json" }, then: "stall" })
    ]
  ] as const
  for (const [what, reply] of slowCompletions) {
    it.scopedLive(`answers 504 at request_ms when the upstream ${what}, and closes the upstream connection`, () =>
      Effect.gen(function* () {
        const { gateway, upstream } = yield* single([reply], { request_ms: 200 })
        const started = performance.now()
        const answer = yield* chat(gateway.baseUrl)
        const elapsed = performance.now() - started
        expect(expectEnvelope(answer, 504)).toMatchObject({ type: "timeout_error", code: "upstream_timeout" })
        expect(elapsed).toBeGreaterThanOrEqual(190)
        expect(elapsed).toBeLessThan(2_000)
        expect(upstream.calls).toHaveLength(1)
        yield* Effect.promise(() => upstream.calls[0]!.closed)
        expect(upstream.calls[0]?.closedByClient).toBe(true)
      }))
  }
})
