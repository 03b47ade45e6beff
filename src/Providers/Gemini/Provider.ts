/**
 * The Gemini (Generative Language API) provider: `generateContent` for completions and
 * `streamGenerateContent?alt=sse` for streams, authenticated with `x-goog-api-key`.
 */
import { Clock, Effect, Either, Redacted } from "effect"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import { fromItems } from "../ChunkSource.js"
import { ProviderError } from "../Provider.js"
import type { AttemptDeadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource, parseEventData, postJson, readJson, runMachine, streamFromOpen } from "../Upstream.js"
import type { SseEvent, UpstreamResponse } from "../Upstream.js"
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
  body: unknown,
  deadline: AttemptDeadline | undefined
): Effect.Effect<UpstreamResponse, ProviderError> =>
  postJson(provider, url, headers, body, (error, raw) => refineError(error, geminiErrorDetails(raw)), deadline)

const completionContext = (model: string) =>
  Effect.map(Clock.currentTimeMillis, (millis) => ({
    id: `chatcmpl-${crypto.randomUUID()}`,
    created: Math.floor(millis / 1000),
    model
  }))

const isEventStream = (response: UpstreamResponse): boolean =>
  (response.headers["content-type"] ?? "").toLowerCase().includes("text/event-stream")

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

    const completeBy = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      Effect.gen(function*() {
        const body = yield* toGeminiRequest(request)
        const ctx = yield* completionContext(request.model)
        const response = yield* post(modelUrl(request.model, "generateContent"), headers, body, deadline)
        const json = yield* readJson(provider, response, deadline)
        if (isErrorBody(json)) return yield* Effect.fail(errorFromBody(json, response.status))
        return yield* fromGeminiResponse(json, ctx)
      }).pipe(Effect.withSpan("Gemini.complete"))

    const open = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      Effect.gen(function*() {
        const body = yield* toGeminiRequest(request)
        const ctx = yield* completionContext(request.model)
        const response = yield* post(`${modelUrl(request.model, "streamGenerateContent")}?alt=sse`, headers, body, deadline)
        if (!isEventStream(response)) {
          // A JSON (non-SSE) body, e.g. an upstream that ignored alt=sse: its frames are read whole.
          const json = yield* readJson(provider, response, deadline)
          const whole = runMachine(StreamTranslate.initial(ctx), StreamTranslate.step, StreamTranslate.finish)
          const batch = whole.feedAll(Array.isArray(json) ? json : [json])
          if (batch instanceof ProviderError) return yield* Effect.fail(batch)
          const last = yield* whole.finish()
          return fromItems([...batch.items, ...last])
        }
        const machine = runMachine(
          StreamTranslate.initial(ctx),
          (state, event: SseEvent) =>
            event.data.trim().length === 0
              ? Either.right([state, []] as const)
              : Either.flatMap(parseEventData(provider, event.data), (frame) => StreamTranslate.step(state, frame)),
          StreamTranslate.finish
        )
        return eventSource(provider, response, machine.feedAll, machine.atEnd)
      })

    return { complete: (request) => completeBy(request), completeBy, stream: streamFromOpen(open), open } satisfies Provider
  })
