import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { connect } from "node:net"
import type { ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import * as Mock from "../../src/Providers/Mock/Provider.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import type { StreamProvider, ProviderErrorReason } from "../../src/Providers/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"
import * as Http from "../support/Http.js"
import { expectEnvelope } from "../support/Http.js"
import { ssePayloads } from "../support/Sse.js"
import type { ErrorEnvelope } from "../support/Sse.js"

// ---------------------------------------------------------------------------------------------------------------
// helpers

const get = (gateway: RunningGateway, path: string, headers: Record<string, string> = {}) => Http.get(`${gateway.baseUrl}${path}`, headers)

const postRaw = (gateway: RunningGateway, body: string, headers: Record<string, string> = {}) =>
  Http.postRaw(`${gateway.baseUrl}/v1/chat/completions`, body, headers)

const post = (gateway: RunningGateway, body: unknown, headers: Record<string, string> = {}) => Http.postChat(gateway.baseUrl, body, headers)

const call = (gateway: RunningGateway, path: string, init: RequestInit = {}) => Http.call(`${gateway.baseUrl}${path}`, init)

const json = <A>(answer: Http.Answer): A => JSON.parse(answer.text) as A

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "mock",
  messages: [{ role: "user", content }],
  ...extra
})

interface ChunkShape {
  readonly object: string
  readonly model: string
  readonly choices: ReadonlyArray<{
    readonly index: number
    readonly delta: { readonly role?: string; readonly content?: string | null }
    readonly finish_reason: string | null
  }>
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number; readonly total_tokens: number } | null
}

interface CompletionShape {
  readonly object: string
  readonly model: string
  readonly choices: ReadonlyArray<{ readonly message: { readonly role: string; readonly content: string | null }; readonly finish_reason: string }>
  readonly usage: { readonly prompt_tokens: number; readonly completion_tokens: number; readonly total_tokens: number }
}

const mock = Mock.streamProvider({ tokenDelayMs: 0 })

/** A provider that fails every call with the given error. */
const failing = (error: ProviderError): StreamProvider => ({
  complete: () => Effect.fail(error),
  stream: () => Stream.fail(error)
})

/** A provider that streams its first chunks and then fails. */
const failingMidStream = (error: ProviderError): StreamProvider => ({
  complete: mock.complete,
  stream: (request) => Stream.concat(Stream.take(mock.stream(request), 2), Stream.fail(error))
})

const secret = "SECRET-INTERNAL-DETAIL /srv/app/config.ts:42"

/** A provider with a bug. */
const dying: StreamProvider = {
  complete: () => Effect.die(new Error(secret)),
  stream: () => Stream.die(new Error(secret))
}

const providerError = (reason: ProviderErrorReason, extra: Partial<ConstructorParameters<typeof ProviderError>[0]> = {}) =>
  new ProviderError({ reason, message: `upstream ${reason}`, provider: "openai", ...extra })

const noRetries = { retry: { max_retries: 0, initial_delay_ms: 0, max_delay_ms: 0 } }

/** A registry of mock plus one failing model per scenario; no retries so each failure surfaces at once. */
const failureRegistry = Registry.layerStatic(
  [
    { name: "mock", providerKind: "mock", provider: mock },
    { name: "rate-limited", provider: failing(providerError("RateLimited", { status: 429, retryAfterMs: 7000 })) },
    { name: "quota", provider: failing(providerError("QuotaExhausted", { status: 429 })) },
    {
      name: "bad-upstream-key",
      provider: failing(providerError("Authentication", { status: 401, message: "Incorrect API key provided: sk-up****xyz" }))
    },
    {
      name: "upstream-422",
      provider: failing(providerError("InvalidRequest", { status: 422, param: "messages", code: "context_length_exceeded" }))
    },
    { name: "upstream-404", provider: failing(providerError("NotFound", { status: 404 })) },
    { name: "filtered", provider: failing(providerError("ContentPolicy", { status: 400 })) },
    { name: "down-503", provider: failing(providerError("Unavailable", { status: 503 })) },
    { name: "down-500", provider: failing(providerError("Unavailable", { status: 500 })) },
    { name: "garbled", provider: failing(providerError("MalformedResponse")) },
    { name: "slow", provider: failing(providerError("Timeout")) },
    { name: "breaks-mid-stream", provider: failingMidStream(providerError("Unavailable", { status: 502, message: "connection reset" })) },
    { name: "buggy", provider: dying }
  ],
  noRetries
)

/** Sends raw bytes on a fresh TCP connection and collects what comes back until the server closes it. */
const rawExchange = (gateway: RunningGateway, head: string, bodyBytes: string) =>
  Effect.async<{ readonly response: string; readonly closedByServer: boolean; readonly bytesSent: number }>((resume) => {
    const { port } = new URL(gateway.baseUrl)
    const socket = connect(Number(port), "127.0.0.1")
    let response = ""
    let bytesSent = 0
    const timer = setTimeout(() => {
      socket.destroy()
      resume(Effect.succeed({ response, closedByServer: false, bytesSent }))
    }, 5000)
    socket.setEncoding("utf8")
    socket.on("connect", () => {
      socket.write(head)
      socket.write(bodyBytes)
      bytesSent = Buffer.byteLength(head) + Buffer.byteLength(bodyBytes)
    })
    socket.on("data", (data: string) => {
      response += data
    })
    socket.on("error", () => undefined)
    socket.on("close", () => {
      clearTimeout(timer)
      resume(Effect.succeed({ response, closedByServer: true, bytesSent }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

const statusLine = (raw: string) => raw.split("\r\n")[0] ?? ""
const rawBody = (raw: string) => raw.slice(raw.indexOf("\r\n\r\n") + 4)

// ---------------------------------------------------------------------------------------------------------------

// The chat contract, over both mounts: the node:http fast path (what `npm start` runs) and the HttpApi's own handler
// (what an app that mounts the Api gets). One table of tests, two transports, one core behind them.
for (const mount of mounts) {
  describe(`models (${mount} mount)`, () => {
    it.scopedLive("GET /v1/models lists every registered model in OpenAI's shape", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, registry: failureRegistry })
        const answer = yield* get(gateway, "/v1/models")
        expect(answer.status).toBe(200)
        expect(answer.headers.get("content-type")).toContain("application/json")
        const list = json<{ object: string; data: ReadonlyArray<{ id: string; object: string; created: number; owned_by: string }> }>(answer)
        expect(list.object).toBe("list")
        expect(list.data.map((model) => model.id)).toEqual([
          "mock",
          "rate-limited",
          "quota",
          "bad-upstream-key",
          "upstream-422",
          "upstream-404",
          "filtered",
          "down-503",
          "down-500",
          "garbled",
          "slow",
          "breaks-mid-stream",
          "buggy"
        ])
        const first = list.data[0]
        expect(first?.object).toBe("model")
        expect(first?.owned_by).toBe("mock")
        expect(Number.isInteger(first?.created)).toBe(true)
        expect(Math.abs((first?.created ?? 0) - Date.now() / 1000)).toBeLessThan(120)
      }))

    it.scopedLive("GET /v1/models/{model} answers the model, or 404 model_not_found", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const found = yield* get(gateway, "/v1/models/mock")
        expect(found.status).toBe(200)
        expect(json<{ id: string; object: string }>(found)).toMatchObject({ id: "mock", object: "model", owned_by: "mock" })
        const missing = yield* get(gateway, "/v1/models/gpt-99")
        const error = expectEnvelope(missing, 404, "model_not_found", "model")
        expect(error.type).toBe("invalid_request_error")
        expect(error.message).toContain("gpt-99")
      }))

    it.scopedLive("GET /v1/llm/models answers the original service's shape", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({
          mount,
          registry: Registry.layerStatic([
            { name: "mock", providerKind: "mock", provider: mock },
            { name: "balanced", providerKind: "openai", provider: mock },
            { name: "balanced", providerKind: "openai", provider: mock }
          ])
        })
        const answer = yield* get(gateway, "/v1/llm/models")
        expect(answer.status).toBe(200)
        expect(json<unknown>(answer)).toEqual({
          models: [
            { id: "mock", provider: "mock", deployments: 1 },
            { id: "balanced", provider: "openai", deployments: 2 }
          ]
        })
      }))
  })

  describe(`chat completions (${mount} mount)`, () => {
    it.scopedLive("answers JSON for a non-streamed request, with routing headers", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const answer = yield* post(gateway, chat("hello json world"))
        expect(answer.status).toBe(200)
        expect(answer.headers.get("content-type")).toContain("application/json")
        expect(answer.headers.get("x-llm-proxy-model")).toBe("mock")
        expect(answer.headers.get("x-llm-proxy-provider")).toBe("mock")
        expect(answer.headers.get("x-llm-proxy-attempts")).toBe("1")
        const completion = json<CompletionShape>(answer)
        expect(completion.object).toBe("chat.completion")
        expect(completion.model).toBe("mock")
        expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "hello json world" })
        expect(completion.choices[0]?.finish_reason).toBe("stop")
        expect(completion.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 })
      }))

    it.scopedLive("treats any body as JSON whatever its content-type", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        for (const contentType of ["application/x-www-form-urlencoded", "text/plain"]) {
          const answer = yield* post(gateway, chat("labelled oddly"), { "content-type": contentType })
          expect(answer.status).toBe(200)
          expect(json<CompletionShape>(answer).choices[0]?.message.content).toBe("labelled oddly")
        }
      }))

    it.scopedLive("streams SSE: headers, role first, frames, [DONE]", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const answer = yield* post(gateway, chat("one two three", { stream: true }))
        expect(answer.status).toBe(200)
        expect(answer.headers.get("content-type")).toContain("text/event-stream")
        expect(answer.headers.get("cache-control")).toBe("no-cache")
        expect(answer.headers.get("x-accel-buffering")).toBe("no")
        expect(answer.headers.get("x-llm-proxy-model")).toBe("mock")
        const payloads = ssePayloads(answer.text)
        expect(payloads.at(-1)).toBe("[DONE]")
        const chunks = payloads.slice(0, -1) as ReadonlyArray<ChunkShape>
        expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
        expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk" && chunk.model === "mock")).toBe(true)
        expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe("one two three")
        expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe("stop")
        // no usage asked for: no usage-only chunk, no usage anywhere
        expect(chunks.every((chunk) => chunk.choices.length > 0 && chunk.usage === undefined)).toBe(true)
      }))

    it.scopedLive("sends the usage chunk (choices []) right before [DONE] with stream_options.include_usage", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const answer = yield* post(gateway, chat("one two three", { stream: true, stream_options: { include_usage: true } }))
        expect(answer.status).toBe(200)
        const payloads = ssePayloads(answer.text)
        expect(payloads.at(-1)).toBe("[DONE]")
        const usageChunk = payloads.at(-2) as ChunkShape
        expect(usageChunk.choices).toEqual([])
        expect(usageChunk.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 })
        const before = payloads.at(-3) as ChunkShape
        expect(before.choices[0]?.finish_reason).toBe("stop")
      }))

    it.scopedLive("forwards unknown request fields to the provider, and the upstream model name", () =>
      Effect.gen(function* () {
        const received: Array<ChatCompletionRequest> = []
        const recording: StreamProvider = {
          complete: (request) => Effect.zipRight(Effect.sync(() => received.push(request)), mock.complete(request)),
          stream: (request) => Stream.unwrap(Effect.as(Effect.sync(() => received.push(request)), mock.stream(request)))
        }
        const gateway = yield* startGateway({
          mount,
          registry: Registry.layerStatic([{ name: "house", upstreamModel: "vendor-model-7b", provider: recording }])
        })
        const body = {
          model: "house",
          messages: [{ role: "user", content: "hi there", vendor_message_tag: "m-1" }],
          top_k: 40,
          metadata: { team: "search" },
          "x-vendor-extra": { nested: [1, 2] },
          temperature: 0.3
        }
        const answer = yield* post(gateway, body)
        expect(answer.status).toBe(200)
        expect(json<CompletionShape>(answer).model).toBe("house")
        const streamed = yield* post(gateway, { ...body, stream: true })
        expect(streamed.status).toBe(200)
        expect(received).toHaveLength(2)
        for (const request of received) {
          const fields = request as unknown as Record<string, unknown>
          expect(fields["model"]).toBe("vendor-model-7b")
          expect(fields["top_k"]).toBe(40)
          expect(fields["metadata"]).toEqual({ team: "search" })
          expect(fields["x-vendor-extra"]).toEqual({ nested: [1, 2] })
          expect(fields["temperature"]).toBe(0.3)
          expect((request.messages[0] as unknown as Record<string, unknown>)["vendor_message_tag"]).toBe("m-1")
        }
        expect((received[1] as unknown as Record<string, unknown>)["stream"]).toBe(true)
      }))
  })

  describe(`bad input (${mount} mount)`, () => {
    it.scopedLive("malformed JSON is 400 invalid_json with param null", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        for (const body of ["{not json", "{\"model\": \"mock\",}", "[1, 2", "{\"model\": \"mock\", \"messages\": [{\"role\": \"user\""]) {
          const error = expectEnvelope(yield* postRaw(gateway, body), 400, "invalid_json", null)
          expect(error.type).toBe("invalid_request_error")
          expect(error.message).toBe("We could not parse the JSON body of your request.")
        }
        // an empty body is not JSON either
        expectEnvelope(yield* postRaw(gateway, ""), 400, "invalid_json", null)
      }))

    it.scopedLive("schema violations are 400 invalid_request naming the field in param", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const cases: ReadonlyArray<readonly [unknown, string]> = [
          [{ model: "mock", messages: [{ role: "robot", content: "x" }] }, "messages.[0].role"],
          [{ model: "mock", messages: [{ role: "user", content: "ok" }, { role: "oops", content: "x" }] }, "messages.[1].role"],
          [chat("x", { temperature: 3 }), "temperature"],
          [chat("x", { top_p: -1 }), "top_p"],
          [chat("x", { n: 0 }), "n"],
          [chat("x", { max_tokens: 0 }), "max_tokens"],
          [chat("x", { presence_penalty: 5 }), "presence_penalty"],
          [chat("x", { stop: ["a", "b", "c", "d", "e"] }), "stop"],
          [chat("x", { stream: "yes" }), "stream"],
          [{ messages: [{ role: "user", content: "x" }] }, "model"],
          [{ model: "mock" }, "messages"],
          [{ model: "mock", messages: [{ role: "user", content: [{ type: "text" }] }] }, "messages.[0].content"]
        ]
        for (const [body, param] of cases) {
          const error = expectEnvelope(yield* post(gateway, body), 400, "invalid_request", param)
          expect(error.type).toBe("invalid_request_error")
          expect(error.message).toContain(param)
        }
        // a body that is JSON but not an object has no field to name
        const notObject = expectEnvelope(yield* post(gateway, [1, 2, 3]), 400, "invalid_request", "body")
        expect(notObject.type).toBe("invalid_request_error")
      }))

    it.scopedLive("unknown model is 404 model_not_found, for JSON and streams", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        for (const stream of [false, true]) {
          const error = expectEnvelope(
            yield* post(gateway, { model: "no-such-model", messages: [{ role: "user", content: "x" }], stream }),
            404,
            "model_not_found",
            "model"
          )
          expect(error.message).toContain("no-such-model")
        }
      }))

    it.scopedLive("unknown route is 404 unknown_url, with and without a key", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const error = expectEnvelope(yield* get(gateway, "/v1/audio/speech"), 404, "unknown_url", null)
        expect(error.message).toMatch(/^Invalid URL \(GET \/v1\/audio\/speech\)\. This gateway serves .*POST \/v1\/chat\/completions, POST \/v1\/embeddings/)
        const query = expectEnvelope(yield* call(gateway, "/nothing/here?x=1", { method: "DELETE" }), 404, "unknown_url", null)
        expect(query.message).not.toContain("x=1")
      }))

    it.scopedLive("a known route with another method is 405 with Allow, not 404", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        for (const method of ["GET", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
          const answer = yield* call(gateway, "/v1/chat/completions", { method, headers: gateway.auth })
          const error = expectEnvelope(answer, 405, "method_not_allowed", null)
          expect(answer.headers.get("allow")).toBe("POST")
          expect(error.message).toContain(method)
        }
        const models = yield* call(gateway, "/v1/models", { method: "POST", headers: { ...gateway.auth, "content-type": "application/json" }, body: "{}" })
        expectEnvelope(models, 405, "method_not_allowed", null)
        expect(models.headers.get("allow")).toBe("GET")
        const model = yield* call(gateway, "/v1/models/mock", { method: "DELETE", headers: gateway.auth })
        expect(model.status).toBe(405)
        expect(model.headers.get("allow")).toBe("GET")
      }))

    it.scopedLive("a body over MAX_BODY_BYTES is 413 from the headers alone, before the body is sent", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, settings: { maxBodyBytes: 64 * 1024 } })
        const declared = 50 * 1024 * 1024
        const head =
          "POST /v1/chat/completions HTTP/1.1\r\n" +
          "Host: 127.0.0.1\r\n" +
          `x-internal-auth: ${testKey}\r\n` +
          "Content-Type: application/json\r\n" +
          `Content-Length: ${declared}\r\n\r\n`
        const exchange = yield* rawExchange(gateway, head, "{\"model\":\"mock\",\"messages\":[")
        expect(exchange.bytesSent).toBeLessThan(1024)
        expect(statusLine(exchange.response)).toBe("HTTP/1.1 413 Payload Too Large")
        expect(exchange.response.toLowerCase()).toContain("connection: close")
        expect(exchange.response.toLowerCase()).toMatch(/x-request-id: \S+/)
        expect(JSON.parse(rawBody(exchange.response))).toEqual({
          error: {
            message: "Request body exceeds the limit of 65536 bytes",
            type: "invalid_request_error",
            param: null,
            code: "request_too_large"
          }
        })
        // the server hangs up instead of waiting for the 50 MB it was promised
        expect(exchange.closedByServer).toBe(true)
      }))

    it.scopedLive("a body just over the limit is 413 through fetch too, and one under it is served", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, settings: { maxBodyBytes: 2048 } })
        const padding = "x".repeat(2100)
        expectEnvelope(yield* post(gateway, chat(padding)), 413, "request_too_large", null)
        const small = yield* post(gateway, chat("x".repeat(100)))
        expect(small.status).toBe(200)
      }))

    it.scopedLive("a chunked body without Content-Length is 411", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const body = JSON.stringify(chat("chunked"))
        const head =
          "POST /v1/chat/completions HTTP/1.1\r\n" +
          "Host: 127.0.0.1\r\n" +
          `x-internal-auth: ${testKey}\r\n` +
          "Content-Type: application/json\r\n" +
          "Transfer-Encoding: chunked\r\n" +
          "Connection: close\r\n\r\n"
        const chunked = `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`
        const exchange = yield* rawExchange(gateway, head, chunked)
        expect(statusLine(exchange.response)).toBe("HTTP/1.1 411 Length Required")
        const envelope = JSON.parse(rawBody(exchange.response)) as ErrorEnvelope
        expect(envelope.error).toMatchObject({ code: "length_required", type: "invalid_request_error", param: null })
      }))

    it.scopedLive("a provider defect is 500 with the request id in the message and no internals", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, registry: failureRegistry })
        for (const stream of [false, true]) {
          const answer = yield* post(gateway, { model: "buggy", messages: [{ role: "user", content: "x" }], stream }, {
            "x-request-id": `req-defect-${stream}`
          })
          const error = expectEnvelope(answer, 500, "internal_error", null)
          expect(error.type).toBe("server_error")
          expect(error.message).toContain(`req-defect-${stream}`)
          expect(answer.headers.get("x-request-id")).toBe(`req-defect-${stream}`)
          expect(answer.text).not.toContain("SECRET")
          expect(answer.text).not.toContain("config.ts")
          expect(answer.text).not.toContain("Error")
        }
        // without a client request id, the generated one is in the message and the header alike
        const generated = yield* post(gateway, { model: "buggy", messages: [{ role: "user", content: "x" }] })
        const requestId = generated.headers.get("x-request-id")
        expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
        expect(expectEnvelope(generated, 500, "internal_error", null).message).toContain(requestId ?? "missing")
      }))
  })

  describe(`provider failures over HTTP (${mount} mount)`, () => {
    it.scopedLive("each ProviderError reason gets its status, type, code and headers", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, registry: failureRegistry })
        const ask = (model: string, stream = false) =>
          post(gateway, { model, messages: [{ role: "user", content: "x" }], stream })

        for (const stream of [false, true]) {
          const limited = yield* ask("rate-limited", stream)
          expect(expectEnvelope(limited, 429, "rate_limit_exceeded", null).type).toBe("rate_limit_error")
          expect(limited.headers.get("retry-after")).toBe("7")

          expect(expectEnvelope(yield* ask("quota", stream), 429, "insufficient_quota", null).type).toBe("insufficient_quota")

          const auth = yield* ask("bad-upstream-key", stream)
          const authError = expectEnvelope(auth, 502, "upstream_authentication_failed", null)
          expect(authError.type).toBe("upstream_error")
          expect(auth.text).not.toContain("sk-up")
          expect(auth.text).not.toContain("Incorrect API key")

          const invalid = expectEnvelope(yield* ask("upstream-422", stream), 422, "context_length_exceeded", "messages")
          expect(invalid.type).toBe("invalid_request_error")

          expectEnvelope(yield* ask("upstream-404", stream), 404, "model_not_found", null)
          expectEnvelope(yield* ask("filtered", stream), 400, "content_policy_violation", null)
          expectEnvelope(yield* ask("down-503", stream), 503, "upstream_unavailable", null)
          expectEnvelope(yield* ask("down-500", stream), 502, "upstream_unavailable", null)
          expectEnvelope(yield* ask("garbled", stream), 502, "upstream_malformed_response", null)
          expect(expectEnvelope(yield* ask("slow", stream), 504, "upstream_timeout", null).type).toBe("timeout_error")
        }
      }))

    it.scopedLive("a failure after the first chunk is a 200 stream ending in one error frame, no [DONE]", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, registry: failureRegistry })
        const answer = yield* post(gateway, {
          model: "breaks-mid-stream",
          messages: [{ role: "user", content: "a b c d" }],
          stream: true
        })
        expect(answer.status).toBe(200)
        expect(answer.text).not.toContain("[DONE]")
        const payloads = ssePayloads(answer.text)
        expect(payloads).toHaveLength(3)
        expect((payloads[0] as ChunkShape).choices[0]?.delta.role).toBe("assistant")
        expect(payloads[2]).toEqual({
          error: { message: "connection reset", type: "upstream_error", param: null, code: "upstream_unavailable" }
        })
      }))
  })

  describe(`request ids (${mount} mount)`, () => {
    it.scopedLive("keeps a sane x-request-id and generates one otherwise, on every kind of response", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const given = { "x-request-id": "client-req.42:a_b" }
        const answers = [
          yield* call(gateway, "/health", { headers: given }),
          yield* get(gateway, "/v1/models", given),
          yield* post(gateway, chat("x"), given),
          yield* post(gateway, chat("x", { stream: true }), given),
          yield* postRaw(gateway, "{bad", given),
          yield* call(gateway, "/v1/models", { headers: given }),
          yield* get(gateway, "/no/route", given)
        ]
        expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 400, 401, 404])
        for (const answer of answers) expect(answer.headers.get("x-request-id")).toBe("client-req.42:a_b")

        const fresh = [yield* get(gateway, "/v1/models"), yield* get(gateway, "/v1/models")]
        const ids = fresh.map((answer) => answer.headers.get("x-request-id"))
        for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
        expect(ids[0]).not.toBe(ids[1])

        // an unsafe or oversized id is replaced, not echoed
        for (const unsafe of ["has spaces in it", "x".repeat(200), "<script>"]) {
          const answer = yield* get(gateway, "/v1/models", { "x-request-id": unsafe })
          expect(answer.headers.get("x-request-id")).not.toBe(unsafe)
          expect(answer.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/)
        }
      }))
  })

  describe(`resilience (${mount} mount)`, () => {
    it.scopedLive("still serves normal requests after every kind of bad input on the same server", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount, registry: failureRegistry, settings: { maxBodyBytes: 4096 } })
        const hugeHead =
          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" +
          `x-internal-auth: ${testKey}\r\nContent-Length: 999999999\r\n\r\n`
        const statuses = [
          (yield* postRaw(gateway, "{bad")).status,
          (yield* post(gateway, { model: "mock", messages: [{ role: "nobody", content: "x" }] })).status,
          (yield* post(gateway, { model: "missing", messages: [{ role: "user", content: "x" }] })).status,
          (yield* get(gateway, "/v1/unknown")).status,
          statusLine((yield* rawExchange(gateway, hugeHead, "{")).response),
          statusLine(
            (yield* rawExchange(
              gateway,
              `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-internal-auth: ${testKey}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`,
              "2\r\n{}\r\n0\r\n\r\n"
            )).response
          ),
          (yield* post(gateway, { model: "buggy", messages: [{ role: "user", content: "x" }] })).status,
          (yield* post(gateway, { model: "buggy", messages: [{ role: "user", content: "x" }], stream: true })).status,
          (yield* post(gateway, { model: "breaks-mid-stream", messages: [{ role: "user", content: "x y" }], stream: true })).status,
          (yield* post(gateway, { model: "rate-limited", messages: [{ role: "user", content: "x" }] })).status,
          (yield* call(gateway, "/v1/models")).status
        ]
        expect(statuses).toEqual([
          400,
          400,
          404,
          404,
          "HTTP/1.1 413 Payload Too Large",
          "HTTP/1.1 411 Length Required",
          500,
          500,
          200,
          429,
          401
        ])
        const normal = yield* post(gateway, chat("still alive"))
        expect(normal.status).toBe(200)
        expect(json<CompletionShape>(normal).choices[0]?.message.content).toBe("still alive")
        const streamed = yield* post(gateway, chat("still streaming", { stream: true }))
        expect(ssePayloads(streamed.text).at(-1)).toBe("[DONE]")
        const health = yield* call(gateway, "/health")
        expect(json<{ status: string }>(health).status).toBe("ok")
      }))
  })
}
