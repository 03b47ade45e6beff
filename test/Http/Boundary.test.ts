/**
 * One boundary per request: whatever throws at any stage — the provider's call, its connect, its stream after the
 * commit, a chunk no JSON can hold, the authenticator — becomes that request's 500 or error frame, logged with the
 * request id; never an uncaught exception, never another client's request. Over both mounts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import * as App from "../../src/App.js"
import * as Config from "../../src/Config.js"
import { Authenticator } from "../../src/Http/Auth.js"
import { Lifecycle } from "../../src/Http/Lifecycle.js"
import type { ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import type { Provider, StreamProvider } from "../../src/Providers/Provider.js"
import * as Mock from "../../src/Providers/Mock/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { Mount } from "../support/Gateway.js"
import { call, chatRequest, expectEnvelope, postChat, postRaw } from "../support/Http.js"
import { ssePayloads, streamedContent, streamError } from "../support/Sse.js"
import type { AddressInfo } from "node:net"
import { Context } from "effect"

const mock = Mock.streamProvider({ tokenDelayMs: 0 })
const boom = () => {
  throw new Error("SECRET-STAGE-DETAIL")
}

const firstChunks = (request: Parameters<StreamProvider["stream"]>[0]) => Stream.take(mock.stream(request), 2)

/** Providers that throw (outside Effect) at each stage. */
const throwingCall: Provider = { complete: boom, open: boom, embed: boom }
const throwingAfterCommit: Provider = {
  complete: (request) => Mock.make({ tokenDelayMs: 0 }).complete(request),
  embed: (request) => Mock.make({ tokenDelayMs: 0 }).embed(request),
  open: (request, deadline) =>
    Effect.map(Mock.make({ tokenDelayMs: 0 }).open(request, deadline), (source) => {
      let polls = 0
      return { ...source, poll: () => (++polls > 1 ? boom() : source.poll()) }
    })
}
const cyclic = (): Record<string, unknown> => {
  const value: Record<string, unknown> = {}
  value["self"] = value
  return value
}
const unserializable: StreamProvider = {
  complete: (request) => Effect.map(mock.complete(request), (completion) => ({ ...completion, extra: cyclic() })),
  stream: (request) =>
    Stream.concat(firstChunks(request), Stream.make({ ...chunkOf(request.model), extra: cyclic() } as ChatCompletionChunk))
}
function chunkOf(model: string): ChatCompletionChunk {
  return { id: "c", object: "chat.completion.chunk", created: 1, model, choices: [{ index: 0, delta: { content: "!" }, finish_reason: null }] }
}

const registry = Registry.layerStatic([
  { name: "mock", provider: mock },
  { name: "throws", provider: throwingCall },
  { name: "throws-after-commit", provider: throwingAfterCommit },
  { name: "unserializable", provider: unserializable }
])

const expectInternal = (text: string, requestId: string) => {
  expect(text).not.toContain("SECRET-STAGE-DETAIL")
  expect(text).toContain(requestId)
}

for (const mount of mounts) {
  describe(`the per-request boundary (${mount} mount)`, () => {
    it.scopedLive("a provider that throws on the call or the connect: 500 internal_error, the server serves on", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ registry, mount })
        for (const stream of [false, true]) {
          const answer = yield* postChat(gateway.baseUrl, chatRequest("throws", { stream }), { "x-request-id": `req-throw-${stream}` })
          expectEnvelope(answer, 500, "internal_error")
          expectInternal(answer.text, `req-throw-${stream}`)
        }
        const healthy = yield* postChat(gateway.baseUrl, chatRequest("mock"))
        expect(healthy.status).toBe(200)
      }))

    it.scopedLive("a provider that throws on an embeddings call: 500 internal_error, the server serves on", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ registry, mount })
        const answer = yield* postRaw(`${gateway.baseUrl}/v1/embeddings`, JSON.stringify({ model: "throws", input: "x" }), { "x-request-id": "req-embed-throw" })
        expectEnvelope(answer, 500, "internal_error")
        expectInternal(answer.text, "req-embed-throw")
        expect((yield* postRaw(`${gateway.baseUrl}/v1/embeddings`, JSON.stringify({ model: "mock", input: "x" }))).status).toBe(200)
      }))

    it.scopedLive("a stream whose source throws after the commit ends with one internal_error frame", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ registry, mount })
        const answer = yield* postChat(gateway.baseUrl, chatRequest("throws-after-commit", { stream: true }), { "x-request-id": "req-after-commit" })
        expect(answer.status).toBe(200)
        expect(streamError(answer.text)?.code).toBe("internal_error")
        expectInternal(answer.text, "req-after-commit")
        expect(answer.text).not.toContain("[DONE]")
        expect((yield* postChat(gateway.baseUrl, chatRequest("mock", { stream: true }))).status).toBe(200)
      }))

    it.scopedLive("an answer no JSON can hold: a 500 before the commit, an internal_error frame after it", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ registry, mount })
        const completion = yield* postChat(gateway.baseUrl, chatRequest("unserializable"), { "x-request-id": "req-cyclic" })
        expectEnvelope(completion, 500, "internal_error")
        const streamed = yield* postChat(gateway.baseUrl, chatRequest("unserializable", { stream: true }))
        expect(streamed.status).toBe(200)
        expect(streamedContent(streamed.text).length).toBeGreaterThanOrEqual(0)
        expect(streamError(streamed.text)?.code).toBe("internal_error")
        expect(ssePayloads(streamed.text).includes("[DONE]")).toBe(false)
        expect((yield* call(`${gateway.baseUrl}/health`)).status).toBe(200)
      }))
  })
}

/** The gateway with an authenticator that throws, mounted one way or the other. */
const withThrowingAuthenticator = (mount: Mount) =>
  Effect.gen(function* () {
    const options = { authenticator: Layer.succeed(Authenticator, { authenticate: boom }) }
    const server = (mount === "api" ? App.serveApiOnlyWith(registry, options) : App.serveWith(registry, options)).pipe(
      Layer.provide(Config.layerTest({ port: 0, host: "127.0.0.1" }))
    )
    const context = yield* Layer.build(server).pipe(Effect.orDie)
    const { port } = Context.get(context, Lifecycle).server.address() as AddressInfo
    return `http://127.0.0.1:${port}`
  })

describe("an authenticator that throws", () => {
  for (const mount of mounts) {
    it.scopedLive(`is that request's 500, on chat and on other routes (${mount} mount)`, () =>
      Effect.gen(function* () {
        const baseUrl = yield* withThrowingAuthenticator(mount)
        const chat = yield* postChat(baseUrl, chatRequest("mock"), { "x-request-id": "req-auth-throws" })
        expectEnvelope(chat, 500, "internal_error")
        expectInternal(chat.text, "req-auth-throws")
        expectEnvelope(yield* call(`${baseUrl}/v1/models`, { headers: { authorization: `Bearer ${testKey}` } }), 500, "internal_error")
        expect((yield* call(`${baseUrl}/health`)).status).toBe(200)
      }))
  }
})
