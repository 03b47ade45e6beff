import * as Transport from "../../../src/Providers/Upstream/Transport.js"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import type { Scope } from "effect"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import { make } from "../../../src/Providers/Gemini/Provider.js"
import { streamOf } from "../../../src/Providers/Provider.js"
import type { UpstreamTarget } from "../../../src/Providers/Provider.js"
import { Gemini, json, sse, startUpstream, text } from "../../support/FakeUpstreams.js"
import type { Reply, UpstreamCall } from "../../support/FakeUpstreams.js"

const textStream = Gemini.recording("Chats_Tests_sendMessage_Google_AI_with_text_stream").interactions[0]!
const streamNotFound = Gemini.recording("Chats_Tests_sendMessage_Send_message_stream_with_error").interactions[0]!
const textStreamFrames = Gemini.recordedStreamFrames("Chats_Tests_sendMessage_Google_AI_with_text_stream")

/** What the real API sends with JSON, and with a stream. */
const jsonHeaders = { "content-type": "application/json; charset=UTF-8" }
const asStreamed = { headers: { "content-disposition": "attachment" } }

/** `body` in pieces of `size` characters, written apart so that frames (and their CRLFs) straddle TCP reads. */
const inPieces = (body: string, size: number): ReadonlyArray<string> =>
  Array.from({ length: Math.ceil(body.length / size) }, (_, index) => body.slice(index * size, (index + 1) * size))

/** A fake Generative Language API: the model name in the path picks the recorded answer. */
const scenario = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "gemini-2.0-flash":
      return call.stream ? sse([textStreamFrames.join("")], asStreamed) : Gemini.googleAiUnary("unary-success-basic-reply-short.json")
    case "reply-short-in-pieces":
      return sse(inPieces(Gemini.googleAiText("streaming-success-basic-reply-short.txt"), 13), asStreamed)
    case "thinking":
      return Gemini.googleAiUnary("unary-success-thinking-reply-thought-summary.json")
    case "prompt-blocked":
      return sse([Gemini.googleAiText("streaming-failure-prompt-blocked-safety.txt")], asStreamed)
    case "rate-limited":
      return Gemini.error(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED", { ...jsonHeaders, "retry-after": "7" })
    case "rate-limited-retry-info":
      return json(
        {
          error: {
            code: 429,
            message: "You exceeded your current quota.",
            status: "RESOURCE_EXHAUSTED",
            details: [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "21s" }]
          }
        },
        { status: 429, headers: jsonHeaders }
      )
    case "bad-key":
      return Gemini.googleAiUnary("unary-failure-api-key.json", 400)
    case "custom-gemini-2.0-flash":
      // Recorded: a 404 labelled text/event-stream whose body is a plain JSON error.
      return text(
        streamNotFound.response.statusCode,
        JSON.stringify(streamNotFound.response.bodySegments[0]),
        streamNotFound.response.headers["Content-Type"]!
      )
    case "overloaded":
      return Gemini.error(503, "The model is overloaded.", "UNAVAILABLE", jsonHeaders)
    case "cut-off":
      return sse(
        [Gemini.googleAiText("streaming-success-basic-reply-long.txt").split("\r\n\r\n").slice(0, 3).join("\r\n\r\n") + "\r\n\r\n"],
        asStreamed
      )
    case "socket-dropped":
      return sse([textStreamFrames.slice(0, 2).join("")], { ...asStreamed, gapMs: 20, then: "destroy" })
    case "ok-with-error-body":
      return json({ error: { code: 400, message: "Invalid JSON payload received.", status: "INVALID_ARGUMENT" } }, { headers: jsonHeaders })
    default:
      return Gemini.error(404, `models/${call.model} is not found`, "NOT_FOUND", jsonHeaders)
  }
}

const request = (model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model,
  messages: [{ role: "user", content: "why is the sky blue?" }],
  ...extra
})

/** A fake Gemini API for one test, and a provider pointed at it. */
const fakeGemini = Effect.map(startUpstream("gemini", scenario), (upstream) => {
  const target = (overrides: Partial<UpstreamTarget> = {}): UpstreamTarget => ({
    baseUrl: `${upstream.origin}/`,
    apiKey: Redacted.make("test-gemini-key"),
    headers: { "x-goog-api-client": "llm-proxy-test" },
    ...overrides
  })
  const provider = (overrides: Partial<UpstreamTarget> = {}) => make(target(overrides))
  const collect = (model: string) =>
    Effect.flatMap(provider(), (gemini) => Stream.runCollect(streamOf(gemini, request(model)))).pipe(
      Effect.map((chunks): ReadonlyArray<ChatCompletionChunk> => Chunk.toReadonlyArray(chunks))
    )
  const streamError = (model: string) => Effect.flip(collect(model))
  const completeError = (model: string) => Effect.flip(Effect.flatMap(provider(), (gemini) => gemini.complete(request(model))))
  return { upstream, provider, collect, streamError, completeError }
})

/** A test against the fake upstream; the client layer must outlive the provider built from it. */
const live = (name: string, test: () => Effect.Effect<void, unknown, Transport.UpstreamTransport | Scope.Scope>) =>
  it.scopedLive(name, () => Effect.provide(test(), Transport.layer()))

const contentOf = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? "")).join("")

describe("Gemini provider against a real HTTP upstream", () => {
  live("streams a recorded reply, sending the translated body to :streamGenerateContent?alt=sse with the key", () =>
    Effect.gen(function*() {
      const { upstream, collect } = yield* fakeGemini
      const chunks = yield* collect("gemini-2.0-flash")
      const expectedText = textStream.response.bodySegments
        .map((frame) => (frame as { candidates: Array<{ content: { parts: Array<{ text: string }> } }> }).candidates[0]!.content.parts[0]!.text)
        .join("")
      expect(contentOf(chunks)).toBe(expectedText)
      expect(chunks[0]?.choices[0]?.delta).toStrictEqual({ role: "assistant", content: "" })
      expect(chunks[0]?.id).toMatch(/^chatcmpl-/)
      expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
      expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 6, completion_tokens: 377, total_tokens: 383 })

      expect(upstream.calls).toHaveLength(1)
      const [sent] = upstream.calls
      expect(sent?.method).toBe("POST")
      expect(sent?.path).toBe(textStream.request.url)
      expect(sent?.path).toBe("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
      expect(sent?.headers["x-goog-api-key"]).toBe("test-gemini-key")
      expect(sent?.headers["x-goog-api-client"]).toBe("llm-proxy-test")
      expect(sent?.headers["content-type"]).toMatch(/^application\/json/)
      expect(sent?.headers["authorization"]).toBeUndefined()
      expect(sent?.headers["x-internal-auth"]).toBeUndefined()
      expect(sent?.body).toStrictEqual(textStream.request.bodySegments[0])
      expect(sent?.body).not.toHaveProperty("model")
    }))

  live("decodes a CRLF stream whose frames straddle TCP reads", () =>
    Effect.gen(function*() {
      const { collect } = yield* fakeGemini
      const chunks = yield* collect("reply-short-in-pieces")
      expect(contentOf(chunks)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter((r) => r !== null))
        .toStrictEqual(["stop"])
    }))

  live("sends nothing until the stream is pulled", () =>
    Effect.gen(function*() {
      const { upstream, provider } = yield* fakeGemini
      const gemini = yield* provider()
      const stream = streamOf(gemini, request("gemini-2.0-flash"))
      yield* Effect.sleep("20 millis")
      expect(upstream.calls).toHaveLength(0)
      yield* Stream.runDrain(stream)
      expect(upstream.calls).toHaveLength(1)
    }))

  live("completes through :generateContent, without alt=sse", () =>
    Effect.gen(function*() {
      const { upstream, provider } = yield* fakeGemini
      const gemini = yield* provider()
      const completion = yield* gemini.complete(request("gemini-2.0-flash", { temperature: 0.2, max_tokens: 64 }))
      expect(completion.choices[0]?.message.content).toBe(
        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
      )
      expect(completion.model).toBe("gemini-2.0-flash")
      expect(completion.usage).toStrictEqual({ prompt_tokens: 7, completion_tokens: 22, total_tokens: 29 })
      expect(upstream.calls[0]?.path).toBe("/v1beta/models/gemini-2.0-flash:generateContent")
      expect(upstream.calls[0]?.body).toMatchObject({ generationConfig: { temperature: 0.2, maxOutputTokens: 64 } })
    }))

  live("reports thinking as reasoning tokens in a completion", () =>
    Effect.gen(function*() {
      const { provider } = yield* fakeGemini
      const gemini = yield* provider()
      const completion = yield* gemini.complete(request("thinking"))
      expect(completion.choices[0]?.message.content).toBe("Mountain View")
      expect(completion.usage?.completion_tokens_details).toStrictEqual({ reasoning_tokens: 24 })
    }))

  live("omits the key header when the target has no key, and encodes the model in the path", () =>
    Effect.gen(function*() {
      const { upstream, provider } = yield* fakeGemini
      const gemini = yield* provider({ apiKey: undefined })
      yield* Effect.flip(gemini.complete(request("tuned/model x")))
      expect(upstream.calls[0]?.path).toBe("/v1beta/models/tuned%2Fmodel%20x:generateContent")
      expect(upstream.calls[0]?.headers["x-goog-api-key"]).toBeUndefined()
    }))

  live("fails a blocked prompt with ContentPolicy", () =>
    Effect.gen(function*() {
      const { streamError } = yield* fakeGemini
      const error = yield* streamError("prompt-blocked")
      expect(error.reason).toBe("ContentPolicy")
      expect(error.message).toContain("SAFETY")
    }))

  live("maps 429 RESOURCE_EXHAUSTED to RateLimited with retry-after, or with the body's RetryInfo", () =>
    Effect.gen(function*() {
      const { streamError, completeError } = yield* fakeGemini
      expect(yield* completeError("rate-limited")).toMatchObject({ reason: "RateLimited", status: 429, retryAfterMs: 7000 })
      expect(yield* streamError("rate-limited")).toMatchObject({ reason: "RateLimited", retryAfterMs: 7000 })
      expect(yield* completeError("rate-limited-retry-info")).toMatchObject({
        reason: "RateLimited",
        status: 429,
        retryAfterMs: 21_000,
        message: "You exceeded your current quota."
      })
    }))

  live("maps Gemini's 400 API_KEY_INVALID to Authentication", () =>
    Effect.gen(function*() {
      const { streamError, completeError } = yield* fakeGemini
      const error = yield* completeError("bad-key")
      expect(error).toMatchObject({
        reason: "Authentication",
        status: 400,
        provider: "gemini",
        message: "API key not valid. Please pass a valid API key."
      })
      expect((yield* streamError("bad-key")).reason).toBe("Authentication")
    }))

  live("maps a 404 labelled text/event-stream with a JSON body to NotFound", () =>
    Effect.gen(function*() {
      const { upstream, streamError } = yield* fakeGemini
      const error = yield* streamError("custom-gemini-2.0-flash")
      expect(error.reason).toBe("NotFound")
      expect(error.status).toBe(404)
      expect(error.message).toContain("models/custom-gemini-2.0-flash is not found")
      expect(upstream.calls[0]?.path).toBe(streamNotFound.request.url)
    }))

  live("maps 503 to Unavailable", () =>
    Effect.gen(function*() {
      const { streamError, completeError } = yield* fakeGemini
      expect(yield* completeError("overloaded")).toMatchObject({ reason: "Unavailable", status: 503 })
      expect(yield* streamError("overloaded")).toMatchObject({ reason: "Unavailable", status: 503 })
    }))

  live("fails a stream that ends without a finishReason, or whose socket drops, with Unavailable", () =>
    Effect.gen(function*() {
      const { streamError } = yield* fakeGemini
      const cutOff = yield* streamError("cut-off")
      expect(cutOff.reason).toBe("Unavailable")
      expect(cutOff.message).toContain("ended early")
      expect((yield* streamError("socket-dropped")).reason).toBe("Unavailable")
    }))

  live("fails a 2xx whose body is an error object with that error's reason", () =>
    Effect.gen(function*() {
      const { completeError } = yield* fakeGemini
      expect(yield* completeError("ok-with-error-body")).toMatchObject({
        reason: "InvalidRequest",
        status: 400,
        message: "Invalid JSON payload received."
      })
    }))

  live("rejects a tool message with an unknown tool_call_id before calling the upstream", () =>
    Effect.gen(function*() {
      const { upstream, provider } = yield* fakeGemini
      const gemini = yield* provider()
      const result = yield* Effect.either(gemini.complete(request("gemini-2.0-flash", {
        messages: [{ role: "user", content: "hi" }, { role: "tool", tool_call_id: "call_x", content: "1" }]
      })))
      expect(Either.isLeft(result) && result.left.reason).toBe("InvalidRequest")
      expect(upstream.calls).toHaveLength(0)
    }))
})
