import * as Transport from "../../../src/Providers/Upstream/Transport.js"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { IncomingHttpHeaders, Server, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../../src/OpenAi/Schemas.js"
import { make } from "../../../src/Providers/Gemini/Provider.js"
import { streamOf } from "../../../src/Providers/Provider.js"
import type { UpstreamTarget } from "../../../src/Providers/Provider.js"
import type { GeminiRecording } from "../../support/FakeUpstreams.js"

const fixtures = fileURLToPath(new URL("../../fixtures/gemini/", import.meta.url))
const googleai = (name: string): string => readFileSync(`${fixtures}vertexai-sdk-test-data/googleai/${name}`, "utf8")

const recording = (name: string): GeminiRecording =>
  JSON.parse(readFileSync(`${fixtures}js-genai-recordings/${name}.json`, "utf8")) as GeminiRecording
const textStream = recording("Chats_Tests_sendMessage_Google_AI_with_text_stream").interactions[0]!
const streamNotFound = recording("Chats_Tests_sendMessage_Send_message_stream_with_error").interactions[0]!

/** What the fake Gemini saw of one request. */
interface Captured {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly body: unknown
}

const sse = (frames: ReadonlyArray<unknown>): string => frames.map((frame) => `data: ${JSON.stringify(frame)}\r\n\r\n`).join("")

/** Writes `body` a few bytes at a time so that frames (and their CRLFs) straddle TCP reads. */
const writeInPieces = async (res: ServerResponse, body: string, pieceSize: number): Promise<void> => {
  for (let at = 0; at < body.length; at += pieceSize) {
    res.write(body.slice(at, at + pieceSize))
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  res.end()
}

const json = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", ...headers })
  res.end(body)
}

const eventStream = (res: ServerResponse, status = 200) =>
  res.writeHead(status, { "content-type": "text/event-stream", "content-disposition": "attachment" })

/** A fake Generative Language API: the model name in the path picks the recorded answer. */
const answer = (model: string, method: string, res: ServerResponse): void => {
  switch (model) {
    case "gemini-2.0-flash":
      if (method === "generateContent") return json(res, 200, googleai("unary-success-basic-reply-short.json"))
      eventStream(res)
      res.end(sse(textStream.response.bodySegments))
      return
    case "reply-short-in-pieces":
      eventStream(res)
      void writeInPieces(res, googleai("streaming-success-basic-reply-short.txt"), 13)
      return
    case "thinking":
      return json(res, 200, googleai("unary-success-thinking-reply-thought-summary.json"))
    case "prompt-blocked":
      eventStream(res)
      res.end(googleai("streaming-failure-prompt-blocked-safety.txt"))
      return
    case "rate-limited":
      return json(
        res,
        429,
        JSON.stringify({ error: { code: 429, message: "Resource has been exhausted (e.g. check quota).", status: "RESOURCE_EXHAUSTED" } }),
        { "retry-after": "7" }
      )
    case "rate-limited-retry-info":
      return json(
        res,
        429,
        JSON.stringify({
          error: {
            code: 429,
            message: "You exceeded your current quota.",
            status: "RESOURCE_EXHAUSTED",
            details: [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "21s" }]
          }
        })
      )
    case "bad-key":
      return json(res, 400, googleai("unary-failure-api-key.json"))
    case "custom-gemini-2.0-flash":
      // Recorded: a 404 labelled text/event-stream whose body is a plain JSON error.
      res.writeHead(streamNotFound.response.statusCode, { "content-type": streamNotFound.response.headers["Content-Type"]! })
      res.end(JSON.stringify(streamNotFound.response.bodySegments[0]))
      return
    case "overloaded":
      return json(res, 503, JSON.stringify({ error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }))
    case "cut-off":
      eventStream(res)
      res.end(googleai("streaming-success-basic-reply-long.txt").split("\r\n\r\n").slice(0, 3).join("\r\n\r\n") + "\r\n\r\n")
      return
    case "socket-dropped":
      eventStream(res)
      res.write(sse(textStream.response.bodySegments.slice(0, 2)))
      setTimeout(() => res.destroy(), 20)
      return
    case "ok-with-error-body":
      return json(res, 200, JSON.stringify({ error: { code: 400, message: "Invalid JSON payload received.", status: "INVALID_ARGUMENT" } }))
    default:
      return json(res, 404, JSON.stringify({ error: { code: 404, message: `models/${model} is not found`, status: "NOT_FOUND" } }))
  }
}

let server: Server
let baseUrl = ""
const captured: Array<Captured> = []

beforeAll(async () => {
  server = createServer((req, res) => {
    const pieces: Array<Buffer> = []
    req.on("data", (piece: Buffer) => pieces.push(piece))
    req.on("end", () => {
      const text = Buffer.concat(pieces).toString("utf8")
      captured.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: text === "" ? undefined : JSON.parse(text) })
      const match = /^\/v1beta\/models\/([^:/]+):(generateContent|streamGenerateContent)(\?.*)?$/.exec(req.url ?? "")
      if (match === null) return json(res, 404, JSON.stringify({ error: { code: 404, message: "no route", status: "NOT_FOUND" } }))
      answer(decodeURIComponent(match[1]!), match[2]!, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

beforeEach(() => {
  captured.length = 0
})

const target = (overrides: Partial<UpstreamTarget> = {}): UpstreamTarget => ({
  baseUrl: `${baseUrl}/`,
  apiKey: Redacted.make("test-gemini-key"),
  headers: { "x-goog-api-client": "llm-proxy-test" },
  ...overrides
})

const request = (model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model,
  messages: [{ role: "user", content: "why is the sky blue?" }],
  ...extra
})

const provider = (overrides: Partial<UpstreamTarget> = {}) => make(target(overrides))

/** A test against the fake upstream; the client layer must outlive the provider built from it. */
const live = (name: string, test: () => Effect.Effect<void, unknown, Transport.UpstreamTransport>) =>
  it.live(name, () => Effect.provide(test(), Transport.layer()))

const collect = (model: string) =>
  Effect.flatMap(provider(), (gemini) => Stream.runCollect(streamOf(gemini, request(model)))).pipe(
    Effect.map((chunks): ReadonlyArray<ChatCompletionChunk> => Chunk.toReadonlyArray(chunks))
  )
const contentOf = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? "")).join("")

const streamError = (model: string) => Effect.flip(collect(model))
const completeError = (model: string) => Effect.flip(Effect.flatMap(provider(), (gemini) => gemini.complete(request(model))))

describe("Gemini provider against a real HTTP upstream", () => {
  live("streams a recorded reply, sending the translated body to :streamGenerateContent?alt=sse with the key", () =>
    Effect.gen(function*() {
      const chunks = yield* collect("gemini-2.0-flash")
      const expectedText = textStream.response.bodySegments
        .map((frame) => (frame as { candidates: Array<{ content: { parts: Array<{ text: string }> } }> }).candidates[0]!.content.parts[0]!.text)
        .join("")
      expect(contentOf(chunks)).toBe(expectedText)
      expect(chunks[0]?.choices[0]?.delta).toStrictEqual({ role: "assistant", content: "" })
      expect(chunks[0]?.id).toMatch(/^chatcmpl-/)
      expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
      expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 6, completion_tokens: 377, total_tokens: 383 })

      expect(captured).toHaveLength(1)
      const [sent] = captured
      expect(sent?.method).toBe("POST")
      expect(sent?.url).toBe(textStream.request.url)
      expect(sent?.url).toBe("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
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
      const chunks = yield* collect("reply-short-in-pieces")
      expect(contentOf(chunks)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter((r) => r !== null))
        .toStrictEqual(["stop"])
    }))

  live("sends nothing until the stream is pulled", () =>
    Effect.gen(function*() {
      const gemini = yield* provider()
      const stream = streamOf(gemini, request("gemini-2.0-flash"))
      yield* Effect.sleep("20 millis")
      expect(captured).toHaveLength(0)
      yield* Stream.runDrain(stream)
      expect(captured).toHaveLength(1)
    }))

  live("completes through :generateContent, without alt=sse", () =>
    Effect.gen(function*() {
      const gemini = yield* provider()
      const completion = yield* gemini.complete(request("gemini-2.0-flash", { temperature: 0.2, max_tokens: 64 }))
      expect(completion.choices[0]?.message.content).toBe(
        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
      )
      expect(completion.model).toBe("gemini-2.0-flash")
      expect(completion.usage).toStrictEqual({ prompt_tokens: 7, completion_tokens: 22, total_tokens: 29 })
      expect(captured[0]?.url).toBe("/v1beta/models/gemini-2.0-flash:generateContent")
      expect(captured[0]?.body).toMatchObject({ generationConfig: { temperature: 0.2, maxOutputTokens: 64 } })
    }))

  live("reports thinking as reasoning tokens in a completion", () =>
    Effect.gen(function*() {
      const gemini = yield* provider()
      const completion = yield* gemini.complete(request("thinking"))
      expect(completion.choices[0]?.message.content).toBe("Mountain View")
      expect(completion.usage?.completion_tokens_details).toStrictEqual({ reasoning_tokens: 24 })
    }))

  live("omits the key header when the target has no key, and encodes the model in the path", () =>
    Effect.gen(function*() {
      const gemini = yield* provider({ apiKey: undefined })
      yield* Effect.flip(gemini.complete(request("tuned/model x")))
      expect(captured[0]?.url).toBe("/v1beta/models/tuned%2Fmodel%20x:generateContent")
      expect(captured[0]?.headers["x-goog-api-key"]).toBeUndefined()
    }))

  live("fails a blocked prompt with ContentPolicy", () =>
    Effect.gen(function*() {
      const error = yield* streamError("prompt-blocked")
      expect(error.reason).toBe("ContentPolicy")
      expect(error.message).toContain("SAFETY")
    }))

  live("maps 429 RESOURCE_EXHAUSTED to RateLimited with retry-after, or with the body's RetryInfo", () =>
    Effect.gen(function*() {
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
      const error = yield* streamError("custom-gemini-2.0-flash")
      expect(error.reason).toBe("NotFound")
      expect(error.status).toBe(404)
      expect(error.message).toContain("models/custom-gemini-2.0-flash is not found")
      expect(captured[0]?.url).toBe(streamNotFound.request.url)
    }))

  live("maps 503 to Unavailable", () =>
    Effect.gen(function*() {
      expect(yield* completeError("overloaded")).toMatchObject({ reason: "Unavailable", status: 503 })
      expect(yield* streamError("overloaded")).toMatchObject({ reason: "Unavailable", status: 503 })
    }))

  live("fails a stream that ends without a finishReason, or whose socket drops, with Unavailable", () =>
    Effect.gen(function*() {
      const cutOff = yield* streamError("cut-off")
      expect(cutOff.reason).toBe("Unavailable")
      expect(cutOff.message).toContain("ended early")
      expect((yield* streamError("socket-dropped")).reason).toBe("Unavailable")
    }))

  live("fails a 2xx whose body is an error object with that error's reason", () =>
    Effect.gen(function*() {
      expect(yield* completeError("ok-with-error-body")).toMatchObject({
        reason: "InvalidRequest",
        status: 400,
        message: "Invalid JSON payload received."
      })
    }))

  live("rejects a tool message with an unknown tool_call_id before calling the upstream", () =>
    Effect.gen(function*() {
      const gemini = yield* provider()
      const result = yield* Effect.either(gemini.complete(request("gemini-2.0-flash", {
        messages: [{ role: "user", content: "hi" }, { role: "tool", tool_call_id: "call_x", content: "1" }]
      })))
      expect(Either.isLeft(result) && result.left.reason).toBe("InvalidRequest")
      expect(captured).toHaveLength(0)
    }))
})
