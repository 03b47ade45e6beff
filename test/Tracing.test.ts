/**
 * OpenTelemetry traces, end to end: a gateway configured (in-process, the way OTEL_* variables configure it) to
 * export to an in-process OTLP/HTTP receiver, a fake upstream, and a client that sends a W3C traceparent. The span
 * tree, its attributes, the trace context the upstream received, both OTLP encodings, the samplers, and a collector
 * that is down or hangs — which must change nothing for the client.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, LogLevel, Schedule } from "effect"
import { vi } from "vitest"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import * as Mock from "../src/Providers/Mock/Provider.js"
import type { StreamProvider } from "../src/Providers/Provider.js"
import * as Registry from "../src/Router/Registry.js"
import { traceSettingsFrom } from "../src/Tracing/Settings.js"
import type { TraceSettings } from "../src/Tracing/Settings.js"
import { deploymentOf, OpenAi, registryFromDocument, startUpstream } from "./support/FakeUpstreams.js"
import type { FakeUpstream, Reply } from "./support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "./support/Gateway.js"
import type { Mount, RunningGateway } from "./support/Gateway.js"
import { postChat } from "./support/Http.js"
import { startReceiver } from "./support/OtlpReceiver.js"
import type { ReceivedSpan } from "./support/OtlpReceiver.js"
import { sseData, streamedContent } from "./support/Sse.js"

const clientTraceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const clientSpanId = "00f067aa0ba902b7"
const sampledParent = `00-${clientTraceId}-${clientSpanId}-01`
const unsampledParent = `00-${clientTraceId}-${clientSpanId}-00`

/** Words that must never reach a span: the prompt and the completion. */
const prompt = "tell me about the lighthouse keeper"
const tokens = ["Quiet", " harbour", " lights"]

/** Trace settings as the given OTEL_* variables make them. */
const settingsOf = (variables: Record<string, string>): TraceSettings => {
  const parsed = traceSettingsFrom(variables)
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  if (parsed.right === undefined) throw new Error("tracing is off")
  return parsed.right
}

const streamedReply = (): Reply => OpenAi.stream(tokens, { usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } })

/** An upstream that fails once with 503, then streams; and a gateway in front of it with one retry allowed. */
const retriedStream = (
  mount: Mount,
  tracing: TraceSettings | undefined
): Effect.Effect<{ readonly upstream: FakeUpstream; readonly gateway: RunningGateway }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const upstream = yield* startUpstream("openai", [OpenAi.error(503, "overloaded", { type: "server_error" }), streamedReply()])
    const registry = registryFromDocument({
      models: [deploymentOf("primary", upstream)],
      settings: { retry: { max_retries: 1, initial_delay_ms: 1, max_delay_ms: 2 } }
    })
    const gateway = yield* startGateway({ registry, mount, settings: { tracing } })
    return { upstream, gateway }
  })

const streamRequest = {
  model: "primary",
  stream: true,
  stream_options: { include_usage: true },
  temperature: 0.5,
  top_p: 0.9,
  max_tokens: 64,
  messages: [{ role: "user", content: prompt }]
}

const byAttempt = (spans: ReadonlyArray<ReceivedSpan>) =>
  spans.filter((span) => span.kind === "client").sort((a, b) => Number(a.attributes["llm_proxy.attempt"]) - Number(b.attributes["llm_proxy.attempt"]))

/** A port nothing listens on. */
const closedPort = Effect.promise(
  () =>
    new Promise<number>((resolve) => {
      const server = createServer()
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        server.close(() => resolve(port))
      })
    })
)

describe("traces", () => {
  for (const mount of mounts) {
    for (const protocol of ["http/protobuf", "http/json"] as const) {
      it.scopedLive(`a retried stream (${mount} mount, ${protocol}): one server span, two attempt spans, the client's trace continued upstream`, () =>
        Effect.gen(function* () {
          const receiver = yield* startReceiver
          const tracing = settingsOf({
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin,
            OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
            OTEL_SERVICE_NAME: "gateway-under-test",
            OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test",
            OTEL_EXPORTER_OTLP_HEADERS: "x-collector-key=collector-secret",
            OTEL_BSP_SCHEDULE_DELAY: "20"
          })
          const { gateway, upstream } = yield* retriedStream(mount, tracing)
          const answer = yield* postChat(gateway.baseUrl, streamRequest, {
            traceparent: sampledParent,
            tracestate: "vendor=opaque",
            "x-request-id": "req-traced-1",
            "user-agent": "trace-test/1.0"
          })
          expect(answer.status).toBe(200)
          expect(streamedContent(answer.text)).toBe(tokens.join(""))
          expect(sseData(answer.text).at(-1)).toBe("[DONE]")

          const spans = yield* receiver.awaitSpans(3, (span) => span.traceId === clientTraceId)
          expect(spans).toHaveLength(3)
          const server = spans.find((span) => span.kind === "server")!
          const [first, second] = byAttempt(spans)
          expect(server).toBeDefined()
          expect(first).toBeDefined()
          expect(second).toBeDefined()

          // the tree: the client's span → the server span → one client span per attempt
          expect(server.parentSpanId).toBe(clientSpanId)
          expect(first!.parentSpanId).toBe(server.spanId)
          expect(second!.parentSpanId).toBe(server.spanId)
          expect(server.name).toBe("POST /v1/chat/completions")
          expect(first!.name).toBe("chat primary")
          // the server span covers the whole stream, attempts included
          expect(server.startNanos).toBeLessThanOrEqual(first!.startNanos)
          expect(server.endNanos).toBeGreaterThanOrEqual(second!.endNanos)

          const port = Number(new URL(gateway.baseUrl).port)
          expect(server.attributes).toMatchObject({
            "http.request.method": "POST",
            "http.route": "/v1/chat/completions",
            "url.path": "/v1/chat/completions",
            "url.scheme": "http",
            "http.response.status_code": 200,
            "server.address": "127.0.0.1",
            "server.port": port,
            "network.protocol.version": "1.1",
            "user_agent.original": "trace-test/1.0",
            "llm_proxy.request.id": "req-traced-1",
            "llm_proxy.key.id": "operator",
            "llm_proxy.model": "primary",
            "llm_proxy.provider": "openai",
            "llm_proxy.attempts": 2
          })
          expect(server.status.code).toBe("unset")
          // GenAI facts are on the attempts only: nothing sums tokens twice
          expect(Object.keys(server.attributes).filter((key) => key.startsWith("gen_ai."))).toEqual([])

          const upstreamPort = Number(new URL(upstream.origin).port)
          const request = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "primary",
            "llm_proxy.upstream.model": "primary-upstream",
            "gen_ai.request.max_tokens": 64,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.stream": true,
            "llm_proxy.key.id": "operator",
            "server.address": "127.0.0.1",
            "server.port": upstreamPort
          }
          expect(first!.attributes).toMatchObject({
            ...request,
            "llm_proxy.attempt": 1,
            "llm_proxy.retry": 0,
            "llm_proxy.outcome": "Unavailable",
            "error.type": "Unavailable",
            "http.response.status_code": 503
          })
          expect(first!.status.code).toBe("error")
          expect(second!.attributes).toMatchObject({
            ...request,
            "llm_proxy.attempt": 2,
            "llm_proxy.retry": 1,
            "llm_proxy.outcome": "ok",
            "gen_ai.response.id": "chatcmpl-fake-upstream",
            "gen_ai.response.model": "upstream-model",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 9,
            "gen_ai.usage.output_tokens": 3
          })
          expect(second!.attributes["gen_ai.response.time_to_first_chunk"]).toBeGreaterThanOrEqual(0)
          expect(second!.status.code).toBe("unset")
          for (const span of spans) {
            expect(span.encoding).toBe(protocol === "http/json" ? "json" : "protobuf")
            expect(span.resource).toMatchObject({ "service.name": "gateway-under-test", "deployment.environment.name": "test" })
          }

          // what the upstream received: each attempt named by its span, in the client's trace, with the request id
          const calls = yield* upstream.awaitCalls(2)
          expect(calls[0]!.headers["traceparent"]).toBe(`00-${clientTraceId}-${first!.spanId}-01`)
          expect(calls[1]!.headers["traceparent"]).toBe(`00-${clientTraceId}-${second!.spanId}-01`)
          expect(calls.map((call) => call.headers["tracestate"])).toEqual(["vendor=opaque", "vendor=opaque"])
          expect(calls.map((call) => call.headers["x-request-id"])).toEqual(["req-traced-1", "req-traced-1"])

          // the collector got its header; no prompt, no completion, no key in anything exported
          expect(receiver.exports.every((received) => received.headers["x-collector-key"] === "collector-secret")).toBe(true)
          const exported = JSON.stringify(receiver.spans)
          for (const text of [prompt, ...tokens.map((token) => token.trim()), testKey, "collector-secret"]) expect(exported).not.toContain(text)
        }))
    }
  }

  it.scopedLive("a completion's attempt carries its response; without a traceparent the server span starts a trace, which the access line names", () =>
    Effect.gen(function* () {
      const lines: Array<Record<string, unknown>> = []
      const spy = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
        for (const arg of args) if (typeof arg === "string" && arg.startsWith("{")) lines.push(JSON.parse(arg) as Record<string, unknown>)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => spy.mockRestore()))
      const receiver = yield* startReceiver
      const upstream = yield* startUpstream("openai", [OpenAi.completion({ content: "fine", finishReason: "length" })])
      const registry = registryFromDocument({ models: [deploymentOf("solo", upstream, { model: "solo-v2" })] })
      const tracing = settingsOf({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.origin}/v1/traces`, OTEL_BSP_SCHEDULE_DELAY: "20" })
      const gateway = yield* startGateway({ registry, settings: { tracing, logLevel: LogLevel.Info, logFormat: "json" } })
      const answer = yield* postChat(gateway.baseUrl, { model: "solo", n: 2, messages: [{ role: "user", content: prompt }] })
      expect(answer.status).toBe(200)
      const spans = yield* receiver.awaitSpans(2)
      const server = spans.find((span) => span.kind === "server")!
      const attempt = spans.find((span) => span.kind === "client")!
      expect(server.parentSpanId).toBe("")
      expect(attempt.traceId).toBe(server.traceId)
      expect(attempt.attributes).toMatchObject({
        "gen_ai.request.model": "solo",
        "llm_proxy.upstream.model": "solo-v2",
        "gen_ai.request.stream": false,
        "gen_ai.request.choice.count": 2,
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 6,
        "llm_proxy.outcome": "ok"
      })
      expect(upstream.calls[0]!.headers["traceparent"]).toBe(`00-${server.traceId}-${attempt.spanId}-01`)
      const access = lines.find((line) => line["message"] === "Sent HTTP response")
      expect(access?.["annotations"]).toMatchObject({ model: "solo", traceId: server.traceId })
    }))

  it.scopedLive("a library provider's own Effect spans nest under its attempt", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      const mock = Mock.streamProvider({ tokenDelayMs: 0 })
      const provider: StreamProvider = {
        complete: (request) => mock.complete(request).pipe(Effect.withSpan("MyProvider.complete")),
        stream: (request) => mock.stream(request)
      }
      const registry = Registry.layerStatic([{ name: "mine", provider }])
      const gateway = yield* startGateway({ registry, settings: { tracing: settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin, OTEL_BSP_SCHEDULE_DELAY: "20" }) } })
      expect((yield* postChat(gateway.baseUrl, { model: "mine", messages: [{ role: "user", content: "hello" }] })).status).toBe(200)
      const spans = yield* receiver.awaitSpans(3)
      const attempt = spans.find((span) => span.kind === "client")!
      const own = spans.find((span) => span.name === "MyProvider.complete")!
      expect(own.parentSpanId).toBe(attempt.spanId)
      expect(own.traceId).toBe(attempt.traceId)
      expect(attempt.attributes["gen_ai.provider.name"]).toBe("custom")
    }))

  it.scopedLive("the queue is flushed when the gateway stops", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      // the default schedule (5 s): nothing is exported before the gateway stops
      const tracing = settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const { gateway } = yield* retriedStream("fast", tracing)
          expect((yield* postChat(gateway.baseUrl, streamRequest)).status).toBe(200)
          expect(receiver.spans).toHaveLength(0)
        })
      )
      expect(receiver.spans).toHaveLength(3)
    }))

  it.scopedLive("a client that leaves mid-stream: the attempt is cancelled, the server span says the client closed", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      const upstream = yield* startUpstream("openai", [OpenAi.stream(tokens, {}, { gapMs: 5000 })])
      const registry = registryFromDocument({ models: [deploymentOf("slow", upstream)] })
      const gateway = yield* startGateway({ registry, settings: { tracing: settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin, OTEL_BSP_SCHEDULE_DELAY: "20" }) } })
      const controller = new AbortController()
      const response = yield* Effect.promise(() =>
        fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "slow", stream: true, messages: [{ role: "user", content: prompt }] }),
          signal: controller.signal
        })
      )
      expect(response.status).toBe(200)
      controller.abort()
      const spans = yield* receiver.awaitSpans(2)
      expect(spans.find((span) => span.kind === "client")!.attributes["llm_proxy.outcome"]).toBe("cancelled")
      expect(spans.find((span) => span.kind === "server")!.attributes["llm_proxy.client_closed"]).toBe(true)
    }))
})

describe("sampling", () => {
  /** One retried stream with the given sampler variables and incoming traceparent; the spans exported once it stopped. */
  const sampledRun = (variables: Record<string, string>, traceparent: string | undefined) =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      const upstream = yield* Effect.scoped(
        Effect.gen(function* () {
          const { gateway, upstream } = yield* retriedStream("fast", settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin, ...variables }))
          const answer = yield* postChat(gateway.baseUrl, streamRequest, traceparent === undefined ? {} : { traceparent })
          expect(answer.status).toBe(200)
          return upstream
        })
      )
      return { spans: receiver.spans, calls: upstream.calls }
    })

  it.scopedLive("always_off exports nothing, and the upstream still gets a (not sampled) traceparent and the request id", () =>
    Effect.gen(function* () {
      const { calls, spans } = yield* sampledRun({ OTEL_TRACES_SAMPLER: "always_off" }, undefined)
      expect(spans).toHaveLength(0)
      for (const call of calls) {
        expect(call.headers["traceparent"]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
        expect(call.headers["x-request-id"]).toMatch(/^[\w.:-]+$/)
      }
    }))

  it.scopedLive("parentbased_always_on (the default) follows a parent that is not sampled", () =>
    Effect.gen(function* () {
      const { calls, spans } = yield* sampledRun({}, unsampledParent)
      expect(spans).toHaveLength(0)
      for (const call of calls) expect(call.headers["traceparent"]).toMatch(new RegExp(`^00-${clientTraceId}-[0-9a-f]{16}-00$`))
    }))

  it.scopedLive("always_on samples even under a parent that is not sampled", () =>
    Effect.gen(function* () {
      const { spans } = yield* sampledRun({ OTEL_TRACES_SAMPLER: "always_on" }, unsampledParent)
      expect(spans).toHaveLength(3)
      expect(new Set(spans.map((span) => span.traceId))).toEqual(new Set([clientTraceId]))
    }))

  it.scopedLive("traceidratio 0 samples nothing; parentbased_traceidratio 0 still follows a sampled parent", () =>
    Effect.gen(function* () {
      expect((yield* sampledRun({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" }, sampledParent)).spans).toHaveLength(0)
      expect((yield* sampledRun({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" }, sampledParent)).spans).toHaveLength(3)
      expect((yield* sampledRun({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "1" }, undefined)).spans).toHaveLength(3)
    }))

  it.scopedLive("parentbased_always_off samples only under a sampled parent", () =>
    Effect.gen(function* () {
      expect((yield* sampledRun({ OTEL_TRACES_SAMPLER: "parentbased_always_off" }, undefined)).spans).toHaveLength(0)
      expect((yield* sampledRun({ OTEL_TRACES_SAMPLER: "parentbased_always_off" }, sampledParent)).spans).toHaveLength(3)
    }))
})

describe("a collector that is down or hangs", () => {
  /** What a client sees of the retried stream: status, the routing headers, the body. */
  const clientView = (tracing: TraceSettings | undefined, mount: Mount) =>
    Effect.scoped(
      Effect.gen(function* () {
        const { gateway } = yield* retriedStream(mount, tracing)
        const answer = yield* postChat(gateway.baseUrl, streamRequest, { "x-request-id": "req-same" })
        const started = performance.now()
        return {
          status: answer.status,
          headers: ["content-type", "x-llm-proxy-model", "x-llm-proxy-attempts", "x-request-id"].map((name) => answer.headers.get(name)),
          // ids and timestamps come from the upstream's frames: the body is the same byte for byte
          body: answer.text,
          started
        }
      })
    ).pipe(Effect.map(({ started, ...view }) => ({ ...view, stopMs: performance.now() - started })))

  for (const mount of mounts) {
    it.scopedLive(`a closed port (${mount} mount): the client sees exactly what it sees without tracing, and stopping is prompt`, () =>
      Effect.gen(function* () {
        const port = yield* closedPort
        const untraced = yield* clientView(undefined, mount)
        const dead = yield* clientView(
          settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "1", OTEL_EXPORTER_OTLP_TIMEOUT: "1000" }),
          mount
        )
        expect(dead.status).toBe(200)
        expect({ ...dead, stopMs: 0 }).toEqual({ ...untraced, stopMs: 0 })
        expect(dead.stopMs).toBeLessThan(2000)
      }))
  }

  it.scopedLive("a collector that never answers: requests are served as usual, and stopping waits at most the export timeout", () =>
    Effect.gen(function* () {
      const sockets = new Set<import("node:net").Socket>()
      const silent = createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => {})
      })
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))),
        () =>
          Effect.promise(() => {
            for (const socket of sockets) socket.destroy()
            return new Promise<void>((resolve) => silent.close(() => resolve()))
          })
      )
      const { port } = silent.address() as AddressInfo
      const view = yield* clientView(
        settingsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "1", OTEL_EXPORTER_OTLP_TIMEOUT: "300" }),
        "fast"
      )
      expect(view.status).toBe(200)
      expect(streamedContent(view.body)).toBe(tokens.join(""))
      expect(view.stopMs).toBeLessThan(2000)
    }))
})

describe("the gateway as users run it", () => {
  it.scopedLive("OTEL_* variables turn tracing on; SIGTERM flushes the spans", () =>
    Effect.gen(function* () {
      const receiver = yield* startReceiver
      const port = yield* closedPort
      const root = fileURLToPath(new URL("..", import.meta.url))
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        NODE_ENV: "development",
        PORT: String(port),
        HOST: "127.0.0.1",
        LOG_LEVEL: "ERROR",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "spawned-gateway"
      }
      for (const name of ["CONFIG_FILE", "WORKERS", "REDIS_URL", "INTERNAL_API_KEY"]) delete env[name]
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] })
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text))
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve))
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      const baseUrl = `http://127.0.0.1:${port}`
      yield* Effect.retry(
        Effect.tryPromise(() => fetch(`${baseUrl}/health`)),
        { times: 200, schedule: Schedule.spaced("100 millis") }
      ).pipe(Effect.orDie)
      const answer = yield* Effect.promise(() =>
        fetch(`${baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: "Bearer change-me-internal-key", "content-type": "application/json", traceparent: sampledParent },
          body: JSON.stringify({ model: "mock", stream: true, messages: [{ role: "user", content: prompt }] })
        }).then(async (response) => ({ status: response.status, text: await response.text() }))
      )
      expect(answer.status).toBe(200)
      child.kill("SIGTERM")
      expect(yield* Effect.promise(() => exited)).toBe(0)
      expect(stderr).toBe("")
      const spans = receiver.spans
      expect(spans.map((span) => span.kind).sort()).toEqual(["client", "server"])
      expect(spans.every((span) => span.traceId === clientTraceId && span.encoding === "json")).toBe(true)
      expect(spans[0]!.resource["service.name"]).toBe("spawned-gateway")
    }), 30_000)
})

describe("tracing off", () => {
  it.scopedLive("no traceparent upstream, the request id all the same", () =>
    Effect.gen(function* () {
      const { gateway, upstream } = yield* retriedStream("fast", undefined)
      expect((yield* postChat(gateway.baseUrl, streamRequest, { traceparent: sampledParent, "x-request-id": "req-untraced" })).status).toBe(200)
      for (const call of upstream.calls) {
        expect(call.headers["traceparent"]).toBeUndefined()
        expect(call.headers["x-request-id"]).toBe("req-untraced")
      }
    }))
})
