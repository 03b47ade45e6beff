import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { IncomingHttpHeaders, Server, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { streamOf } from "../../../src/Providers/Provider.js"
import * as Transport from "../../../src/Providers/Upstream/Transport.js"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import { afterAll, beforeAll } from "vitest"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import type { UpstreamTarget } from "../../../src/Providers/Provider.js"
import { defaultBaseUrl, make } from "../../../src/Providers/Anthropic/Provider.js"

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/anthropic/${name}`, import.meta.url), "utf8")

interface Captured {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly headers: IncomingHttpHeaders
  readonly body: Record<string, unknown>
}

const captured: Array<Captured> = []

const anthropicError = (type: string, message: string) => JSON.stringify({ type: "error", error: { type, message } })

const json = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(body)
}

/** Writes an SSE body event by event, as the real API flushes them. */
const replay = (res: ServerResponse, body: string, end: (res: ServerResponse) => void = (res) => res.end()) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  const frames = body.split(/(?<=\n\n)/)
  const next = (i: number) => {
    if (i >= frames.length) return end(res)
    res.write(frames[i])
    setImmediate(() => next(i + 1))
  }
  next(0)
}

/** Everything up to (not including) the message_delta event: a stream cut off mid-answer. */
const truncated = (body: string) => body.slice(0, body.indexOf("event: message_delta"))

const message = {
  id: "msg_01XFDUDYJgAACzvnptvVoYEL",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5",
  content: [{ type: "text", text: "Bonjour !" }],
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 12, output_tokens: 4, cache_read_input_tokens: 2, cache_creation_input_tokens: 0 }
}

/** Answers in Anthropic's wire format; the request's `model` picks the scenario. */
const handle = (model: string, stream: boolean, res: ServerResponse): void => {
  switch (model) {
    case "ok":
      return stream ? replay(res, fixture("basic_response.txt")) : json(res, 200, JSON.stringify(message))
    case "tool-use":
      return replay(res, fixture("tool_use_response.txt"))
    case "cut-by-max-tokens":
      return replay(res, fixture("incomplete_partial_json_response.txt"))
    case "rate-limited":
      return json(res, 429, anthropicError("rate_limit_error", "Number of request tokens has exceeded your rate limit"), {
        "retry-after": "7"
      })
    case "overloaded":
      return json(res, 529, anthropicError("overloaded_error", "Overloaded"))
    case "unauthorized":
      return json(res, 401, anthropicError("authentication_error", "invalid x-api-key"))
    case "html-502":
      res.writeHead(502, { "content-type": "text/html" })
      return void res.end("<html><body><h1>502 Bad Gateway</h1></body></html>")
    case "not-a-message":
      return json(res, 200, JSON.stringify({ hello: "world" }))
    case "not-json":
      return json(res, 200, "<<<not json>>>")
    case "cut-off":
      return replay(res, truncated(fixture("basic_response.txt")))
    case "socket-destroyed":
      return replay(res, truncated(fixture("basic_response.txt")), (res) => res.destroy())
    case "error-event":
      return replay(
        res,
        truncated(fixture("basic_response.txt")) +
          `event: error\ndata: ${anthropicError("overloaded_error", "Overloaded")}\n\n`
      )
    default:
      return json(res, 404, anthropicError("not_found_error", `model: ${model}`))
  }
}

let server: Server
let baseUrl: string

beforeAll(async () => {
  server = createServer((req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (part: Buffer) => parts.push(part))
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(parts).toString("utf8")) as Record<string, unknown>
      captured.push({ method: req.method, url: req.url, headers: req.headers, body })
      handle(String(body["model"]), body["stream"] === true, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

const target = (overrides: Partial<UpstreamTarget> = {}): UpstreamTarget => ({
  baseUrl,
  apiKey: Redacted.make("sk-ant-test-key"),
  headers: { "anthropic-beta": "test-beta-2025" },
  ...overrides
})

const request = (model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model,
  messages: [
    { role: "system", content: "Reply in French." },
    { role: "user", content: "Hello" }
  ],
  ...extra
})

const lastFor = (model: string): Captured => {
  const found = captured.filter((entry) => entry.body["model"] === model).at(-1)
  if (found === undefined) throw new Error(`no request captured for ${model}`)
  return found
}

const complete = (req: ChatCompletionRequest, upstream: UpstreamTarget = target()) =>
  Effect.flatMap(make(upstream), (provider) => provider.complete(req)).pipe(Effect.provide(Transport.layer()))

const stream = (req: ChatCompletionRequest, upstream: UpstreamTarget = target()) =>
  Stream.unwrap(Effect.map(make(upstream), (provider) => streamOf(provider, req))).pipe(
    Stream.provideLayer(Transport.layer())
  )

const collect = (req: ChatCompletionRequest) =>
  Effect.map(Stream.runCollect(stream(req)), (chunks) => Chunk.toReadonlyArray(chunks))

const text = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")

describe("Anthropic provider against a real HTTP upstream", () => {
  it("has the official base URL as default", () => {
    expect(defaultBaseUrl).toBe("https://api.anthropic.com")
  })

  it.live("completes, sending a translated body with Anthropic's headers and nothing of the client's", () =>
    Effect.gen(function* () {
      const completion = yield* complete(request("ok", { temperature: 1.5, stop: "FIN" }))
      expect(completion).toMatchObject({
        object: "chat.completion",
        model: "ok",
        choices: [
          { index: 0, message: { role: "assistant", content: "Bonjour !" }, finish_reason: "stop", logprobs: null }
        ],
        usage: { prompt_tokens: 14, completion_tokens: 4, total_tokens: 18, prompt_tokens_details: { cached_tokens: 2 } }
      })
      expect(completion.id).toMatch(/^chatcmpl-[0-9a-f-]{36}$/)
      expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(60)

      const sent = lastFor("ok")
      expect(sent.method).toBe("POST")
      expect(sent.url).toBe("/v1/messages")
      expect(sent.headers["x-api-key"]).toBe("sk-ant-test-key")
      expect(sent.headers["anthropic-version"]).toBe("2023-06-01")
      expect(sent.headers["anthropic-beta"]).toBe("test-beta-2025")
      expect(sent.headers["content-type"]).toMatch(/^application\/json/)
      expect(sent.headers["authorization"]).toBeUndefined()
      expect(sent.headers["x-internal-auth"]).toBeUndefined()
      expect(sent.body).toEqual({
        model: "ok",
        system: "Reply in French.",
        messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }],
        max_tokens: 4096,
        temperature: 1,
        stop_sequences: ["FIN"]
      })
    }))

  it.live("omits x-api-key without a key, and honours a trailing slash and defaultMaxTokens", () =>
    Effect.gen(function* () {
      const provider = yield* make(target({ apiKey: undefined, baseUrl: `${baseUrl}/` }), { defaultMaxTokens: 321 })
      yield* provider.complete(request("ok", { user: "keyless" }))
      const sent = captured.filter((entry) => entry.body["metadata"] !== undefined).at(-1)
      expect(sent?.url).toBe("/v1/messages")
      expect(sent?.headers["x-api-key"]).toBeUndefined()
      expect(sent?.body["max_tokens"]).toBe(321)
    }).pipe(Effect.provide(Transport.layer())))

  it.live("streams the recorded text answer with stream: true upstream", () =>
    Effect.gen(function* () {
      const before = captured.length
      const lazy = stream(request("ok"))
      expect(captured.length).toBe(before)
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(lazy))
      expect(lastFor("ok").body["stream"]).toBe(true)
      expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" })
      expect(text(chunks)).toBe("Hello there!")
      expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
      expect(chunks.flatMap((chunk) => chunk.choices.map((c) => c.finish_reason)).filter((r) => r !== null)).toEqual([
        "stop"
      ])
      expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 } })
    }))

  it.live("streams a tool call whose reassembled arguments parse", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(
        request("tool-use", {
          tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }]
        })
      )
      const args = chunks
        .flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? [])
        .map((delta) => delta.function?.arguments ?? "")
        .join("")
      expect(JSON.parse(args)).toEqual({ location: "Paris" })
      expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("tool_calls")
      expect(lastFor("tool-use").body["tools"]).toEqual([{ name: "get_weather", input_schema: { type: "object" } }])
    }))

  it.live("reports a max_tokens cut-off as finish_reason length", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(request("cut-by-max-tokens", { max_tokens: 124 }))
      expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("length")
      expect(lastFor("cut-by-max-tokens").body["max_tokens"]).toBe(124)
    }))

  it.live("maps 429 to RateLimited with retry-after", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(complete(request("rate-limited")))
      expect(error).toMatchObject({
        _tag: "ProviderError",
        reason: "RateLimited",
        provider: "anthropic",
        status: 429,
        retryAfterMs: 7000,
        message: "Number of request tokens has exceeded your rate limit"
      })
      const streamError = yield* Effect.flip(collect(request("rate-limited")))
      expect(streamError).toMatchObject({ reason: "RateLimited", retryAfterMs: 7000 })
    }))

  it.live("maps 529 overloaded to Unavailable and 401 to Authentication", () =>
    Effect.gen(function* () {
      expect(yield* Effect.flip(complete(request("overloaded")))).toMatchObject({
        reason: "Unavailable",
        status: 529,
        message: "Overloaded"
      })
      expect(yield* Effect.flip(collect(request("overloaded")))).toMatchObject({ reason: "Unavailable", status: 529 })
      expect(yield* Effect.flip(complete(request("unauthorized")))).toMatchObject({
        reason: "Authentication",
        status: 401,
        message: "invalid x-api-key"
      })
    }))

  it.live("maps an HTML 502 page to Unavailable without echoing the page", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(complete(request("html-502")))
      expect(error).toMatchObject({ reason: "Unavailable", status: 502 })
      expect(error.message).toContain("text/html")
      expect(error.message).not.toContain("<html>")
    }))

  it.live("fails with MalformedResponse on a 200 that is not a Messages response", () =>
    Effect.gen(function* () {
      expect((yield* Effect.flip(complete(request("not-a-message")))).reason).toBe("MalformedResponse")
      expect((yield* Effect.flip(complete(request("not-json")))).reason).toBe("MalformedResponse")
    }))

  it.live("fails a stream cut off before message_stop with Unavailable, after the chunks it did get", () =>
    Effect.gen(function* () {
      const results = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(stream(request("cut-off")))))
      const chunks = results.filter(Either.isRight).map((result) => result.right)
      const errors = results.filter(Either.isLeft).map((result) => result.left)
      expect(text(chunks)).toBe("Hello there!")
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatchObject({ reason: "Unavailable", provider: "anthropic" })
      expect(errors[0]?.message).toMatch(/stream ended early/)
    }))

  it.live("fails with Unavailable when the connection drops mid-stream", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(collect(request("socket-destroyed")))
      expect(error).toMatchObject({ _tag: "ProviderError", reason: "Unavailable" })
    }))

  it.live("turns an error event mid-stream into a ProviderError", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(collect(request("error-event")))
      expect(error).toMatchObject({ reason: "Unavailable", message: "Overloaded", code: "overloaded_error" })
    }))

  it.live("rejects untranslatable requests without calling the upstream", () =>
    Effect.gen(function* () {
      const before = captured.length
      const bad = request("ok", {
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] }
        ]
      })
      expect(yield* Effect.flip(complete(bad))).toMatchObject({ reason: "InvalidRequest" })
      expect(yield* Effect.flip(collect(bad))).toMatchObject({ reason: "InvalidRequest" })
      expect(captured.length).toBe(before)
    }))
})
