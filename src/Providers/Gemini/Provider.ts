/**
 * The Gemini (Generative Language API) provider: `generateContent` for completions and
 * `streamGenerateContent?alt=sse` for streams, authenticated with `x-goog-api-key`.
 */
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { Clock, Effect, Option, Redacted, Stream } from "effect"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import type { Provider, ProviderError, UpstreamTarget } from "../Provider.js"
import { parseEventJson, postJson, readJson, sseEvents } from "../Upstream.js"
import * as StreamTranslate from "./StreamTranslate.js"
import { errorFromBody, fromGeminiResponse, geminiErrorDetails, isErrorBody, provider, refineError, toGeminiRequest } from "./Translate.js"
import type { GeminiErrorDetails } from "./Translate.js"

/** Where Google's SDKs send Gemini Developer API calls. */
export const defaultBaseUrl = "https://generativelanguage.googleapis.com"

const parseJsonOrUndefined = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * Sends one request through `postJson`, reading Gemini's `error.details` on the way: the shared table sees only
 * the status, and Gemini answers an invalid key with 400 (ErrorInfo `API_KEY_INVALID`) and a rate limit with a
 * RetryInfo delay in the body rather than a `retry-after` header.
 */
const post = (
  client: HttpClient.HttpClient,
  url: string,
  headers: Readonly<Record<string, string>>,
  body: unknown
): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
  Effect.suspend(() => {
    let details: GeminiErrorDetails = {}
    // An error body can be read only once: buffer it, note its details, and hand postJson an equivalent response.
    const buffering = HttpClient.transformResponse(client, (effect) =>
      Effect.flatMap(effect, (response) =>
        response.status >= 200 && response.status < 300
          ? Effect.succeed(response)
          : response.text.pipe(
            Effect.orElseSucceed(() => ""),
            Effect.map((text) => {
              details = geminiErrorDetails(parseJsonOrUndefined(text))
              return HttpClientResponse.fromWeb(
                response.request,
                new Response(text, { status: response.status, headers: response.headers })
              )
            })
          )
      ))
    return postJson(buffering, provider, url, headers, body).pipe(Effect.mapError((error) => refineError(error, details)))
  })

const completionContext = (model: string) =>
  Effect.map(Clock.currentTimeMillis, (millis) => ({
    id: `chatcmpl-${crypto.randomUUID()}`,
    created: Math.floor(millis / 1000),
    model
  }))

const isEventStream = (response: HttpClientResponse.HttpClientResponse): boolean =>
  (response.headers["content-type"] ?? "").toLowerCase().includes("text/event-stream")

/** The body of a 2xx stream response as parsed frames; a JSON (non-SSE) body is read whole. */
const frames = (response: HttpClientResponse.HttpClientResponse): Stream.Stream<unknown, ProviderError> =>
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
export const make = (target: UpstreamTarget): Effect.Effect<Provider, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
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
        const response = yield* post(client, modelUrl(request.model, "generateContent"), headers, body)
        const json = yield* readJson(provider, response)
        if (isErrorBody(json)) return yield* Effect.fail(errorFromBody(json, response.status))
        return yield* fromGeminiResponse(json, ctx)
      }).pipe(Effect.withSpan("Gemini.complete"))

    const stream = (request: ChatCompletionRequest) =>
      Stream.unwrap(
        Effect.gen(function*() {
          const body = yield* toGeminiRequest(request)
          const ctx = yield* completionContext(request.model)
          const response = yield* post(client, `${modelUrl(request.model, "streamGenerateContent")}?alt=sse`, headers, body)
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
