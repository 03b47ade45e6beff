/**
 * The gate every request of the core passes, whatever it asks for (a chat completion, embeddings): admission (the
 * models a key may use, its limits in one atomic step on the governance store), the in-flight lease kept alive while
 * the request runs, and the accounting at its end (tokens, spend by the serving deployment's price, the usage row,
 * the token metrics). A refused or failed request still counts as one. Chat (Chat.ts) and embeddings
 * (Embeddings.ts) differ only in what they route and what they count; they meet the store only here.
 */
import { Cause, Data, Effect, Fiber, Runtime } from "effect"
import { LimitExceeded, LimitsUnavailable, ModelNotFound } from "../Errors.js"
import type { Admission, StoreError, WindowFigure, WindowFigures } from "../Governance/Store.js"
import { leaseRenewMs, Store } from "../Governance/Store.js"
import { Tokenizer } from "../Governance/Tokenizer.js"
import * as UsageWriter from "../Governance/UsageWriter.js"
import { mayUse } from "../Http/Auth.js"
import type { Caller } from "../Http/Auth.js"
import * as Metrics from "../Metrics.js"
import type { ProviderError } from "../Providers/Provider.js"
import { ModelRegistry } from "../Router/Registry.js"
import type { Deployment } from "../Router/Registry.js"
import type { Served } from "../Router/Router.js"
import { Timer } from "../Timer.js"
import type { RequestRecord } from "./RequestRecord.js"

/** Response headers the answer carries whatever it is: OpenAI's rate-limit headers for a key with rpm or tpm. */
export type AnswerHeaders = Readonly<Record<string, string>>

/** Why a request of the core was not answered. */
export type ChatError = ModelNotFound | ProviderError | LimitExceeded | LimitsUnavailable

/** A refused or failed request of the core: why, and the headers its answer still carries. */
export class ChatFailure extends Data.TaggedError("ChatFailure")<{ readonly error: ChatError; readonly headers: AnswerHeaders }> {}

/** Tokens a request used, as usage reports them. */
export interface TokenCounts {
  readonly prompt_tokens: number
  readonly completion_tokens: number
}

/** The texts a prompt is made of, and the fixed tokens around them that no text shows. */
export interface PromptTexts {
  readonly texts: ReadonlyArray<string>
  readonly overhead: number
}

/** An admitted request: who, for which public model, the headers its answer carries, and how its end is recorded. */
export interface Pass {
  readonly caller: Caller
  /** The public model name asked for. */
  readonly model: string
  readonly record: RequestRecord | undefined
  readonly headers: AnswerHeaders
  /**
   * The request ended with an answer from `deployment`: its tokens go to the metrics, the record, the key's windows,
   * spend and usage row; its lease is released. `endedAt` (a stream's end) also times its output tokens. A request
   * ends once: after the first `finish` or `finishCounted`, they do nothing.
   */
  readonly finish: (deployment: Deployment, tokens: TokenCounts, endedAt?: number) => void
  /**
   * As `finish`, for an upstream that reported no usage: the tokens are counted first, with the tokenizer, plus
   * `estimatedCompletionTokens` for completion text that was only measured (see Delivered.ts).
   */
  readonly finishCounted: (
    deployment: Deployment,
    prompt: PromptTexts,
    completionTexts: ReadonlyArray<string>,
    endedAt?: number,
    estimatedCompletionTokens?: number
  ) => void
  /**
   * The request was answered from the response cache: it counts as a request (its rpm was taken at admission) with
   * no tokens and no spend, and its lease is released. Once, like `finish`.
   */
  readonly finishCached: () => void
  /**
   * Hedged attempts cancelled in flight, on these deployments: when the request finishes, each adds the request's
   * prompt tokens (and no completion tokens) at its deployment's price, as a cancelled stream is counted.
   */
  readonly cancelledAttempts: (deployments: ReadonlyArray<Deployment>) => void
}

/** The gate. */
export interface Gate {
  /**
   * Admits a request for the public model `model` and runs `serve` with its pass. A refusal (a model the key may not
   * use, a limit, the store unreachable with `on_store_failure: closed`) fails without running it; a failure of
   * `serve` counts the request (no tokens) and releases its lease. A success leaves the accounting to `serve`,
   * through the pass, when the answer is over.
   */
  readonly admit: <A>(
    model: string,
    caller: Caller,
    record: RequestRecord | undefined,
    serve: (pass: Pass) => Effect.Effect<A, ChatError>
  ) => Effect.Effect<A, ChatFailure>
}

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

/** Which deployment served, into the request's record. */
export const noteServed = (record: RequestRecord | undefined, served: Served): void => {
  if (record === undefined) return
  record.provider = String(served.deployment.providerKind)
  record.attempts = served.attempts
}

/** USD for the tokens a deployment served. */
const spendOf = (deployment: Deployment | undefined, prompt: number, completion: number): number =>
  deployment?.price === undefined
    ? 0
    : (prompt * deployment.price.input_per_mtok + completion * deployment.price.output_per_mtok) / 1_000_000

/** How long the gate's scope waits, when it closes, for token counts still running. */
const countFlushMs = 2_000

/** Logs a store failure at most once per this many milliseconds (a store that is down fails every request). */
const storeLogIntervalMs = 10_000

/** The gate over the governance Store, the Tokenizer and the current registry. */
export const make = Effect.gen(function* () {
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
  // Ended requests reach the store in batches, in the background: an answer never waits for the store.
  const usage = yield* UsageWriter.make(storeFailed("finish"))
  // Requests whose tokens are still being counted: when the scope closes (shutdown, after the drain) they are awaited
  // before the usage writer's last batch and before the tokenizer stops, so their usage keeps its tokens.
  const counting = new Set<Fiber.RuntimeFiber<void>>()
  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => Fiber.awaitAll([...counting])).pipe(Effect.timeout(countFlushMs), Effect.ignore)
  )

  /** A finished request's tokens: in its record, and (streams) its time per output token. */
  const noteTokens = (record: RequestRecord | undefined, deployment: Deployment, prompt: number, completion: number, endedAt?: number) => {
    if (record === undefined) return
    record.promptTokens = prompt
    record.completionTokens = completion
    if (endedAt !== undefined && record.firstByteAt !== undefined && completion > 0) {
      Metrics.timePerOutputToken.update((endedAt - record.firstByteAt) / 1000 / completion, deployment.name, String(deployment.providerKind))
    }
  }

  /** The usage row of one request's tokens. */
  const usageRecord = (
    caller: Caller,
    model: string,
    deployment: Deployment,
    prompt: number,
    completion: number,
    cancelled: ReadonlyArray<Deployment> = []
  ) => {
    // Hedged attempts cancelled in flight had the prompt too: each counts its prompt tokens (no completion) at its price.
    let spendUsd = spendOf(deployment, prompt, completion)
    for (const other of cancelled) {
      spendUsd += spendOf(other, prompt, 0)
      Metrics.recordUsage(other.name, { prompt_tokens: prompt, completion_tokens: 0 })
    }
    return {
      keyId: caller.id,
      model,
      promptTokens: prompt * (1 + cancelled.length),
      completionTokens: completion,
      spendUsd,
      countInWindows: !caller.operator
    }
  }

  /**
   * A request that used no tokens still counts as one, its answer never waiting for the store. Usage rows name only
   * models the registry has: a client cannot grow them with names of its own.
   */
  const recordRequest = (lease: string | undefined, caller: Caller, model: string) =>
    usage.record(lease, {
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

  /** The pass of an admitted request; `settle` ends it (false when it had already ended: it is recorded once). */
  const passOf = (caller: Caller, model: string, record: RequestRecord | undefined, lease: string | undefined, headers: AnswerHeaders, settle: () => boolean): Pass => {
    let cancelled: ReadonlyArray<Deployment> = []
    const finish = (deployment: Deployment, tokens: TokenCounts, endedAt?: number) => {
      if (!settle()) return
      Metrics.recordUsage(deployment.name, tokens)
      const row = usageRecord(caller, model, deployment, tokens.prompt_tokens, tokens.completion_tokens, cancelled)
      noteTokens(record, deployment, row.promptTokens, tokens.completion_tokens, endedAt)
      usage.record(lease, row)
    }
    const finishCounted = (
      deployment: Deployment,
      prompt: PromptTexts,
      completionTexts: ReadonlyArray<string>,
      endedAt?: number,
      estimatedCompletionTokens = 0
    ) => {
      if (!settle()) return
      const fiber = runFork(
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
          Effect.map(({ completionTokens, promptTokens }) => {
            Metrics.recordUsage(deployment.name, { prompt_tokens: promptTokens, completion_tokens: completionTokens })
            const row = usageRecord(caller, model, deployment, promptTokens, completionTokens, cancelled)
            noteTokens(record, deployment, row.promptTokens, completionTokens, endedAt)
            usage.record(lease, row)
          })
        )
      )
      counting.add(fiber)
      fiber.addObserver(() => counting.delete(fiber))
    }
    const finishCached = () => {
      if (!settle()) return
      if (record !== undefined) {
        record.promptTokens = 0
        record.completionTokens = 0
      }
      recordRequest(lease, caller, model)
    }
    const cancelledAttempts = (deployments: ReadonlyArray<Deployment>) => {
      cancelled = deployments
    }
    return { caller, model, record, headers, finish, finishCounted, finishCached, cancelledAttempts }
  }

  /**
   * Runs an admitted request: its lease renewed until it ends; a failure or an interruption counts it and releases
   * the lease.
   */
  const run = <A>(
    model: string,
    caller: Caller,
    record: RequestRecord | undefined,
    lease: string | undefined,
    headers: AnswerHeaders,
    serve: (pass: Pass) => Effect.Effect<A, ChatError>
  ): Effect.Effect<A, ChatFailure> => {
    const stopRenewing = keepAlive(caller, lease)
    let settled = false
    const settle = () => {
      if (settled) return false
      settled = true
      stopRenewing()
      return true
    }
    const unanswered = () => {
      if (settle()) recordRequest(lease, caller, model)
    }
    // Only `serve` is interruptible: an interruption (the client left) reaches the failure branch too, which counts the
    // request and stops its lease's renewal — without that the lease would be renewed forever.
    return Effect.uninterruptibleMask((restore) =>
      Effect.matchCauseEffect(restore(serve(passOf(caller, model, record, lease, headers, settle))), {
        onFailure: (cause) => {
          unanswered()
          return Effect.failCause(Cause.map(cause, (error) => new ChatFailure({ error, headers })))
        },
        onSuccess: Effect.succeed
      })
    )
  }

  /** Admission on the store, for a virtual key: its limits, one atomic step. */
  const admitted = <A>(
    model: string,
    caller: Caller,
    record: RequestRecord | undefined,
    onStoreFailure: "open" | "closed",
    serve: (pass: Pass) => Effect.Effect<A, ChatError>
  ): Effect.Effect<A, ChatFailure> => {
    const key = caller.key!
    return Effect.matchEffect(store.admit(key.id, key.limits), {
      onFailure: (error) =>
        Effect.zipRight(
          storeFailed("admit")(error),
          onStoreFailure === "closed"
            ? Effect.fail(new ChatFailure({ error: new LimitsUnavailable(), headers: noHeaders }))
            : run(model, caller, record, undefined, noHeaders, serve)
        ),
      onSuccess: (admission: Admission) => {
        const headers = rateLimitHeaders(admission.figures)
        if (admission._tag === "Admitted") return run(model, caller, record, admission.lease, headers, serve)
        Metrics.limitRefusals.update(1, key.id, admission.limit)
        recordRequest(undefined, caller, model)
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

  const admit = <A>(
    model: string,
    caller: Caller,
    record: RequestRecord | undefined,
    serve: (pass: Pass) => Effect.Effect<A, ChatError>
  ): Effect.Effect<A, ChatFailure> =>
    Effect.suspend(() => {
      const current = registry.current()
      if (record !== undefined) {
        record.keyId = caller.id
        record.model = model
      }
      if (!mayUse(caller, model)) {
        recordRequest(undefined, caller, model)
        return Effect.fail(new ChatFailure({ error: new ModelNotFound({ model }), headers: noHeaders }))
      }
      if (caller.key === undefined) return run(model, caller, record, undefined, noHeaders, serve)
      return admitted(model, caller, record, current.settings.limits.on_store_failure, serve)
    })

  return { admit } satisfies Gate
})
