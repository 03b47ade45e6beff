/**
 * The Gemini (Generative Language API) provider: `generateContent` for completions and
 * `streamGenerateContent?alt=sse` for streams, authenticated with `x-goog-api-key`.
 */
import { Clock, Effect, Option, Redacted, Stream } from "effect"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import type { Provider, ProviderError, UpstreamTarget } from "../Provider.js"
import { parseEventJson, postJson, readJson, sseEvents } from "../Upstream.js"
import type { UpstreamResponse } from "../Upstream.js"
import * as StreamTranslate from "./StreamTranslate.js"
import { errorFromBody, fromGeminiResponse, geminiErrorDetails, isErrorBody, provider, refineError, toGeminiRequest } from "./Translate.js"

/** Where Google's SDKs send Gemini Developer API calls. */
export const defaultBaseUrl = "https://generativelanguage.googleapis.com"

/**
 * Gemini answers an invalid key with 400 (ErrorInfo `API_KEY_INVALID`) and a rate limit with a RetryInfo delay in
 * the body rather than a `retry-after` header: the shared table sees only the status, so refine from the body.
 */
const post = (
  url: string,
  headers: Readonly<Record<string, string>>,
  body: unknown
): Effect.Effect<UpstreamResponse, ProviderError> =>
  postJson(provider, url, headers, body, (error, raw) => refineError(error, geminiErrorDetails(raw)))

const completionContext = (model: string) =>
  Effect.map(Clock.currentTimeMillis, (millis) => ({
    id: `chatcmpl-${crypto.randomUUID()}`,
    created: Math.floor(millis / 1000),
    model
  }))

const isEventStream = (response: UpstreamResponse): boolean =>
  (response.headers["content-type"] ?? "").toLowerCase().includes("text/event-stream")

/** The body of a 2xx stream response as parsed frames; a JSON (non-SSE) body is read whole. */
const frames = (response: UpstreamResponse): Stream.Stream<unknown, ProviderError> =>
  isEventStream(response)
    ? sseEvents(provider, response).pipe(
      Stream.filter((event) => event.data.trim().length > 0),
      Stream.mapEffect((event) => parseEventJson(provider, event.data))
    )
    : Stream.unwrap(
      Effect.map(readJson(provider, response), (body) => Stream.fromIterable(Array.isArray(body) ? body : [body]))
    )

/**
 * Builds the Gemini provider for one deployment. The API key goes in `x-goog-api-key` (never the client's key);
 * the model travels in the URL path, not in the body.
 */
export const make = (target: UpstreamTarget): Effect.Effect<Provider> =>
  Effect.gen(function*() {
    const baseUrl = target.baseUrl.replace(/\/+$/, "")
    const headers: Readonly<Record<string, string>> = {
      ...target.headers,
      ...(target.apiKey === undefined ? {} : { "x-goog-api-key": Redacted.value(target.apiKey) })
    }
    const modelUrl = (model: string, method: string) =>
      `${baseUrl}/v1beta/models/${encodeURIComponent(model)}:${method}`

    const complete = (request: ChatCompletionRequest) =>
      Effect.gen(function*() {
        const body = yield* toGeminiRequest(request)
        const ctx = yield* completionContext(request.model)
        const response = yield* post(modelUrl(request.model, "generateContent"), headers, body)
        const json = yield* readJson(provider, response)
        if (isErrorBody(json)) return yield* Effect.fail(errorFromBody(json, response.status))
        return yield* fromGeminiResponse(json, ctx)
      }).pipe(Effect.withSpan("Gemini.complete"))

    const stream = (request: ChatCompletionRequest) =>
      Stream.unwrap(
        Effect.gen(function*() {
          const body = yield* toGeminiRequest(request)
          const ctx = yield* completionContext(request.model)
          const response = yield* post(`${modelUrl(request.model, "streamGenerateContent")}?alt=sse`, headers, body)
          // Option.none() marks the end of the upstream, where `finish` runs on the final state.
          const framesThenEnd = Stream.concat(Stream.map(frames(response), Option.some), Stream.succeed(Option.none<unknown>()))
          return framesThenEnd.pipe(
            Stream.mapAccumEffect(StreamTranslate.initial(ctx), (state, frame) =>
              Option.isSome(frame)
                ? StreamTranslate.step(state, frame.value)
                : Effect.map(StreamTranslate.finish(state), (chunks) => [state, chunks] as const)),
            Stream.flattenIterables
          )
        })
      )

    return { complete, stream } satisfies Provider
  })
