import * as Transport from "../../../src/Providers/Upstream/Transport.js"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import type { Scope } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import { make } from "../../../src/Providers/Gemini/Provider.js"
import { streamOf } from "../../../src/Providers/Provider.js"
import type { UpstreamTarget } from "../../../src/Providers/Provider.js"
import { Gemini, json, sse, startUpstream, text } from "../../support/FakeUpstreams.js"
import type { Reply, UpstreamCall } from "../../support/FakeUpstreams.js"

const textStream = Gemini.recording("Chats_Tests_sendMessage_Google_AI_with_text_stream").interactions[0]!
const streamNotFound = Gemini.recording("Chats_Tests_sendMessage_Send_message_stream_with_error").interactions[0]!
const textStreamFrames = Gemini.recordedStreamFrames("Chats_Tests_sendMessage_Google_AI_with_text_stream")

/** A recorded stream body that is a bare JSON error (vertexai-sdk-test-data). */
const imageRejected = readFileSync(
  fileURLToPath(new URL("../../fixtures/gemini/vertexai-sdk-test-data/googleai/streaming-failure-image-rejected.txt", import.meta.url)),
  "utf8"
)

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
    case "bare-error-stream":
      return text(200, imageRejected, "text/event-stream")
    case "error-after-frames":
      return sse(
        [
          ...inPieces(Gemini.googleAiText("streaming-success-basic-reply-short.txt").replace(/,\s*"finishReason": "STOP"/, ""), 40),
          `${JSON.stringify({ error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }, null, 2)}\n`
        ],
        asStreamed
      )
    case "invalid-argument-400":
      return Gemini.error(400, "Invalid value at 'contents[0]'", "INVALID_ARGUMENT", jsonHeaders)
    case "status-less-400":
      return json({ error: { code: 400, message: "Bad request." } }, { status: 400, headers: jsonHeaders })
    case "html-400":
      return text(400, "<html>Bad Request</html>", "text/html")
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

  live("ends a stream that closes cleanly after content without a finishReason with stop, but fails one whose socket drops", () =>
    Effect.gen(function*() {
      const { collect, streamError } = yield* fakeGemini
      const cutOff = yield* collect("cut-off")
      expect(contentOf(cutOff).length).toBeGreaterThan(0)
      expect(cutOff.flatMap((chunk) => chunk.choices.flatMap((choice) => (choice.finish_reason === null ? [] : [choice.finish_reason])))).toStrictEqual(["stop"])
      const dropped = yield* streamError("socket-dropped")
      expect(dropped.reason).toBe("Unavailable")
      expect(dropped.message).toContain("broke off")
    }))

  live("fails a 200 stream whose recorded body is a bare JSON error with that error's status and Google's code", () =>
    Effect.gen(function*() {
      const { streamError } = yield* fakeGemini
      expect(yield* streamError("bare-error-stream")).toMatchObject({
        reason: "InvalidRequest",
        status: 400,
        code: "INVALID_ARGUMENT",
        message: "Request contains an invalid argument."
      })
    }))

  live("fails a stream with a JSON error appended after its last data: frame, after the content it sent", () =>
    Effect.gen(function*() {
      const { provider } = yield* fakeGemini
      const gemini = yield* provider()
      const items: Array<ChatCompletionChunk> = []
      const outcome = yield* Effect.either(
        Stream.runForEach(streamOf(gemini, request("error-after-frames")), (chunk) => Effect.sync(() => items.push(chunk)))
      )
      expect(contentOf(items)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      // Nothing says the answer finished: the failure comes instead of the finish reason.
      expect(items.some((chunk) => chunk.choices.some((choice) => choice.finish_reason !== null))).toBe(false)
      expect(Either.isLeft(outcome) ? outcome.left : undefined).toMatchObject({ reason: "Unavailable", status: 503, code: "UNAVAILABLE" })
    }))

  live("answers error envelopes' code with Google's status name, or null", () =>
    Effect.gen(function*() {
      const { completeError, streamError } = yield* fakeGemini
      expect(yield* completeError("overloaded")).toMatchObject({ status: 503, code: "UNAVAILABLE" })
      expect(yield* completeError("no-such-model")).toMatchObject({ reason: "NotFound", code: "NOT_FOUND" })
      expect(yield* streamError("invalid-argument-400")).toMatchObject({ reason: "InvalidRequest", status: 400, code: "INVALID_ARGUMENT" })
      expect(yield* completeError("status-less-400")).toMatchObject({ reason: "InvalidRequest", status: 400, code: null })
      expect(yield* completeError("html-400")).toMatchObject({ reason: "InvalidRequest", status: 400, code: null })
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
