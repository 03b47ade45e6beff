/**
 * The Anthropic Messages API as a `Provider`: translate, `POST /v1/messages`, translate back.
 */
import { Clock, Effect, Either, Redacted } from "effect"
import type { ChatCompletionRequest } from "../../OpenAi/Schemas.js"
import type { AttemptDeadline, Provider, UpstreamTarget } from "../Provider.js"
import { eventSource, parseEventData, postJson, readJson, runMachine, streamFromOpen } from "../Upstream.js"
import type { SseEvent } from "../Upstream.js"
import * as StreamTranslate from "./StreamTranslate.js"
import {
  decodeAnthropicMessage,
  fromAnthropicMessage,
  providerName,
  responseFormatToolName,
  toAnthropicRequest
} from "./Translate.js"
import type { CompletionContext } from "./Translate.js"

/** Anthropic's API root, as its SDK spells it (without `/v1`). */
export const defaultBaseUrl = "https://api.anthropic.com"

const anthropicVersion = "2023-06-01"

/**
 * Builds a provider for one Anthropic deployment. `defaultMaxTokens` (4096 unless given) fills Anthropic's
 * required `max_tokens` when the request sets neither `max_completion_tokens` nor `max_tokens`.
 */
export const make = (
  target: UpstreamTarget,
  options?: { readonly defaultMaxTokens?: number }
): Effect.Effect<Provider> =>
  Effect.gen(function* () {
    const translateOptions = { defaultMaxTokens: options?.defaultMaxTokens ?? 4096 }
    const url = `${target.baseUrl.replace(/\/+$/, "")}/v1/messages`
    const headers: Record<string, string> = {
      "anthropic-version": anthropicVersion,
      ...target.headers,
      "content-type": "application/json",
      ...(target.apiKey !== undefined ? { "x-api-key": Redacted.value(target.apiKey) } : {})
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

    const completeBy = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      Effect.gen(function* () {
        const body = yield* toAnthropicRequest(request, translateOptions)
        const response = yield* postJson(providerName, url, headers, body, undefined, deadline)
        const message = yield* Effect.flatMap(readJson(providerName, response, deadline), decodeAnthropicMessage)
        return fromAnthropicMessage(message, yield* context(request))
      }).pipe(Effect.withSpan("Anthropic.complete"))

    const open = (request: ChatCompletionRequest, deadline?: AttemptDeadline) =>
      Effect.gen(function* () {
        const body = yield* toAnthropicRequest(request, translateOptions)
        const ctx = yield* context(request)
        const response = yield* postJson(providerName, url, headers, { ...body, stream: true }, undefined, deadline)
        const machine = runMachine(
          StreamTranslate.initialState(ctx),
          (state, event: SseEvent) =>
            Either.flatMap(parseEventData(providerName, event.data), (data) => StreamTranslate.step(state, { event: event.event, data })),
          (state) => Either.map(StreamTranslate.finish(state), ([, chunks]) => chunks)
        )
        return eventSource(providerName, response, machine.feedAll, machine.atEnd)
      })

    return { complete: (request) => completeBy(request), completeBy, stream: streamFromOpen(open), open } satisfies Provider
  })
