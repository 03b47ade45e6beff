/**
 * The core: what every transport calls once it has decoded its dialect and knows its caller — the node:http fast
 * path, the HttpApi handlers, and each endpoint to come. Admission (which models a key may use, its limits on the
 * shared store), routing and accounting (tokens, spend, usage rows, the token metrics) happen here, in this order,
 * and nowhere else: chat completions below, embeddings in Embeddings.ts, both through the one gate (Gate.ts). The
 * core never learns which transport it serves.
 */
import { Context, Effect, Layer, Option, Stream } from "effect"
import type { Store } from "../Governance/Store.js"
import { promptTexts, Tokenizer } from "../Governance/Tokenizer.js"
import type { Caller } from "../Http/Auth.js"
import type { EmbeddingRequest } from "../OpenAi/Embeddings.js"
import type { ChunkTextSink } from "../OpenAi/Wire.js"
import type { ChatCompletion, ChatCompletionRequest, Usage } from "../OpenAi/Schemas.js"
import { observed, pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import { ModelRegistry } from "../Router/Registry.js"
import { Router } from "../Router/Router.js"
import type { RoutedStream, Served } from "../Router/Router.js"
import type { CountTokensCall, MessagesCall } from "../Anthropic/Wire.js"
import { makeEmbed } from "./Embeddings.js"
import { makeMessages } from "./Messages.js"
import type { CountAnswer, MessagesAnswer } from "./Messages.js"
import { makeResponses } from "./Responses.js"
import type { ResponsesAnswer } from "./Responses.js"
import type { ResponsesCall } from "../Responses/Wire.js"
import * as ResponsesStore from "../Responses/Store.js"
import type { EmbeddingsAnswer } from "./Embeddings.js"
import { make as makeGate, noteServed } from "./Gate.js"
import type { AnswerHeaders, ChatFailure, Pass } from "./Gate.js"
import type { RequestRecord } from "./RequestRecord.js"
import { DeliveredText } from "./Delivered.js"
import * as Cache from "./Cache.js"
import { cacheDirectiveOf } from "./Cache.js"

export { ChatFailure, rateLimitHeaders, resetText } from "./Gate.js"
export type { AnswerHeaders, ChatError } from "./Gate.js"
export type { EmbeddingsAnswer } from "./Embeddings.js"
export type { CountAnswer, MessagesAnswer } from "./Messages.js"
export type { ResponsesAnswer } from "./Responses.js"
export { cacheDirectiveOf } from "./Cache.js"
export type { CacheDirective } from "./Cache.js"

/** What a transport passes on from a request besides its body and its caller. */
export interface ChatOptions {
  /** The request's `Cache-Control` header: `no-cache` skips the response cache's lookup, `no-store` the cache. */
  readonly cacheControl?: string | undefined
}

/** What a chat request became: a completion, or a committed stream (its first chunk in hand). */
export type ChatAnswer =
  | {
    readonly _tag: "Completion"
    readonly completion: ChatCompletion
    readonly served: Served
    readonly headers: AnswerHeaders
    /** The completion's JSON when it is at hand already (a cache hit, or a miss the cache stored): written as is. */
    readonly json?: string
  }
  | {
    readonly _tag: "Stream"
    readonly stream: RoutedStream
    readonly headers: AnswerHeaders
    /** To be told the JSON of each chunk as the writer serializes it (a stream the response cache records). */
    readonly sink?: ChunkTextSink
  }

/** The core service. */
export interface ChatCoreService {
  /**
   * Admits, routes and accounts one request: a JSON completion, or a committed stream when `stream: true`. `record`,
   * when given, gets what the request did (key, model, provider, attempts, upstream time, tokens). A model with a
   * response cache answers from it when it can (`options.cacheControl` as the client sent it).
   */
  readonly chat: (request: ChatCompletionRequest, caller: Caller, record?: RequestRecord, options?: ChatOptions) => Effect.Effect<ChatAnswer, ChatFailure>
  /**
   * Admits, routes and accounts one embeddings request, through the same gate; `record` as for `chat`. A model with a
   * response cache answers from it when it can (`cacheControl` as the client sent it).
   */
  readonly embed: (request: EmbeddingRequest, caller: Caller, record?: RequestRecord, cacheControl?: string) => Effect.Effect<EmbeddingsAnswer, ChatFailure>
  /**
   * Admits, routes and accounts one Anthropic Messages request (Messages.ts), through the same gate: a message, or a
   * committed event stream when `stream: true`; `record` as for `chat`.
   */
  readonly messages: (call: MessagesCall, caller: Caller, record?: RequestRecord) => Effect.Effect<MessagesAnswer, ChatFailure>
  /** Counts a Messages request's input tokens: the Anthropic upstream's count, else the gateway's estimate. */
  readonly countTokens: (call: CountTokensCall, caller: Caller, record?: RequestRecord) => Effect.Effect<CountAnswer, ChatFailure>
  /**
   * Admits, routes and accounts one Responses request (Responses.ts), through the same gate: a response object, or a
   * committed event stream when `stream: true`; its history from `previous_response_id`, its answer stored unless
   * `store: false`. `record` as for `chat`.
   */
  readonly responses: (call: ResponsesCall, caller: Caller, record?: RequestRecord) => Effect.Effect<ResponsesAnswer, ChatFailure>
  /** A stored response, when `caller` made it (else a 404). */
  readonly retrieveResponse: (id: string, caller: Caller) => Effect.Effect<Readonly<Record<string, unknown>>, ChatFailure>
  /** Deletes a stored response, when `caller` made it (else a 404). */
  readonly deleteResponse: (id: string, caller: Caller) => Effect.Effect<{ readonly id: string; readonly object: "response"; readonly deleted: true }, ChatFailure>
}

export class ChatCore extends Context.Tag("llm-proxy/ChatCore")<ChatCore, ChatCoreService>() {}

/**
 * A committed stream's source that keeps its usage and the text it delivered, and reports them once, when the
 * stream ends however it ends: read to its end, failed, or closed (the client left).
 */
const accountedSource = (source: ChunkSource, onEnd: (usage: Usage | undefined, delivered: DeliveredText) => void): ChunkSource => {
  let usage: Usage | undefined
  const delivered = new DeliveredText()
  return observed(
    source,
    (chunk) => {
      if (chunk.usage != null) usage = chunk.usage
      delivered.addChunk(chunk)
    },
    () => onEnd(usage, delivered)
  )
}

/** The same committed stream over another source (its Stream view derived from it). */
const withSource = (routed: RoutedStream, source: ChunkSource): RoutedStream => ({
  ...routed,
  source,
  chunks: Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
})

/** The request as sent upstream for a stream: usage asked for, so that the stream is accounted exactly. */
const withUsageAsked = (request: ChatCompletionRequest): ChatCompletionRequest =>
  request.stream_options?.include_usage === true ? request : { ...request, stream_options: { ...request.stream_options, include_usage: true } }

/** The texts of a completion: what its completion tokens are counted from when no usage came. */
const completionTexts = (completion: ChatCompletion): ReadonlyArray<string> => {
  const texts: Array<string> = []
  for (const choice of completion.choices) {
    if (typeof choice.message.content === "string") texts.push(choice.message.content)
    for (const call of choice.message.tool_calls ?? []) texts.push(call.function.name, call.function.arguments)
  }
  return texts
}

/** Builds the core: chat here, embeddings from Embeddings.ts, both through one gate. */
export const make = Effect.gen(function* () {
  const router = yield* Router
  const tokenizer = yield* Tokenizer
  const gate = yield* makeGate
  const cache = yield* Cache.make
  const registry = yield* ModelRegistry

  /** The answer's headers, with `x-llm-proxy-hedged` when hedges ran (whose cancelled attempts the pass counts). */
  const hedgedHeaders = (pass: Pass, served: Served) => {
    const hedge = served.hedge
    if (hedge === undefined) return pass.headers
    pass.cancelledAttempts(hedge.cancelled)
    if (pass.record !== undefined) pass.record.hedgeWinner = hedge.wonBy
    return { ...pass.headers, "x-llm-proxy-hedged": `won-by-${hedge.wonBy}` }
  }

  /** A routed chat request, accounted through its pass when its answer is over. */
  const serve = (request: ChatCompletionRequest, pass: Pass) => {
    const { record } = pass
    if (request.stream === true) {
      return Effect.map(router.stream(withUsageAsked(request), record), (routed): ChatAnswer => {
        noteServed(record, routed)
        const headers = hedgedHeaders(pass, routed)
        const source = accountedSource(routed.source, (usage, delivered) => {
          const endedAt = performance.now()
          if (usage !== undefined) pass.finish(routed.deployment, usage, endedAt)
          else pass.finishCounted(routed.deployment, promptTexts(request), delivered.texts, endedAt, delivered.estimatedTokens)
        })
        return { _tag: "Stream", stream: withSource(routed, source), headers }
      })
    }
    return Effect.map(router.complete(request, record), (routed): ChatAnswer => {
      noteServed(record, routed)
      const headers = hedgedHeaders(pass, routed)
      const { completion, deployment } = routed
      if (completion.usage !== undefined) pass.finish(deployment, completion.usage)
      else pass.finishCounted(deployment, promptTexts(request), completionTexts(completion))
      return { _tag: "Completion", completion, served: routed, headers }
    })
  }

  const chat = (request: ChatCompletionRequest, caller: Caller, record?: RequestRecord, options?: ChatOptions): Effect.Effect<ChatAnswer, ChatFailure> =>
    gate.admit(request.model, caller, record, (pass) => {
      // The registry's model says whether it has a cache: one field read for the models without.
      const policy = registry.current().lookup(request.model)?.cache
      return policy === undefined
        ? serve(request, pass)
        : cache.serve(request, pass, policy, cacheDirectiveOf(options?.cacheControl), () => serve(request, pass))
    })

  // The stored responses on the ResponsesStore when one is provided (App provides the one `REDIS_URL` names), else in memory.
  const providedStore = yield* Effect.serviceOption(ResponsesStore.ResponsesStore)
  const responsesStore = Option.isSome(providedStore) ? providedStore.value : yield* ResponsesStore.makeMemory

  return {
    chat,
    embed: makeEmbed(gate, router, tokenizer, cache, registry),
    ...makeMessages(gate, router, tokenizer),
    ...makeResponses(gate, router, responsesStore, registry)
  } satisfies ChatCoreService
})

/**
 * The core over the Router, the governance Store and the Tokenizer; the response cache on the CacheStore when one is
 * provided (App provides the one `REDIS_URL` names), else in memory.
 */
export const layer: Layer.Layer<ChatCore, never, Router | Store | Tokenizer | ModelRegistry> = Layer.scoped(ChatCore, make)
