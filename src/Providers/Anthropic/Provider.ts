/**
 * The Anthropic Messages API as a `Provider`: translate, `POST /v1/messages`, translate back. Anthropic has no
 * embeddings API: an embeddings request routed here is refused with a 400 that says so.
 */
import { Clock, Effect, Either, Layer, Redacted } from "effect"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import { chunksOfCompletion } from "../../OpenAi/Wire.js"
import { fromItems } from "../ChunkSource.js"
import { cannotEmbed, ChatProvider, ProviderError } from "../Provider.js"
import type { Deadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource, parseEventData, runMachine } from "../Upstream/EventSource.js"
import type { SseEvent } from "../Upstream/SseDecoder.js"
import { discard, malformed, mediaTypeOf, postJson, readJson, UpstreamTransport } from "../Upstream/Transport.js"
import { makeNative } from "./Native.js"
import { providerName, responseFormatToolName, toAnthropicRequest } from "./Request.js"
import { decodeAnthropicMessage, fromAnthropicMessage } from "./Response.js"
import type { CompletionContext } from "./Response.js"
import * as StreamTranslate from "./StreamTranslate.js"

/** Anthropic's API root, as its SDK spells it (without `/v1`). */
export const defaultBaseUrl = "https://api.anthropic.com"

const anthropicVersion = "2023-06-01"

/**
 * An error answer's code is Anthropic's error type (`invalid_request_error`, `overloaded_error`…), or null: the
 * shared table reads `error.code`, which Anthropic's body does not have.
 */
export const refineError = (error: ProviderError, body: unknown): ProviderError => {
  const inner = typeof body === "object" && body !== null && "error" in body ? body.error : undefined
  const type = typeof inner === "object" && inner !== null && "type" in inner ? inner.type : undefined
  return new ProviderError({
    reason: error.reason,
    message: error.message,
    provider: error.provider,
    status: error.status,
    retryAfterMs: error.retryAfterMs,
    param: error.param,
    code: typeof type === "string" && /^[a-z][a-z_]{0,63}$/.test(type) ? type : null
  })
}

const refuseEmbeddings = cannotEmbed(providerName, "Anthropic's API has no embeddings endpoint")

/** How a deployment talks to Anthropic. */
export interface AnthropicOptions {
  /** Fills Anthropic's required `max_tokens` when the request sets neither `max_completion_tokens` nor `max_tokens`. */
  readonly defaultMaxTokens?: number
}

/** Builds a provider for one Anthropic deployment, on the injected upstream transport. */
export const make = (target: UpstreamTarget, options?: AnthropicOptions): Effect.Effect<Provider, never, UpstreamTransport> =>
  Effect.map(UpstreamTransport, (transport): Provider => {
    const translateOptions = { defaultMaxTokens: options?.defaultMaxTokens ?? 4096 }
    const endpoint = {
      provider: providerName,
      url: `${target.baseUrl.replace(/\/+$/, "")}/v1/messages`,
      headers: {
        "anthropic-version": anthropicVersion,
        ...target.headers,
        "content-type": "application/json",
        ...(target.apiKey !== undefined ? { "x-api-key": Redacted.value(target.apiKey) } : {})
      }
    }

    const context = (request: ChatCompletionRequest) =>
      Effect.map(
        Clock.currentTimeMillis,
        (millis): CompletionContext => ({
          id: `chatcmpl-${crypto.randomUUID()}`,
          created: Math.floor(millis / 1000),
          model: request.model,
          responseFormatTool: responseFormatToolName(request)
        })
      )

    const complete = (request: ChatCompletionRequest, deadline?: Deadline) =>
      Effect.gen(function* () {
        const body = yield* toAnthropicRequest(request, translateOptions)
        const response = yield* postJson(transport, endpoint, JSON.stringify(body), deadline, refineError)
        const message = yield* Effect.flatMap(readJson(transport, providerName, response, deadline), decodeAnthropicMessage)
        return fromAnthropicMessage(message, yield* context(request))
      })

    const open = (request: ChatCompletionRequest, deadline?: Deadline) =>
      Effect.gen(function* () {
        const body = yield* toAnthropicRequest(request, translateOptions)
        const ctx = yield* context(request)
        const response = yield* postJson(transport, endpoint, JSON.stringify({ ...body, stream: true }), deadline, refineError)
        const media = mediaTypeOf(response)
        if (media === "application/json") {
          // An upstream that answered the whole message: told as the stream it would have sent.
          const message = yield* Effect.flatMap(readJson(transport, providerName, response, deadline), decodeAnthropicMessage)
          return fromItems(chunksOfCompletion(fromAnthropicMessage(message, ctx)))
        }
        if (media !== "text/event-stream" && media !== "") {
          discard(response.body)
          return yield* Effect.fail(malformed(providerName, `a ${media.slice(0, 60)} body to a stream request`))
        }
        const machine = runMachine(
          StreamTranslate.initialState(ctx),
          (state, event: SseEvent) =>
            Either.flatMap(parseEventData(providerName, event.data), (data) => StreamTranslate.step(state, { event: event.event, data })),
          (state) => Either.map(StreamTranslate.finish(state), ([, chunks]) => chunks)
        )
        return eventSource(transport, providerName, response, machine.feedAll, machine.atEnd)
      })

    return { complete, open, embed: refuseEmbeddings, messages: makeNative(transport, endpoint, refineError) }
  })

/** One Anthropic deployment as a `ChatProvider` layer. */
export const layer = (target: UpstreamTarget, options?: AnthropicOptions): Layer.Layer<ChatProvider, never, UpstreamTransport> =>
  Layer.effect(ChatProvider, make(target, options))
