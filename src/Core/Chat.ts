/**
 * The chat core: the one function every transport calls once it has decoded its dialect and knows its caller —
 * the node:http fast path, the HttpApi handler, and each endpoint to come. Admission (who may use what), routing
 * and accounting happen here, in this order, and nowhere else; the core never learns which transport it serves.
 */
import { Context, Effect, Layer, Stream } from "effect"
import type { ModelNotFound } from "../Errors.js"
import type { Caller } from "../Http/Auth.js"
import * as Metrics from "../Metrics.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import type { ProviderError } from "../Providers/Provider.js"
import { Router } from "../Router/Router.js"
import type { RoutedStream, Served } from "../Router/Router.js"

/** What a chat request became: a completion, or a committed stream (its first chunk in hand). */
export type ChatAnswer =
  | { readonly _tag: "Completion"; readonly completion: ChatCompletion; readonly served: Served }
  | { readonly _tag: "Stream"; readonly stream: RoutedStream }

/** Why a chat request was not answered. */
export type ChatFailure = ModelNotFound | ProviderError

/** The chat core service. */
export interface ChatCoreService {
  /** Admits, routes and accounts one request: a JSON completion, or a committed stream when `stream: true`. */
  readonly chat: (request: ChatCompletionRequest, caller: Caller) => Effect.Effect<ChatAnswer, ChatFailure>
}

export class ChatCore extends Context.Tag("llm-proxy/ChatCore")<ChatCore, ChatCoreService>() {}

/** A source whose chunks' usage is counted as they pass, against the public model that served. */
const accounted = (source: ChunkSource, model: string): ChunkSource => ({
  poll: () => {
    const take = source.poll()
    if (Array.isArray(take)) for (const chunk of take as ReadonlyArray<ChatCompletionChunk>) Metrics.recordUsage(model, chunk.usage)
    return take
  },
  onReady: source.onReady,
  close: source.close,
  release: releaseOf(source)
})

/** The same committed stream over another source (its Stream view derived from it). */
const withSource = (routed: RoutedStream, source: ChunkSource): RoutedStream => ({
  ...routed,
  source,
  chunks: Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
})

export const make = Effect.gen(function* () {
  const router = yield* Router

  const chat = (request: ChatCompletionRequest, _caller: Caller): Effect.Effect<ChatAnswer, ChatFailure> => {
    if (request.stream === true) {
      return Effect.map(router.stream(request), (routed): ChatAnswer => ({
        _tag: "Stream",
        stream: withSource(routed, accounted(routed.source, routed.deployment.name))
      }))
    }
    return Effect.map(router.complete(request), (routed): ChatAnswer => {
      Metrics.recordUsage(routed.deployment.name, routed.completion.usage)
      return { _tag: "Completion", completion: routed.completion, served: routed }
    })
  }

  return { chat }
})

/** The core over the Router. */
export const layer: Layer.Layer<ChatCore, never, Router> = Layer.effect(ChatCore, make)
