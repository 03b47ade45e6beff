/**
 * "Another Effect app composes the exported layers with its own provider": everything of llm-proxy comes from
 * the package entry point (src/index.ts), as it would from `import ... from "llm-proxy"`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Either, Layer, Redacted, Schema, Stream } from "effect"
import type { AddressInfo } from "node:net"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { createServer } from "node:http"
import { App, Config, Errors, Lifecycle, MockProvider, Provider, Registry, Router, Schemas, Sse } from "../src/index.js"
import { call, get, postChat } from "./support/Http.js"
import { ssePayloads } from "./support/Sse.js"

/** The embedding app's own upstream: answers in upper case, streamed letter group by letter group. */
const received: Array<Schemas.ChatCompletionRequest> = []

const lastUserText = (request: Schemas.ChatCompletionRequest): string => {
  const last = [...request.messages].reverse().find((message) => message.role === "user")
  return typeof last?.content === "string" ? last.content : ""
}

const houseProvider: Provider.StreamProvider = {
  complete: (request) =>
    Effect.sync(() => {
      received.push(request)
      return {
        id: "chatcmpl-house-1",
        object: "chat.completion" as const,
        created: 1_700_000_000,
        model: request.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant" as const, content: lastUserText(request).toUpperCase(), refusal: null },
            finish_reason: "stop" as const,
            logprobs: null
          }
        ],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
      }
    }),
  stream: (request) => {
    const chunk = (delta: Schemas.ChatCompletionChunk["choices"][number]["delta"], finish: Schemas.FinishReason | null = null) => ({
      id: "chatcmpl-house-2",
      object: "chat.completion.chunk" as const,
      created: 1_700_000_000,
      model: request.model,
      choices: [{ index: 0, delta, finish_reason: finish }]
    })
    const words = lastUserText(request).toUpperCase().split(/(?<= )/)
    return Stream.make(chunk({ role: "assistant", content: "" })).pipe(
      Stream.concat(Stream.fromIterable(words.map((word) => chunk({ content: word })))),
      Stream.concat(Stream.make(chunk({}, "stop")))
    )
  }
}

const unavailable: Provider.StreamProvider = {
  complete: () => Effect.fail(new Provider.ProviderError({ reason: "Unavailable", message: "down", provider: "house", status: 503 })),
  stream: () => Stream.fail(new Provider.ProviderError({ reason: "Unavailable", message: "down", provider: "house", status: 503 }))
}

const houseKey = "house-secret-key"

/** The embedding app's gateway: its registry, its settings. */
const HouseGateway = App.serveWith(Registry.layerStatic([{ name: "house-model", providerKind: "house", provider: houseProvider }])).pipe(
  Layer.provide(Config.layerTest({ port: 0, host: "127.0.0.1", internalApiKey: Redacted.make(houseKey) }))
)

const serve = Effect.gen(function* () {
  const context = yield* Layer.build(HouseGateway)
  const lifecycle = Context.get(context, Lifecycle.Lifecycle)
  const { port } = lifecycle.server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
})

const request = (model: string, content: string): Schemas.ChatCompletionRequest =>
  Schemas.ChatCompletionRequest.make({ model, messages: [{ role: "user", content }] })

describe("llm-proxy as a library", () => {
  it.scopedLive("serves the exported layers with the app's own provider over HTTP", () =>
    Effect.gen(function* () {
      const baseUrl = yield* serve
      const key = { authorization: `Bearer ${houseKey}` }
      const models = yield* get(`${baseUrl}/v1/models`, key)
      expect(JSON.parse(models.text)).toMatchObject({ object: "list", data: [{ id: "house-model", object: "model", owned_by: "house" }] })

      const completion = yield* postChat(
        baseUrl,
        { model: "house-model", messages: [{ role: "user", content: "shout this" }], house_flag: true },
        key
      )
      expect(completion.status).toBe(200)
      expect(completion.headers.get("x-llm-proxy-provider")).toBe("house")
      // decoded with the exported schemas, as the embedding app would
      const decoded = Schema.decodeUnknownSync(Schemas.ChatCompletion)(JSON.parse(completion.text))
      expect(decoded.choices[0]?.message.content).toBe("SHOUT THIS")
      expect(decoded.model).toBe("house-model")
      expect((received.at(-1) as unknown as Record<string, unknown>)["house_flag"]).toBe(true)

      const streamed = yield* postChat(baseUrl, { model: "house-model", messages: [{ role: "user", content: "stream me now" }], stream: true }, key)
      expect(streamed.status).toBe(200)
      expect(streamed.headers.get("content-type")).toContain("text/event-stream")
      const payloads = ssePayloads(streamed.text)
      expect(payloads.at(-1)).toBe("[DONE]")
      const content = payloads
        .slice(0, -1)
        .map((payload) => Schema.decodeUnknownSync(Schemas.ChatCompletionChunk)(payload))
        .map((chunk) => chunk.choices[0]?.delta.content ?? "")
        .join("")
      expect(content).toBe("STREAM ME NOW")

      // the app's key is the one that counts: the default test key is refused
      const refused = yield* call(`${baseUrl}/v1/models`, { headers: { "x-internal-auth": "test-internal-key" } })
      expect(refused.status).toBe(401)
      // the built-in mock is not there: the registry is the app's
      const mock = yield* get(`${baseUrl}/v1/models/mock`, key)
      expect(mock.status).toBe(404)
    }))

  const RouterLive = Router.layer.pipe(
    Layer.provide(
      Registry.layerStatic(
        [
          { name: "house-model", providerKind: "house", provider: houseProvider, upstreamModel: "house-v2" },
          { name: "flaky", provider: unavailable, fallbacks: ["house-model"] }
        ],
        { retry: { max_retries: 0, initial_delay_ms: 0, max_delay_ms: 0 } }
      )
    )
  )

  it.effect("calls the Router service directly, without HTTP", () =>
    Effect.gen(function* () {
      const router = yield* Router.Router
      const routed = yield* router.complete(request("house-model", "direct call"))
      expect(routed.completion.choices[0]?.message.content).toBe("DIRECT CALL")
      // the provider saw the upstream model id; the caller sees the public name
      expect(received.at(-1)?.model).toBe("house-v2")
      expect(routed.completion.model).toBe("house-model")
      expect(routed.deployment.providerKind).toBe("house")
      expect(routed.attempts).toBe(1)

      const streamed = yield* router.stream(request("house-model", "direct stream"))
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(streamed.chunks))
      expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe("DIRECT STREAM")
      expect(chunks.every((chunk) => chunk.model === "house-model")).toBe(true)
    }).pipe(Effect.provide(RouterLive)))

  it.effect("falls back between the app's models and reports unknown ones as ModelNotFound", () =>
    Effect.gen(function* () {
      const router = yield* Router.Router
      const fallback = yield* router.complete(request("flaky", "rescued"))
      expect(fallback.completion.choices[0]?.message.content).toBe("RESCUED")
      expect(fallback.deployment.name).toBe("house-model")
      expect(fallback.attempts).toBe(2)

      const missing = yield* Effect.either(router.complete(request("nobody", "x")))
      expect(Either.isLeft(missing)).toBe(true)
      if (Either.isLeft(missing)) {
        expect(missing.left).toBeInstanceOf(Errors.ModelNotFound)
        expect(missing.left._tag).toBe("ModelNotFound")
      }
    }).pipe(Effect.provide(RouterLive)))

  /** An app's own HttpApi: one endpoint that streams whatever the ChatProvider in its context streams, as SSE. */
  class StreamingApi extends HttpApi.make("house").add(
    HttpApiGroup.make("chat").add(HttpApiEndpoint.post("stream", "/stream").setPayload(Schemas.ChatCompletionRequest).addSuccess(Schemas.ChatCompletion))
  ) {}

  const StreamingLive = HttpApiBuilder.group(StreamingApi, "chat", (handlers) =>
    Effect.map(Provider.ChatProvider, (provider) =>
      handlers.handle("stream", ({ payload }) =>
        Effect.succeed(
          HttpServerResponse.stream(Sse.encode(Provider.streamOf(provider, payload), { includeUsage: true }), {
            contentType: "text/event-stream"
          })
        )
      )
    )
  )

  it.scopedLive("streams a provider Layer's Stream as SSE through an HttpApi of the app's own, with Sse.encode", () =>
    Effect.gen(function* () {
      const server = createServer()
      yield* Layer.build(
        HttpApiBuilder.serve().pipe(
          Layer.provide(HttpApiBuilder.api(StreamingApi).pipe(Layer.provide(StreamingLive))),
          Layer.provide(MockProvider.layer()),
          HttpServer.withLogAddress,
          Layer.provide(NodeHttpServer.layer(() => server, { port: 0, host: "127.0.0.1" }))
        )
      )
      const { port } = server.address() as AddressInfo
      const answer = yield* call(`http://127.0.0.1:${port}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "encode me please" }] })
      })
      expect(answer.status).toBe(200)
      expect(answer.headers.get("content-type")).toContain("text/event-stream")
      const payloads = ssePayloads(answer.text)
      expect(payloads.at(-1)).toBe("[DONE]")
      const chunks = payloads.slice(0, -1).map((payload) => Schema.decodeUnknownSync(Schemas.ChatCompletionChunk)(payload))
      expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe("encode me please")
      // include_usage: the usage-only chunk comes last, before [DONE]
      expect(chunks.at(-1)?.choices).toEqual([])
      expect(chunks.at(-1)?.usage?.completion_tokens).toBe(3)
    }))

  it.effect("Sse.encode ends a failing stream with one error frame and no [DONE]", () =>
    Effect.gen(function* () {
      const failing = Stream.concat(
        Stream.make({ id: "c", object: "chat.completion.chunk" as const, created: 1, model: "m", choices: [] }),
        Stream.fail(new Provider.ProviderError({ reason: "Timeout", message: "too slow", provider: "house" }))
      )
      const bytes = yield* Stream.runCollect(Sse.encode(failing, { includeUsage: false }))
      const text = Chunk.toReadonlyArray(bytes).map((piece) => new TextDecoder().decode(piece)).join("")
      const payloads = ssePayloads(text)
      expect(payloads).toHaveLength(2)
      expect(payloads.at(-1)).toMatchObject({ error: { code: "upstream_timeout", type: "timeout_error" } })
    }))
})
