import { readFileSync } from "node:fs"
import { streamOf } from "../../../src/Providers/Provider.js"
import * as Transport from "../../../src/Providers/Upstream/Transport.js"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import type { UpstreamTarget } from "../../../src/Providers/Provider.js"
import { defaultBaseUrl, make } from "../../../src/Providers/Anthropic/Provider.js"
import { Anthropic, json, sse, startUpstream, text } from "../../support/FakeUpstreams.js"
import type { Reply, UpstreamCall } from "../../support/FakeUpstreams.js"

/** Everything before the message_delta event: a stream cut off mid-answer. */
const truncated = (frames: ReadonlyArray<string>) => frames.slice(0, frames.findIndex((frame) => frame.startsWith("event: message_delta")))

const basicFrames = Anthropic.recordedStreamFrames("basic_response.txt")

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
const scenario = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "ok":
      return call.stream ? Anthropic.recordedStream("basic_response.txt") : json(message)
    case "tool-use":
      return Anthropic.recordedStream("tool_use_response.txt")
    case "cut-by-max-tokens":
      return Anthropic.recordedStream("incomplete_partial_json_response.txt")
    case "rate-limited":
      return Anthropic.error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit", { "retry-after": "7" })
    case "overloaded":
      return Anthropic.error(529, "overloaded_error", "Overloaded")
    case "unauthorized":
      return Anthropic.error(401, "authentication_error", "invalid x-api-key")
    case "invalid-request":
      return Anthropic.error(400, "invalid_request_error", "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`.")
    case "recorded-thinking":
      return call.stream
        ? sse(
            readFileSync(new URL("../../fixtures/anthropic/vercel-ai-fixtures/anthropic-clear-thinking.1.chunks.txt", import.meta.url), "utf8")
              .split("\n")
              .map((line) => `event: ${(JSON.parse(line) as { type: string }).type}\ndata: ${line}\n\n`)
          )
        : text(200, readFileSync(new URL("../../fixtures/anthropic/vercel-ai-fixtures/issue-13430-thinking-tool-call.json", import.meta.url), "utf8"), "application/json")
    case "html-502":
      return text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
    case "not-a-message":
      return json({ hello: "world" })
    case "not-json":
      return text(200, "<<<not json>>>", "application/json")
    case "cut-off":
      return sse(truncated(basicFrames))
    case "socket-destroyed":
      return sse(truncated(basicFrames), { then: "destroy" })
    case "error-event":
      return sse([
        ...truncated(basicFrames),
        `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })}\n\n`
      ])
    default:
      return Anthropic.error(404, "not_found_error", `model: ${call.model}`)
  }
}

/** A fake Anthropic API for one test, and the provider's calls against it. */
const fakeAnthropic = Effect.map(startUpstream("anthropic", scenario), (upstream) => {
  const target = (overrides: Partial<UpstreamTarget> = {}): UpstreamTarget => ({
    baseUrl: upstream.origin,
    apiKey: Redacted.make("sk-ant-test-key"),
    headers: { "anthropic-beta": "test-beta-2025" },
    ...overrides
  })
  const complete = (req: ChatCompletionRequest) =>
    Effect.flatMap(make(target()), (provider) => provider.complete(req)).pipe(Effect.provide(Transport.layer()))
  const stream = (req: ChatCompletionRequest) =>
    Stream.unwrap(Effect.map(make(target()), (provider) => streamOf(provider, req))).pipe(Stream.provideLayer(Transport.layer()))
  const collect = (req: ChatCompletionRequest) => Effect.map(Stream.runCollect(stream(req)), (chunks) => Chunk.toReadonlyArray(chunks))
  /** The last request the upstream received for `model`. */
  const lastFor = (model: string): UpstreamCall => {
    const found = upstream.calls.filter((call) => call.model === model).at(-1)
    if (found === undefined) throw new Error(`no request captured for ${model}`)
    return found
  }
  return { upstream, target, complete, stream, collect, lastFor }
})

const request = (model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model,
  messages: [
    { role: "system", content: "Reply in French." },
    { role: "user", content: "Hello" }
  ],
  ...extra
})

const contentOf = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")

describe("Anthropic provider against a real HTTP upstream", () => {
  it("has the official base URL as default", () => {
    expect(defaultBaseUrl).toBe("https://api.anthropic.com")
  })

  it.scopedLive("completes, sending a translated body with Anthropic's headers and nothing of the client's", () =>
    Effect.gen(function* () {
      const { complete, lastFor } = yield* fakeAnthropic
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
      expect(sent.path).toBe("/v1/messages")
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

  it.scopedLive("omits x-api-key without a key, and honours a trailing slash and defaultMaxTokens", () =>
    Effect.gen(function* () {
      const { upstream, target } = yield* fakeAnthropic
      const provider = yield* make(target({ apiKey: undefined, baseUrl: `${upstream.origin}/` }), { defaultMaxTokens: 321 })
      yield* provider.complete(request("ok", { user: "keyless" }))
      const sent = upstream.calls.filter((entry) => entry.json["metadata"] !== undefined).at(-1)
      expect(sent?.path).toBe("/v1/messages")
      expect(sent?.headers["x-api-key"]).toBeUndefined()
      expect(sent?.json["max_tokens"]).toBe(321)
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("streams the recorded text answer with stream: true upstream", () =>
    Effect.gen(function* () {
      const { upstream, stream, lastFor } = yield* fakeAnthropic
      const lazy = stream(request("ok"))
      expect(upstream.calls).toHaveLength(0)
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(lazy))
      expect(lastFor("ok").json["stream"]).toBe(true)
      expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" })
      expect(contentOf(chunks)).toBe("Hello there!")
      expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
      expect(chunks.flatMap((chunk) => chunk.choices.map((c) => c.finish_reason)).filter((r) => r !== null)).toEqual([
        "stop"
      ])
      expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 } })
    }))

  it.scopedLive("streams a tool call whose reassembled arguments parse", () =>
    Effect.gen(function* () {
      const { collect, lastFor } = yield* fakeAnthropic
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
      expect(lastFor("tool-use").json["tools"]).toEqual([{ name: "get_weather", input_schema: { type: "object" } }])
    }))

  it.scopedLive("reports a max_tokens cut-off as finish_reason length", () =>
    Effect.gen(function* () {
      const { collect, lastFor } = yield* fakeAnthropic
      const chunks = yield* collect(request("cut-by-max-tokens", { max_tokens: 124 }))
      expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("length")
      expect(lastFor("cut-by-max-tokens").json["max_tokens"]).toBe(124)
    }))

  it.scopedLive("maps 429 to RateLimited with retry-after", () =>
    Effect.gen(function* () {
      const { complete, collect } = yield* fakeAnthropic
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

  it.scopedLive("maps 529 overloaded to Unavailable and 401 to Authentication", () =>
    Effect.gen(function* () {
      const { complete, collect } = yield* fakeAnthropic
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

  it.scopedLive("gives Anthropic's error type as the code of an error answer, streamed or not", () =>
    Effect.gen(function* () {
      const { complete, collect } = yield* fakeAnthropic
      expect(yield* Effect.flip(complete(request("invalid-request")))).toMatchObject({ reason: "InvalidRequest", status: 400, code: "invalid_request_error" })
      expect(yield* Effect.flip(collect(request("invalid-request")))).toMatchObject({ status: 400, code: "invalid_request_error" })
      expect(yield* Effect.flip(complete(request("rate-limited")))).toMatchObject({ code: "rate_limit_error" })
      expect(yield* Effect.flip(complete(request("html-502")))).toMatchObject({ code: null })
    }))

  it.scopedLive("sends reasoning_effort as thinking and answers recorded thinking, whole and streamed", () =>
    Effect.gen(function* () {
      const { complete, collect, lastFor } = yield* fakeAnthropic
      const done = yield* complete(request("recorded-thinking", { reasoning_effort: "medium", temperature: 0.5 }))
      expect(lastFor("recorded-thinking").body).toMatchObject({ thinking: { type: "enabled", budget_tokens: 8192 }, max_tokens: 8192 + 4096 })
      expect(lastFor("recorded-thinking").json).not.toHaveProperty("temperature")
      expect(done.choices[0]?.message).toMatchObject({
        reasoning_content: "The user wants me to call checkSandboxErrors immediately.",
        thinking_blocks: [{ type: "thinking", thinking: "The user wants me to call checkSandboxErrors immediately." }]
      })
      const chunks = yield* collect(request("recorded-thinking", { reasoning_effort: "low" }))
      expect(lastFor("recorded-thinking").body).toMatchObject({ stream: true, thinking: { type: "enabled", budget_tokens: 2048 } })
      expect(chunks.map((chunk) => chunk.choices[0]?.delta.reasoning_content ?? "").join("")).toBe(
        "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
      )
      expect(contentOf(chunks)).toBe("925 ÷ 5 = 185")
    }))

  it.scopedLive("maps an HTML 502 page to Unavailable without echoing the page", () =>
    Effect.gen(function* () {
      const { complete } = yield* fakeAnthropic
      const error = yield* Effect.flip(complete(request("html-502")))
      expect(error).toMatchObject({ reason: "Unavailable", status: 502 })
      expect(error.message).toContain("text/html")
      expect(error.message).not.toContain("<html>")
    }))

  it.scopedLive("fails with MalformedResponse on a 200 that is not a Messages response", () =>
    Effect.gen(function* () {
      const { complete } = yield* fakeAnthropic
      expect((yield* Effect.flip(complete(request("not-a-message")))).reason).toBe("MalformedResponse")
      expect((yield* Effect.flip(complete(request("not-json")))).reason).toBe("MalformedResponse")
    }))

  it.scopedLive("fails a stream cut off before message_stop with Unavailable, after the chunks it did get", () =>
    Effect.gen(function* () {
      const { stream } = yield* fakeAnthropic
      const results = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.either(stream(request("cut-off")))))
      const chunks = results.filter(Either.isRight).map((result) => result.right)
      const errors = results.filter(Either.isLeft).map((result) => result.left)
      expect(contentOf(chunks)).toBe("Hello there!")
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatchObject({ reason: "Unavailable", provider: "anthropic" })
      expect(errors[0]?.message).toMatch(/stream ended early/)
    }))

  it.scopedLive("fails with Unavailable when the connection drops mid-stream", () =>
    Effect.gen(function* () {
      const { collect } = yield* fakeAnthropic
      const error = yield* Effect.flip(collect(request("socket-destroyed")))
      expect(error).toMatchObject({ _tag: "ProviderError", reason: "Unavailable" })
    }))

  it.scopedLive("turns an error event mid-stream into a ProviderError", () =>
    Effect.gen(function* () {
      const { collect } = yield* fakeAnthropic
      const error = yield* Effect.flip(collect(request("error-event")))
      expect(error).toMatchObject({ reason: "Unavailable", message: "Overloaded", code: "overloaded_error" })
    }))

  it.scopedLive("rejects untranslatable requests without calling the upstream", () =>
    Effect.gen(function* () {
      const { upstream, complete, collect } = yield* fakeAnthropic
      const bad = request("ok", {
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] }
        ]
      })
      expect(yield* Effect.flip(complete(bad))).toMatchObject({ reason: "InvalidRequest" })
      expect(yield* Effect.flip(collect(bad))).toMatchObject({ reason: "InvalidRequest" })
      expect(upstream.calls).toHaveLength(0)
    }))
})
