/**
 * One bad peer hurts one request: each finding of the robustness review, replayed against the whole gateway with a
 * real misbehaving upstream (or a hostile client) over real sockets. After each, the same gateway still serves.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, LogLevel } from "effect"
import { connect } from "node:net"
import { gzipSync } from "node:zlib"
import { captureLogs } from "../support/Logs.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"
import { deploymentOf, json, OpenAi, raw, registryFromDocument, sse, startUpstream, text } from "../support/FakeUpstreams.js"
import type { Script } from "../support/FakeUpstreams.js"
import { call, chatRequest, expectEnvelope, postChat } from "../support/Http.js"
import { ssePayloads, streamedContent, streamError } from "../support/Sse.js"
import type { TransportLimits } from "../../src/Providers/Upstream/Transport.js"

const retry = { max_retries: 2, initial_delay_ms: 1, max_delay_ms: 5 }

/** One OpenAI-compatible upstream answering `script` behind model `m`, and optionally a healthy fallback `b`. */
const gatewayWith = (
  script: Script,
  options: {
    readonly limits?: Partial<TransportLimits>
    readonly timeouts?: Record<string, number>
    readonly fallback?: boolean
    readonly apiKeyEnv?: string
    readonly logLevel?: LogLevel.LogLevel
  } = {}
) =>
  Effect.gen(function* () {
    const upstream = yield* startUpstream("openai", script)
    const backup = yield* startUpstream("openai", [OpenAi.completion({ content: "from the fallback" })])
    const models = [
      deploymentOf("m", upstream, {
        ...(options.fallback === true ? { fallbacks: ["b"] } : {}),
        ...(options.apiKeyEnv === undefined ? {} : { api_key_env: options.apiKeyEnv })
      }),
      deploymentOf("b", backup)
    ]
    const registry = registryFromDocument({ models, settings: { retry, timeouts: options.timeouts ?? {} } }, options.limits)
    const gateway = yield* startGateway({
      registry,
      settings: { shutdownGraceMs: 100, ...(options.logLevel === undefined ? {} : { logLevel: options.logLevel, logFormat: "json" as const }) }
    })
    return { upstream, backup, gateway }
  })

/** The gateway still answers, after whatever the test did to it. */
const stillServes = (gateway: RunningGateway) =>
  Effect.gen(function* () {
    const health = yield* call(`${gateway.baseUrl}/health`)
    expect(health.status).toBe(200)
  })

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) =>
  `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

describe("crashes that were (findings 1–3): a malformed upstream answer is that request's 502 or error frame", () => {
  it.scopedLive("a first stream event with choices [null] is a 502 upstream_malformed_response, not retried", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* gatewayWith([sse(['data: {"object":"chat.completion.chunk","choices":[null]}\n\n', "data: [DONE]\n\n"])])
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
      expectEnvelope(answer, 502, "upstream_malformed_response")
      expect(upstream.calls).toHaveLength(1)
      yield* stillServes(gateway)
    }))

  it.scopedLive("the same event after the commit ends the stream with one malformed-response error frame", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayWith([
        sse([chunk({ role: "assistant", content: "Hel" }), 'data: {"object":"chat.completion.chunk","choices":[null]}\n\n', "data: [DONE]\n\n"])
      ])
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
      expect(answer.status).toBe(200)
      expect(streamedContent(answer.text)).toBe("Hel")
      expect(streamError(answer.text)?.code).toBe("upstream_malformed_response")
      expect(answer.text).not.toContain("[DONE]")
      yield* stillServes(gateway)
    }))

  it.scopedLive("a completion nested 100k deep is a 502, and so is a streamed chunk nested 100k deep (after the commit: an error frame)", () =>
    Effect.gen(function* () {
      const deepCompletion = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","extra":${nested(100_000)}},"finish_reason":"stop"}]}`
      const { gateway, upstream } = yield* gatewayWith([text(200, deepCompletion, "application/json")])
      expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m")), 502, "upstream_malformed_response")
      upstream.setScript([
        sse([chunk({ role: "assistant", content: "" }), chunk({ content: "x" }, null, { deep: "@" }).replace('"@"', nested(100_000)), "data: [DONE]\n\n"])
      ])
      const streamed = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
      expect(streamed.status).toBe(200)
      expect(streamError(streamed.text)?.code).toBe("upstream_malformed_response")
      yield* stillServes(gateway)
    }))
})

describe("unbounded resources that were (findings 5, 7, 8)", () => {
  it.scopedLive("a 2xx body that never ends is cut at the response limit: 502", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayWith(
        [
          raw((response) => {
            response.writeHead(200, { "content-type": "application/json" })
            response.write('{"id":"x","object":"chat.completion","choices":[{"message":{"content":"')
            const piece = "x".repeat(64 * 1024)
            const more = () => {
              while (!response.destroyed && response.write(piece));
              if (!response.destroyed) response.once("drain", more)
            }
            more()
          })
        ],
        { limits: { maxResponseBytes: 1024 * 1024 } }
      )
      const error = expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m")), 502, "upstream_malformed_response")
      expect(error.message).toContain("larger than 1048576 bytes")
      yield* stillServes(gateway)
    }))

  it.scopedLive("the bodies of all requests together are cut at UPSTREAM_MAX_HELD_BYTES: 502, and what they held is given back", () =>
    Effect.gen(function* () {
      const content = "x".repeat(600 * 1024)
      let calls = 0
      let closedStalls = 0
      // Two bodies of 600 KiB that never end: together past the 1 MiB bound, each well within its own limit.
      const stall = raw((response) => {
        response.on("close", () => closedStalls++)
        response.writeHead(200, { "content-type": "application/json" })
        response.write(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"${content}`)
      })
      const { gateway } = yield* gatewayWith(() => (++calls <= 2 ? stall : OpenAi.completion({ content })), {
        limits: { maxResponseBytes: 1024 * 1024, maxHeldBytes: 1024 * 1024 }
      })
      const first = yield* Effect.fork(postChat(gateway.baseUrl, chatRequest("m")))
      const second = yield* Effect.fork(postChat(gateway.baseUrl, chatRequest("m")))
      // Whichever is read second passes the bound and is answered; the other holds its bytes until its client leaves.
      const answered = yield* Effect.raceFirst(Fiber.join(first), Fiber.join(second))
      const error = expectEnvelope(answered, 502, "upstream_malformed_response")
      expect(error.message).toContain("UPSTREAM_MAX_HELD_BYTES")
      yield* Fiber.interrupt(first)
      yield* Fiber.interrupt(second)
      while (closedStalls < 2) yield* Effect.sleep("10 millis")
      // Both bodies' bytes were given back: a third body of the same size fits.
      const third = yield* postChat(gateway.baseUrl, chatRequest("m"))
      expect(third.status).toBe(200)
      expect(JSON.parse(third.text).choices[0].message.content).toBe(content)
    }))

  it.scopedLive("one SSE event over the event limit fails that stream with upstream_malformed_response", () =>
    Effect.gen(function* () {
      const huge = `data: {"choices":[{"index":0,"delta":{"content":"${"y".repeat(2 * 1024 * 1024)}"}}]}\n\n`
      const { gateway } = yield* gatewayWith([sse([huge, "data: [DONE]\n\n"])], { limits: { maxEventBytes: 256 * 1024 } })
      const error = expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true })), 502, "upstream_malformed_response")
      expect(error.message).toContain("SSE event larger than")
      yield* stillServes(gateway)
    }))

  it.scopedLive("a client that reads nothing is cut off at request_ms, however fast the upstream writes", () =>
    Effect.gen(function* () {
      const bigChunk = chunk({ content: "z".repeat(256 * 1024) })
      const { gateway, upstream } = yield* gatewayWith(
        [
          raw((response) => {
            response.writeHead(200, { "content-type": "text/event-stream" })
            const more = () => {
              while (!response.destroyed && response.write(bigChunk));
              if (!response.destroyed) response.once("drain", more)
            }
            more()
          })
        ],
        { timeouts: { request_ms: 1500, first_token_ms: 1000 } }
      )
      const body = JSON.stringify(chatRequest("m", { stream: true }))
      const socket = connect(Number(new URL(gateway.baseUrl).port), "127.0.0.1")
      socket.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      const started = performance.now()
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${testKey}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
      )
      // never read: the kernel buffers fill and the gateway's writes back up; a paused socket cannot see the close,
      // so the gateway's own count of requests in flight says when it ended the response
      socket.pause()
      yield* Effect.sleep("200 millis")
      expect(gateway.lifecycle.inFlight()).toBe(1)
      while (gateway.lifecycle.inFlight() > 0 && performance.now() - started < 15_000) yield* Effect.sleep("20 millis")
      const closedAfter = performance.now() - started
      // request_ms, plus the grace a backed-up response gets to flush its error frame
      expect(closedAfter).toBeGreaterThan(1400)
      expect(closedAfter).toBeLessThan(1500 + 1000 + 2000)
      const closed = yield* Effect.promise(() => upstream.calls[0]!.closed)
      expect(closed).toBeGreaterThan(0)
      yield* stillServes(gateway)
    }))
})

describe("wrong outcomes that were (findings 11–14, 16)", () => {
  it.scopedLive("an upstream redirect is a 502 upstream error, not followed, not retried, and worth a fallback", () =>
    Effect.gen(function* () {
      for (const status of [302, 307]) {
        const { gateway, upstream } = yield* gatewayWith([text(status, "", "text/plain", { location: "http://127.0.0.1:1/elsewhere" })])
        const error = expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m")), 502, "upstream_malformed_response")
        expect(error.type).toBe("upstream_error")
        expect(error.message).not.toContain("127.0.0.1:1")
        expect(upstream.calls).toHaveLength(1)
      }
      const { gateway, backup } = yield* gatewayWith([text(302, "", "text/plain", { location: "/x" })], { fallback: true })
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m"))
      expect(answer.status).toBe(200)
      expect(answer.headers.get("x-llm-proxy-model")).toBe("b")
      expect(backup.calls).toHaveLength(1)
    }))

  it.scopedLive("usage that is not a count reaches neither the client nor the token metrics", () =>
    Effect.gen(function* () {
      const bad: ReadonlyArray<unknown> = ["abc", -1_000_000, 1e308, 1.5]
      const { gateway, upstream } = yield* gatewayWith([OpenAi.completion({ content: "ok" })])
      const metricsText = Effect.map(call(`${gateway.baseUrl}/metrics`, { headers: gateway.auth }), (answer) => answer.text)
      const tokenSeries = (text: string) => text.split("\n").filter((line) => line.startsWith("llm_proxy_tokens_total"))
      for (const value of bad) {
        upstream.setScript([
          json({
            id: "x",
            object: "chat.completion",
            created: 1,
            model: "m",
            choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop", logprobs: null }],
            usage: { prompt_tokens: value, completion_tokens: 3, total_tokens: 3 }
          })
        ])
        const answer = yield* postChat(gateway.baseUrl, chatRequest("m"))
        expect(answer.status).toBe(200)
        expect("usage" in (JSON.parse(answer.text) as object)).toBe(false)
        upstream.setScript([
          sse([chunk({ role: "assistant", content: "ok" }, "stop"), `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 2, completion_tokens: value, total_tokens: 5 } })}\n\n`, "data: [DONE]\n\n"])
        ])
        const streamed = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true, stream_options: { include_usage: true } }))
        expect(ssePayloads(streamed.text).some((payload) => typeof payload === "object" && payload !== null && "usage" in payload && (payload as { usage: unknown }).usage != null)).toBe(false)
      }
      for (const line of tokenSeries(yield* metricsText)) {
        const value = Number(line.split(" ").at(-1))
        expect(Number.isFinite(value) && value >= 0 && Number.isInteger(value)).toBe(true)
      }
    }))

  it.scopedLive("an upstream error that echoes the gateway's upstream key reaches the client scrubbed", () =>
    Effect.gen(function* () {
      const key = "sk-upstream-secret-4242424242"
      process.env["ROBUSTNESS_UPSTREAM_KEY"] = key
      const logs = captureLogs()
      const lines = logs.raw
      yield* Effect.addFinalizer(() => Effect.sync(logs.restore))
      const { gateway } = yield* gatewayWith(
        [
          OpenAi.error(400, `Incorrect API key provided: ${key}. Check ${key}.`, { type: "invalid_request_error", code: "invalid_api_key" }),
          sse([chunk({ role: "assistant", content: "" }), `data: {"error":{"message":"key ${key} revoked","code":"500"}}\n\n`])
        ],
        { apiKeyEnv: "ROBUSTNESS_UPSTREAM_KEY", logLevel: LogLevel.Debug }
      )
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m"))
      expect(answer.status).toBe(400)
      expect(answer.text).not.toContain(key)
      expect(answer.text).toContain("[redacted]")
      const streamed = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
      expect(streamError(streamed.text)?.message).toContain("[redacted]")
      expect(streamed.text).not.toContain(key)
      expect(lines.length).toBeGreaterThan(0)
      expect(lines.join("\n")).not.toContain(key)
      delete process.env["ROBUSTNESS_UPSTREAM_KEY"]
    }))

  it.scopedLive("choices that are not choice objects are a 502, never a 200", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayWith([json({ id: "x", object: "chat.completion", created: 1, model: "m", choices: [1, "x", null] })])
      expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m")), 502, "upstream_malformed_response")
    }))

  it.scopedLive("a JSON completion answered to a stream request is served as a stream", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* gatewayWith([OpenAi.completion({ content: "served as a stream" })])
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true, stream_options: { include_usage: true } }))
      expect(answer.status).toBe(200)
      expect(answer.headers.get("content-type")).toContain("text/event-stream")
      expect(streamedContent(answer.text)).toBe("served as a stream")
      const payloads = ssePayloads(answer.text)
      expect(payloads.at(-1)).toBe("[DONE]")
      expect(upstream.calls).toHaveLength(1)
    }))

  it.scopedLive("a gzip-encoded SSE body is decoded", () =>
    Effect.gen(function* () {
      const body = gzipSync(chunk({ role: "assistant", content: "zip" }) + chunk({ content: "ped" }, "stop") + "data: [DONE]\n\n")
      const { gateway } = yield* gatewayWith([
        raw((response) => {
          response.writeHead(200, { "content-type": "text/event-stream", "content-encoding": "gzip" })
          response.end(body)
        })
      ])
      const answer = yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true }))
      expect(answer.status).toBe(200)
      expect(streamedContent(answer.text)).toBe("zipped")
    }))

  it.scopedLive("an HTML page answered 200 to a stream request is a 502, not retried", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* gatewayWith([text(200, "<html><body>hello</body></html>", "text/html")])
      const error = expectEnvelope(yield* postChat(gateway.baseUrl, chatRequest("m", { stream: true })), 502, "upstream_malformed_response")
      expect(error.message).toContain("text/html")
      expect(upstream.calls).toHaveLength(1)
    }))
})

describe("hostile client bodies (findings 9, 10)", () => {
  for (const mount of mounts) it.scopedLive(`a body nested 2500 deep, or a deep value in any field, is a 400 — never a 500 or a stack overflow (${mount} mount)`, () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ mount })
      const deep = (depth: number) => JSON.parse(nested(depth)) as unknown
      const bodies: ReadonlyArray<unknown> = [
        deep(2500),
        { model: "mock", messages: [{ role: "user", content: "hi" }], temperature: deep(2500) },
        { model: "mock", messages: [{ role: "user", content: deep(2500) }] },
        { model: deep(2500), messages: [{ role: "user", content: "hi" }] },
        { model: "mock", messages: [{ role: "user", content: "hi" }], vendor_extra: deep(2500) },
        { model: "mock", messages: [{ role: "user", content: "hi" }], vendor_extra: deep(150) }
      ]
      for (const body of bodies) {
        const answer = yield* call(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
          body: JSON.stringify(body)
        })
        expect(answer.status).toBe(400)
        expectEnvelope(answer, 400)
      }
      // a real request with an unknown field nested a little is served
      const fine = yield* postChat(gateway.baseUrl, chatRequest("mock", { vendor_extra: deep(20) }))
      expect(fine.status).toBe(200)
    }))

  it.scopedLive("the mock with n: 128 and a 4 MB message answers within its output bound", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: { maxBodyBytes: 8 * 1024 * 1024 } })
      const message = "word ".repeat(800_000)
      const answer = yield* postChat(gateway.baseUrl, { model: "mock", n: 128, messages: [{ role: "user", content: message }] })
      expect(answer.status).toBe(200)
      expect(answer.text.length).toBeLessThan(4 * 1024 * 1024)
      const completion = JSON.parse(answer.text) as { readonly choices: ReadonlyArray<{ readonly finish_reason: string }> }
      expect(completion.choices).toHaveLength(128)
      expect(completion.choices.every((choice) => choice.finish_reason === "length")).toBe(true)
      const streamed = yield* postChat(gateway.baseUrl, { model: "mock", n: 128, stream: true, messages: [{ role: "user", content: message }] })
      expect(streamed.status).toBe(200)
      expect(streamed.text.endsWith("data: [DONE]\n\n")).toBe(true)
      expect(streamed.text.length).toBeLessThan(32 * 1024 * 1024)
      yield* stillServes(gateway)
    }))
})
