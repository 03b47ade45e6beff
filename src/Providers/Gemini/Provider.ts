/**
 * The Gemini (Generative Language API) provider: `generateContent` for completions,
 * `streamGenerateContent?alt=sse` for streams and `batchEmbedContents` for embeddings, authenticated with
 * `x-goog-api-key`.
 */
import { Clock, Effect, Either, Layer, Redacted } from "effect"
import type { EmbeddingRequest } from "../../OpenAi/Embeddings.js"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import { fromItems } from "../ChunkSource.js"
import { ChatProvider, ProviderError } from "../Provider.js"
import type { Deadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource, parseEventData, runMachine } from "../Upstream/EventSource.js"
import type { SseEvent } from "../Upstream/SseDecoder.js"
import { discard, malformed, mediaTypeOf, postJson, readJson, UpstreamTransport } from "../Upstream/Transport.js"
import type { TransportService } from "../Upstream/Transport.js"
import { toGeminiEmbedBatches, vectorsOfGemini } from "./Embed.js"
import type { GeminiBatchEmbedBody } from "./Embed.js"
import { errorFromBody, geminiErrorDetails, isErrorBody, provider, refineError } from "./Errors.js"
import { toGeminiRequest } from "./Request.js"
import { fromGeminiResponse } from "./Response.js"
import * as StreamTranslate from "./StreamTranslate.js"
import { makeUnframedText } from "./Unframed.js"

/** Where Google's SDKs send Gemini Developer API calls. */
export const defaultBaseUrl = "https://generativelanguage.googleapis.com"

/**
 * Gemini answers an invalid key with 400 (ErrorInfo `API_KEY_INVALID`) and a rate limit with a RetryInfo delay in
 * the body rather than a `retry-after` header: the shared table sees only the status, so refine from the body.
 */
const refine = (error: ProviderError, raw: unknown) => refineError(error, geminiErrorDetails(raw))

const completionContext = (model: string) =>
  Effect.map(Clock.currentTimeMillis, (millis) => ({
    id: `chatcmpl-${crypto.randomUUID()}`,
    created: Math.floor(millis / 1000),
    model
  }))

/**
 * Builds the Gemini provider for one deployment, on the injected upstream transport. The API key goes in
 * `x-goog-api-key` (never the client's key); the model travels in the URL path, not in the body.
 */
export const make = (target: UpstreamTarget): Effect.Effect<Provider, never, UpstreamTransport> =>
  Effect.map(UpstreamTransport, (transport: TransportService): Provider => {
    const baseUrl = target.baseUrl.replace(/\/+$/, "")
    const headers: Readonly<Record<string, string>> = {
      ...target.headers,
      "content-type": "application/json",
      ...(target.apiKey === undefined ? {} : { "x-goog-api-key": Redacted.value(target.apiKey) })
    }
    const endpoint = (model: string, method: string) => ({
      provider,
      url: `${baseUrl}/v1beta/models/${encodeURIComponent(model)}:${method}`,
      headers
    })

    const complete = (request: ChatCompletionRequest, deadline?: Deadline) =>
      Effect.gen(function* () {
        const body = yield* toGeminiRequest(request)
        const ctx = yield* completionContext(request.model)
        const response = yield* postJson(transport, endpoint(request.model, "generateContent"), JSON.stringify(body), deadline, refine)
        const json = yield* readJson(transport, provider, response, deadline)
        if (isErrorBody(json)) return yield* Effect.fail(errorFromBody(json, response.status))
        return yield* fromGeminiResponse(json, ctx)
      })

    const open = (request: ChatCompletionRequest, deadline?: Deadline) =>
      Effect.gen(function* () {
        const body = yield* toGeminiRequest(request)
        const ctx = yield* completionContext(request.model)
        const call = endpoint(request.model, "streamGenerateContent")
        const response = yield* postJson(transport, { ...call, url: `${call.url}?alt=sse` }, JSON.stringify(body), deadline, refine)
        const media = mediaTypeOf(response)
        if (media === "application/json") {
          // A JSON (non-SSE) body, e.g. an upstream that ignored alt=sse: its frames are read whole.
          const json = yield* readJson(transport, provider, response, deadline)
          const whole = runMachine(StreamTranslate.initial(ctx), StreamTranslate.step, StreamTranslate.finish)
          const batch = whole.feedAll(Array.isArray(json) ? json : [json])
          if (batch instanceof ProviderError) return yield* Effect.fail(batch)
          const last = yield* whole.finish()
          return fromItems([...batch.items, ...last])
        }
        if (media !== "text/event-stream" && media !== "") {
          discard(response.body)
          return yield* Effect.fail(malformed(provider, `a ${media.slice(0, 60)} body to a stream request`))
        }
        const machine = runMachine(
          StreamTranslate.initial(ctx),
          (state, event: SseEvent) =>
            event.data.trim().length === 0
              ? Either.right([state, []] as const)
              : Either.flatMap(parseEventData(provider, event.data), (frame) => StreamTranslate.step(state, frame)),
          StreamTranslate.finish
        )
        // The body's text is also read for lines outside any SSE frame: a bare JSON error after the last frame.
        // This listener is added first, so it has seen every piece by the time the stream's end is handled.
        const unframed = makeUnframedText()
        const utf8 = new TextDecoder()
        response.body.on("data", (piece: Uint8Array) => unframed.feed(utf8.decode(piece, { stream: true })))
        const atEnd = () => {
          unframed.feed(utf8.decode())
          return unframed.failure() ?? machine.atEnd()
        }
        return eventSource(transport, provider, response, machine.feedAll, atEnd)
      })

    /** One `batchEmbedContents` call: its vectors, in order. */
    const embedBatch = (model: string, batch: GeminiBatchEmbedBody, deadline: Deadline | undefined) =>
      Effect.gen(function* () {
        const response = yield* postJson(transport, endpoint(model, "batchEmbedContents"), JSON.stringify(batch), deadline, refine)
        const json = yield* readJson(transport, provider, response, deadline)
        if (isErrorBody(json)) return yield* Effect.fail(errorFromBody(json, response.status))
        const vectors = vectorsOfGemini(json, batch.requests.length)
        return typeof vectors === "string" ? yield* Effect.fail(malformed(provider, vectors)) : vectors
      })

    // Gemini reports no usage for embeddings: the core counts the prompt tokens.
    const embed = (request: EmbeddingRequest, deadline?: Deadline) =>
      Effect.gen(function* () {
        const batches = yield* toGeminiEmbedBatches(request)
        // Batches of 100 texts: a few at a time, and the first failure aborts the others.
        const parts = yield* Effect.forEach(batches, (batch) => embedBatch(request.model, batch, deadline), { concurrency: 4 })
        return { vectors: parts.flat(), usage: undefined }
      })

    return { complete, open, embed }
  })

/** One Gemini deployment as a `ChatProvider` layer. */
export const layer = (target: UpstreamTarget): Layer.Layer<ChatProvider, never, UpstreamTransport> => Layer.effect(ChatProvider, make(target))
