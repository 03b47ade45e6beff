/**
 * The chat hot path (POST /v1/chat/completions on node:http, in front of the HttpApi app): what it does on its
 * own — query strings, the access log — and the Api's own chat handler, which apps that mount the Api without the
 * hot path still use. Everything else about chat (auth, limits, errors, streams) is tested through the gateway
 * in Api.test.ts and the end-to-end suites, which the hot path now serves.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, LogLevel } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, vi } from "vitest"
import * as Config from "../../src/Config.js"
import * as ChatCore from "../../src/Core/Chat.js"
import * as MemoryStore from "../../src/Governance/MemoryStore.js"
import * as Tokenizer from "../../src/Governance/Tokenizer.js"
import * as Auth from "../../src/Http/Auth.js"
import * as Lifecycle from "../../src/Http/Lifecycle.js"
import * as Server from "../../src/Http/Server.js"
import * as Mock from "../../src/Providers/Mock/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import * as Router from "../../src/Router/Router.js"
import { captureLogs } from "../support/Logs.js"
import { startGateway } from "../support/Gateway.js"
import { postChat, postRaw } from "../support/Http.js"
import { ssePayloads } from "../support/Sse.js"

const chat = (extra: Record<string, unknown> = {}) => ({ model: "mock", messages: [{ role: "user", content: "hot path" }], ...extra })

afterEach(() => {
  vi.restoreAllMocks()
})

/** JSON log lines written from now on, parsed. */
const capturedLogLines = () => captureLogs().json

describe("chat hot path", () => {
  it.scopedLive("serves the chat path with a query string (as Azure-style clients send) like the bare path", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const answer = yield* postRaw(`${gateway.baseUrl}/v1/chat/completions?api-version=2024-10-21`, JSON.stringify(chat()))
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.text)).toMatchObject({ object: "chat.completion", model: "mock" })
      // a longer path is not the chat path: it is the Api's 404
      const other = yield* postRaw(`${gateway.baseUrl}/v1/chat/completionsX`, JSON.stringify(chat()))
      expect(other.status).toBe(404)
      expect(JSON.parse(other.text)).toMatchObject({ error: { code: "unknown_url" } })
    }))

  it.scopedLive("writes one access-log line per chat request at LOG_LEVEL=info, with the request id and status", () =>
    Effect.gen(function* () {
      const lines = capturedLogLines()
      const gateway = yield* startGateway({ settings: { logLevel: LogLevel.Info, logFormat: "json" } })
      const ok = yield* postChat(gateway.baseUrl, chat(), { "x-request-id": "req-hot-ok" })
      expect(ok.headers.get("x-request-id")).toBe("req-hot-ok")
      const bad = yield* postRaw(`${gateway.baseUrl}/v1/chat/completions`, "{", { "x-request-id": "req-hot-bad" })
      expect(bad.status).toBe(400)
      yield* Effect.sleep("50 millis")
      const access = (id: string) =>
        lines.filter((line) => line["message"] === "Sent HTTP response" && (line["annotations"] as Record<string, unknown>)["requestId"] === id)
      expect(access("req-hot-ok")).toHaveLength(1)
      expect(access("req-hot-ok")[0]?.["annotations"]).toMatchObject({ "http.method": "POST", "http.status": 200 })
      expect(access("req-hot-bad")[0]?.["annotations"]).toMatchObject({ "http.status": 400 })
    }))

  it.scopedLive("writes no access log at LOG_LEVEL=warn", () =>
    Effect.gen(function* () {
      const lines = capturedLogLines()
      const gateway = yield* startGateway({ settings: { logLevel: LogLevel.Warning, logFormat: "json" } })
      const ok = yield* postChat(gateway.baseUrl, chat())
      expect(ok.status).toBe(200)
      yield* Effect.sleep("50 millis")
      expect(lines.filter((line) => line["message"] === "Sent HTTP response")).toHaveLength(0)
    }))
})

describe("the Api's own chat handler (the Api mounted without the hot path)", () => {
  /** An app that serves `Server.ApiLive` on a plain platform server, as an embedding app would. */
  const mounted = Effect.gen(function* () {
    const server = createServer()
    const registry = Registry.layerStatic([{ name: "mock", providerKind: "mock", provider: Mock.make({ tokenDelayMs: 0 }) }])
    yield* Layer.build(
      HttpApiBuilder.serve().pipe(
        Layer.provide(Server.ApiLive),
        Layer.provide(ChatCore.layer),
        Layer.provide(Router.layer),
        Layer.provide(Auth.layer),
        Layer.provide(registry),
        Layer.provide(Layer.merge(MemoryStore.layer, Tokenizer.layer)),
        Layer.provide(Lifecycle.layer),
        Layer.provide(NodeHttpServer.layer(() => server, { port: 0, host: "127.0.0.1" })),
        Layer.provide(Config.layerTest({ port: 0, host: "127.0.0.1" }))
      )
    )
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  it.scopedLive("answers a completion and a stream ending in [DONE]", () =>
    Effect.gen(function* () {
      const baseUrl = yield* mounted
      const completion = yield* postChat(baseUrl, chat())
      expect(completion.status).toBe(200)
      expect(completion.headers.get("x-llm-proxy-provider")).toBe("mock")
      expect(JSON.parse(completion.text)).toMatchObject({ object: "chat.completion", model: "mock" })
      const streamed = yield* postChat(baseUrl, chat({ stream: true }))
      expect(streamed.status).toBe(200)
      expect(streamed.headers.get("content-type")).toContain("text/event-stream")
      const payloads = ssePayloads(streamed.text)
      expect(payloads.length).toBeGreaterThan(2)
      expect(payloads.at(-1)).toBe("[DONE]")
      expect(payloads[0]).toMatchObject({ object: "chat.completion.chunk", model: "mock" })
    }))
})
