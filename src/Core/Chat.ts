/**
 * The chat core: the one function every transport calls once it has decoded its dialect and knows its caller —
 * the node:http fast path, the HttpApi handler, and each endpoint to come. Admission (which models a key may use,
 * its limits on the shared store), routing and accounting (tokens, spend, usage rows, the token metrics) happen
 * here, in this order, and nowhere else; the core never learns which transport it serves.
 */
import { Cause, Context, Data, Effect, Layer, Runtime, Stream } from "effect"
import { LimitExceeded, LimitsUnavailable, ModelNotFound } from "../Errors.js"
import type { Admission, StoreError, UsageRecord, WindowFigure, WindowFigures } from "../Governance/Store.js"
import { leaseRenewMs, Store } from "../Governance/Store.js"
import { promptTexts, Tokenizer } from "../Governance/Tokenizer.js"
import { mayUse } from "../Http/Auth.js"
import type { Caller } from "../Http/Auth.js"
import * as Metrics from "../Metrics.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from "../OpenAi/Schemas.js"
import { pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import type { ProviderError } from "../Providers/Provider.js"
import { ModelRegistry } from "../Router/Registry.js"
import type { Deployment } from "../Router/Registry.js"
import { Router } from "../Router/Router.js"
import type { RoutedStream, Served } from "../Router/Router.js"
import { Timer } from "../Timer.js"
import { DeliveredText } from "./Delivered.js"
import type { RequestRecord } from "./RequestRecord.js"

/** Response headers the answer carries whatever it is: OpenAI's rate-limit headers for a key with rpm or tpm. */
export type AnswerHeaders = Readonly<Record<string, string>>

/** What a chat request became: a completion, or a committed stream (its first chunk in hand). */
export type ChatAnswer =
  | { readonly _tag: "Completion"; readonly completion: ChatCompletion; readonly served: Served; readonly headers: AnswerHeaders }
  | { readonly _tag: "Stream"; readonly stream: RoutedStream; readonly headers: AnswerHeaders }

/** Why a chat request was not answered. */
export type ChatError = ModelNotFound | ProviderError | LimitExceeded | LimitsUnavailable

/** A refused or failed chat request: why, and the headers its answer still carries. */
export class ChatFailure extends Data.TaggedError("ChatFailure")<{ readonly error: ChatError; readonly headers: AnswerHeaders }> {}

/** The chat core service. */
export interface ChatCoreService {
  /**
   * Admits, routes and accounts one request: a JSON completion, or a committed stream when `stream: true`. `record`,
   * when given, gets what the request did (key, model, provider, attempts, upstream time, tokens).
   */
  readonly chat: (request: ChatCompletionRequest, caller: Caller, record?: RequestRecord) => Effect.Effect<ChatAnswer, ChatFailure>
}

export class ChatCore extends Context.Tag("llm-proxy/ChatCore")<ChatCore, ChatCoreService>() {}

const noHeaders: AnswerHeaders = {}

/** A duration as OpenAI writes it in `x-ratelimit-reset-*`: `12ms`, `1s`, `6m0s`, `1h2m3s`. */
export const resetText = (ms: number): string => {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`
  const total = Math.ceil(ms / 1000)
  const hours = Math.floor(total / 3600)
  const minutes = Math.floor((total % 3600) / 60)
  const seconds = total % 60
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`
  return minutes > 0 ? `${minutes}m${seconds}s` : `${seconds}s`
}

const figureHeaders = (headers: Record<string, string>, kind: "requests" | "tokens", figure: WindowFigure | undefined) => {
  if (figure === undefined) return
  headers[`x-ratelimit-limit-${kind}`] = String(figure.limit)
  headers[`x-ratelimit-remaining-${kind}`] = String(Math.max(0, figure.remaining))
  headers[`x-ratelimit-reset-${kind}`] = resetText(figure.resetMs)
}

/** OpenAI's rate-limit headers for the windows a key has limits for. */
export const rateLimitHeaders = (figures: WindowFigures): AnswerHeaders => {
  if (figures.requests === undefined && figures.tokens === undefined) return noHeaders
  const headers: Record<string, string> = {}
  figureHeaders(headers, "requests", figures.requests)
  figureHeaders(headers, "tokens", figures.tokens)
  return headers
}

/** USD for the tokens a deployment served. */
const spendOf = (deployment: Deployment | undefined, prompt: number, completion: number): number =>
  deployment?.price === undefined
    ? 0
    : (prompt * deployment.price.input_per_mtok + completion * deployment.price.output_per_mtok) / 1_000_000

/**
 * A committed stream's source that keeps its usage and the text it delivered, and reports them once, when the
 * stream ends however it ends: read to its end, failed, or closed (the client left).
 */
const accountedSource = (source: ChunkSource, onEnd: (usage: Usage | undefined, delivered: DeliveredText) => void): ChunkSource => {
  let usage: Usage | undefined
  const delivered = new DeliveredText()
  let ended = false
  const end = () => {
    if (ended) return
    ended = true
    onEnd(usage, delivered)
  }
  return {
    poll: () => {
      const take = source.poll()
      if (Array.isArray(take)) {
        for (const chunk of take as ReadonlyArray<ChatCompletionChunk>) {
          if (chunk.usage != null) usage = chunk.usage
          delivered.addChunk(chunk)
        }
      } else if (take !== undefined) end()
      return take
    },
    onReady: source.onReady,
    close: () => {
      source.close()
      end()
    },
    release: Effect.suspend(() => {
      end()
      return releaseOf(source)
    })
  }
}

/** Which deployment served, into the request's record. */
const served = (record: RequestRecord | undefined, routed: Served) => {
  if (record === undefined) return
  record.provider = String(routed.deployment.providerKind)
  record.attempts = routed.attempts
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

/** Logs a store failure at most once per this many milliseconds (a store that is down fails every request). */
const storeLogIntervalMs = 10_000

export const make = Effect.gen(function* () {
  const router = yield* Router
  const store = yield* Store
  const tokenizer = yield* Tokenizer
  const timer = yield* Timer
  const registry = yield* ModelRegistry
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())

  let lastStoreLog = Number.NEGATIVE_INFINITY
  const storeFailed = (operation: string) => (error: StoreError) =>
    Effect.suspend(() => {
      Metrics.storeErrors.update(1, operation)
      const now = timer.now()
      if (now - lastStoreLog < storeLogIntervalMs) return Effect.void
      lastStoreLog = now
      return Effect.logError("governance store unavailable").pipe(Effect.annotateLogs({ operation, error: error.message }))
    })

  /** Records one request's usage in the background: its answer never waits for the store. */
  const finish = (lease: string | undefined, usage: UsageRecord) => {
    runFork(store.finish(lease, usage).pipe(Effect.catchAll(storeFailed("finish"))))
  }

  /** Counts tokens the upstream did not report, then records them. */
  const recordCounted = (
    lease: string | undefined,
    caller: Caller,
    request: ChatCompletionRequest,
    deployment: Deployment,
    completionTexts: ReadonlyArray<string>,
    record: RequestRecord | undefined,
    endedAt?: number,
    estimatedCompletionTokens = 0
  ) => {
    const prompt = promptTexts(request)
    runFork(
      tokenizer.count([...prompt.texts, completionTexts.join("")]).pipe(
        Effect.map((counts) => {
          const completionTokens = (counts.at(-1) ?? 0) + estimatedCompletionTokens
          const promptTokens = counts.slice(0, -1).reduce((sum, count) => sum + count, prompt.overhead)
          return { promptTokens, completionTokens }
        }),
        Effect.catchAll((error) =>
          Effect.as(Effect.logWarning("token count failed; usage recorded without tokens").pipe(Effect.annotateLogs("error", error.message)), {
            promptTokens: 0,
            completionTokens: 0
          })
        ),
        Effect.flatMap(({ completionTokens, promptTokens }) => {
          Metrics.recordUsage(deployment.name, { prompt_tokens: promptTokens, completion_tokens: completionTokens })
          noteTokens(record, deployment, promptTokens, completionTokens, endedAt)
          return store.finish(lease, {
            keyId: caller.id,
            model: request.model,
            promptTokens,
            completionTokens,
            spendUsd: spendOf(deployment, promptTokens, completionTokens),
            countInWindows: !caller.operator
          })
        }),
        Effect.catchAll(storeFailed("finish"))
      )
    )
  }

  /** A finished request's tokens: in its record, and (streams) its time per output token. */
  const noteTokens = (record: RequestRecord | undefined, deployment: Deployment, prompt: number, completion: number, endedAt?: number) => {
    if (record === undefined) return
    record.promptTokens = prompt
    record.completionTokens = completion
    if (endedAt !== undefined && record.firstByteAt !== undefined && completion > 0) {
      Metrics.timePerOutputToken.update((endedAt - record.firstByteAt) / 1000 / completion, deployment.name, String(deployment.providerKind))
    }
  }

  const recordUsage = (
    lease: string | undefined,
    caller: Caller,
    request: ChatCompletionRequest,
    deployment: Deployment,
    usage: Usage,
    record: RequestRecord | undefined,
    endedAt?: number
  ) => {
    Metrics.recordUsage(deployment.name, usage)
    noteTokens(record, deployment, usage.prompt_tokens, usage.completion_tokens, endedAt)
    finish(lease, {
      keyId: caller.id,
      model: request.model,
      promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens,
      spendUsd: spendOf(deployment, usage.prompt_tokens, usage.completion_tokens),
      countInWindows: !caller.operator
    })
  }

  /**
   * A request that used no tokens still counts as one. Usage rows name only models the registry has: a client
   * cannot grow them with names of its own.
   */
  const recordRequest = (lease: string | undefined, caller: Caller, model: string) =>
    finish(lease, {
      keyId: caller.id,
      model: registry.current().lookup(model) === undefined ? "(unknown)" : model,
      promptTokens: 0,
      completionTokens: 0,
      spendUsd: 0,
      countInWindows: !caller.operator
    })

  /** Keeps a lease alive while its request runs; returns how to stop. */
  const keepAlive = (caller: Caller, lease: string | undefined): (() => void) => {
    if (lease === undefined) return () => {}
    let cancel = timer.after(leaseRenewMs, function renew() {
      runFork(store.renew(caller.id, lease).pipe(Effect.catchAll(storeFailed("renew"))))
      cancel = timer.after(leaseRenewMs, renew)
    })
    return () => cancel()
  }

  const serve = (
    request: ChatCompletionRequest,
    caller: Caller,
    lease: string | undefined,
    headers: AnswerHeaders,
    record: RequestRecord | undefined
  ): Effect.Effect<ChatAnswer, ChatFailure> => {
    const stopRenewing = keepAlive(caller, lease)
    /** The request failed (or was interrupted) before an answer: it still counts, its lease is released. */
    const routeFailed = (cause: Cause.Cause<ChatError>) => {
      stopRenewing()
      recordRequest(lease, caller, request.model)
      return Effect.failCause(Cause.map(cause, (error) => new ChatFailure({ error, headers })))
    }
    if (request.stream === true) {
      return Effect.matchCauseEffect(router.stream(withUsageAsked(request), record), {
        onFailure: routeFailed,
        onSuccess: (routed) => {
          served(record, routed)
          const source = accountedSource(routed.source, (usage, delivered) => {
            stopRenewing()
            const endedAt = performance.now()
            if (usage !== undefined) recordUsage(lease, caller, request, routed.deployment, usage, record, endedAt)
            else recordCounted(lease, caller, request, routed.deployment, delivered.texts, record, endedAt, delivered.estimatedTokens)
          })
          return Effect.succeed<ChatAnswer>({ _tag: "Stream", stream: withSource(routed, source), headers })
        }
      })
    }
    return Effect.matchCauseEffect(router.complete(request, record), {
      onFailure: routeFailed,
      onSuccess: (routed) => {
        stopRenewing()
        served(record, routed)
        const { completion, deployment } = routed
        if (completion.usage !== undefined) recordUsage(lease, caller, request, deployment, completion.usage, record)
        else {
          const texts: Array<string> = []
          for (const choice of completion.choices) {
            if (typeof choice.message.content === "string") texts.push(choice.message.content)
            for (const call of choice.message.tool_calls ?? []) texts.push(call.function.name, call.function.arguments)
          }
          recordCounted(lease, caller, request, deployment, texts, record)
        }
        return Effect.succeed<ChatAnswer>({ _tag: "Completion", completion, served: routed, headers })
      }
    })
  }

  /** Admission on the store, for a virtual key: its limits, one atomic step. */
  const admitted = (request: ChatCompletionRequest, caller: Caller, onStoreFailure: "open" | "closed", record: RequestRecord | undefined) => {
    const key = caller.key!
    return Effect.matchEffect(store.admit(key.id, key.limits), {
      onFailure: (error) =>
        Effect.zipRight(
          storeFailed("admit")(error),
          onStoreFailure === "closed"
            ? Effect.fail(new ChatFailure({ error: new LimitsUnavailable(), headers: noHeaders }))
            : serve(request, caller, undefined, noHeaders, record)
        ),
      onSuccess: (admission: Admission) => {
        const headers = rateLimitHeaders(admission.figures)
        if (admission._tag === "Admitted") return serve(request, caller, admission.lease, headers, record)
        Metrics.limitRefusals.update(1, key.id, admission.limit)
        recordRequest(undefined, caller, request.model)
        const value = admission.limit === "budget" ? key.limits.budget?.usd : admission.limit === "max_parallel" ? key.limits.maxParallel : key.limits[admission.limit]
        return Effect.fail(
          new ChatFailure({
            error: new LimitExceeded({ keyId: key.id, limit: admission.limit, value: value ?? 0, retryAfterMs: admission.retryAfterMs }),
            headers
          })
        )
      }
    })
  }

  const chat = (request: ChatCompletionRequest, caller: Caller, record?: RequestRecord): Effect.Effect<ChatAnswer, ChatFailure> =>
    Effect.suspend(() => {
      const current = registry.current()
      if (record !== undefined) {
        record.keyId = caller.id
        record.model = request.model
      }
      if (!mayUse(caller, request.model)) {
        recordRequest(undefined, caller, request.model)
        return Effect.fail(new ChatFailure({ error: new ModelNotFound({ model: request.model }), headers: noHeaders }))
      }
      if (caller.key === undefined) return serve(request, caller, undefined, noHeaders, record)
      return admitted(request, caller, current.settings.limits.on_store_failure, record)
    })

  return { chat }
})

/** The core over the Router, the governance Store and the Tokenizer. */
export const layer: Layer.Layer<ChatCore, never, Router | Store | Tokenizer | ModelRegistry> = Layer.effect(ChatCore, make)
