/**
 * Router: model name → deployments, weighted load balancing, retries on a Schedule, fallbacks, deadlines and,
 * for streams, the commit point (the first upstream chunk is in hand before the client sees a 200). Chat,
 * embeddings and Anthropic Messages requests take the same routes: the same names, deployments, retries, fallbacks
 * and cooldowns. A Messages attempt is native to a deployment whose provider speaks Messages (`Provider.messages`)
 * and translated through chat completions to any other, so one request's fallbacks may cross dialects.
 */
import { Cause, Context, Duration, Effect, Exit, Fiber, Layer, Random, Runtime, Schedule, Stream } from "effect"
import { makeEventTranslator, translatedSource } from "../Anthropic/StreamTranslate.js"
import { eventTrace, traceCompletionOf, traceRequestOf } from "../Anthropic/Trace.js"
import { messageIdOf, toChatRequest, toMessage } from "../Anthropic/Translate.js"
import type { CountTokensCall, MessageAnswer, MessagesCall, MessagesEvent, NativeCall } from "../Anthropic/Wire.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import { makeResponsesTranslator, translatedResponsesSource } from "../Responses/StreamTranslate.js"
import { freshId, toChatRequest as toChatFromResponses, toResponse } from "../Responses/Translate.js"
import type { ResponsesCall, ResponsesEvent } from "../Responses/Wire.js"
import { ModelNotFound } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import { vectorsProblem } from "../OpenAi/Embeddings.js"
import type { EmbeddingRequest, Embeddings } from "../OpenAi/Embeddings.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { pullOf, releaseOf, StreamDefect } from "../Providers/ChunkSource.js"
import type { ChunkSource, Take } from "../Providers/ChunkSource.js"
import { isFallbackWorthy, isRetryable, ProviderError } from "../Providers/Provider.js"
import { bounded } from "../Providers/Deadline.js"
import type { Deadline } from "../Providers/Deadline.js"
import { usageOf } from "../OpenAi/Wire.js"
import { Timer } from "../Timer.js"
import type { TimerService } from "../Timer.js"
import { ModelRegistry } from "./Registry.js"
import type { Deployment, Registry } from "./Registry.js"
import type { RouterSettings } from "./RegistryFile.js"
import { Tracing } from "../Tracing/Tracing.js"
import type { StreamTrace, TracingService } from "../Tracing/Tracing.js"

/** Which deployment answered, and after how many upstream calls in all. */
export interface Served {
  readonly deployment: Deployment
  readonly attempts: number
  /** When hedged attempts ran: which one answered, and the attempts cancelled in flight when it did. */
  readonly hedge?: HedgeOutcome | undefined
}

/** What a hedged request did. */
export interface HedgeOutcome {
  /** The attempt that answered: 1 is the first, 2 the first hedge… */
  readonly wonBy: number
  /** How many attempts ran in all (the first and its hedges). */
  readonly started: number
  /** The deployments of the attempts cancelled in flight (their upstreams had the prompt): accounted like a cancelled stream. */
  readonly cancelled: ReadonlyArray<Deployment>
}

/** A completed non-streamed request. `completion.model` is the public name that served it. */
export interface RoutedCompletion extends Served {
  readonly completion: ChatCompletion
}

/** An embeddings request answered: the vectors in input order, and the upstream's usage when it reported one. */
export interface RoutedEmbeddings extends Served {
  readonly embeddings: Embeddings
}

/**
 * A committed stream: the upstream is connected and its first chunk read. Reading it to its end (or failure), or
 * closing it, releases the upstream connection.
 */
export interface RoutedStream extends Served {
  /**
   * The batches, the first one (already read) included, renamed to the public model: a synchronous source, for a
   * consumer that writes them without a fiber per batch. Each wait is bounded by `first_token_ms` (silence) and by
   * the request's deadline; the end or a failure releases the upstream.
   */
  readonly source: ChunkSource
  /** The same batches as a Stream, which releases the upstream when it ends. */
  readonly chunks: Stream.Stream<ChatCompletionChunk, ProviderError>
  /** When the request must be over: a consumer that cannot keep up is cut off there too. */
  readonly deadline: Deadline
}

/**
 * A Messages request answered: the message (JSON, `model` the public name) and its usage; for a translated attempt,
 * the chat request it became (what the gateway counts tokens from when the upstream reported none).
 */
export interface RoutedMessage extends Served {
  readonly answer: MessageAnswer
  readonly translated: ChatCompletionRequest | undefined
}

/**
 * A committed Messages stream: its events (the first batch, `message_start` included, already read), as the
 * upstream sent them (native) or translated from chat chunks, `message_start` naming the public model.
 */
export interface RoutedMessageStream extends Served {
  readonly source: ChunkSource<MessagesEvent>
  readonly events: Stream.Stream<MessagesEvent, ProviderError>
  readonly deadline: Deadline
  /** The chat request a translated attempt sent (see `RoutedMessage`). */
  readonly translated: ChatCompletionRequest | undefined
}

/**
 * A Responses request answered: the response object (`model` the public name); for a translated attempt, the chat
 * request it became (what the gateway counts tokens from when the upstream reported none).
 */
export interface RoutedResponse extends Served {
  readonly response: Readonly<Record<string, unknown>>
  readonly translated: ChatCompletionRequest | undefined
}

/**
 * A committed Responses stream: its events (the first batch, `response.created` included, already read), as the
 * upstream sent them (native) or translated from chat chunks, naming the public model.
 */
export interface RoutedResponseStream extends Served {
  readonly source: ChunkSource<ResponsesEvent>
  readonly events: Stream.Stream<ResponsesEvent, ProviderError>
  readonly deadline: Deadline
  readonly translated: ChatCompletionRequest | undefined
}

/** A count_tokens request answered: the upstream's count (native), or none (the gateway counts). */
export interface RoutedCount extends Served {
  readonly inputTokens: number | undefined
}

/** Routes chat, embeddings and Messages requests to deployments. */
export class Router extends Context.Tag("llm-proxy/Router")<
  Router,
  {
    /** One completion; `record`, when given, gets the attempts and the time spent on upstreams. */
    readonly complete: (request: ChatCompletionRequest, record?: RequestRecord) => Effect.Effect<RoutedCompletion, ModelNotFound | ProviderError>
    /** One stream, committed at its first chunk; `record` as for `complete`. */
    readonly stream: (request: ChatCompletionRequest, record?: RequestRecord) => Effect.Effect<RoutedStream, ModelNotFound | ProviderError>
    /** One embeddings request; `record` as for `complete`. */
    readonly embed: (request: EmbeddingRequest, record?: RequestRecord) => Effect.Effect<RoutedEmbeddings, ModelNotFound | ProviderError>
    /**
     * One non-streamed Messages request: each attempt native when the deployment's provider speaks Messages,
     * translated through chat completions otherwise (so a fallback may cross dialects); `record` as for `complete`.
     */
    readonly message: (call: MessagesCall, record?: RequestRecord) => Effect.Effect<RoutedMessage, ModelNotFound | ProviderError>
    /** One streamed Messages request, committed at its first event; attempts as for `message`. */
    readonly messageStream: (call: MessagesCall, record?: RequestRecord) => Effect.Effect<RoutedMessageStream, ModelNotFound | ProviderError>
    /** One count_tokens request: the upstream's count for a native deployment, none otherwise. */
    readonly countTokens: (call: CountTokensCall, record?: RequestRecord) => Effect.Effect<RoutedCount, ModelNotFound | ProviderError>
    /**
     * One non-streamed Responses request: each attempt native when the deployment's provider speaks Responses,
     * translated through chat completions otherwise (a fallback may cross dialects); `record` as for `complete`.
     */
    readonly response: (call: ResponsesCall, record?: RequestRecord) => Effect.Effect<RoutedResponse, ModelNotFound | ProviderError>
    /** One streamed Responses request, committed at its first event; attempts as for `response`. */
    readonly responseStream: (call: ResponsesCall, record?: RequestRecord) => Effect.Effect<RoutedResponseStream, ModelNotFound | ProviderError>
  }
>() {}

const timeoutError = (what: string) =>
  new ProviderError({ reason: "Timeout", message: `The upstream did not answer in time (${what})`, provider: "router" })

/** Orders deployments by repeated weighted draws: each is first with probability weight / total. */
export const weightedOrder = (deployments: ReadonlyArray<Deployment>): Effect.Effect<ReadonlyArray<Deployment>> =>
  Effect.gen(function* () {
    const remaining = [...deployments]
    const ordered: Array<Deployment> = []
    while (remaining.length > 0) {
      const total = remaining.reduce((sum, deployment) => sum + deployment.weight, 0)
      let draw = (yield* Random.next) * total
      const index = remaining.findIndex((deployment) => (draw -= deployment.weight) < 0)
      ordered.push(...remaining.splice(index === -1 ? remaining.length - 1 : index, 1))
    }
    return ordered
  })

/**
 * Deployments that keep failing, sent to the back of their model's order for a while: a deployment that failed
 * `failures` requests in a row (after its retries) cools down for `duration_ms`; a success ends it.
 */
export const makeCooldowns = (settings: RouterSettings["cooldown"]) => {
  const states = new Map<Deployment, { failures: number; coolUntil: number }>()
  return {
    isCooling: (deployment: Deployment, now: number): boolean => (states.get(deployment)?.coolUntil ?? 0) > now,
    succeeded: (deployment: Deployment): void => {
      states.delete(deployment)
    },
    failed: (deployment: Deployment, now: number): void => {
      if (settings.failures === 0) return
      const state = states.get(deployment) ?? { failures: 0, coolUntil: 0 }
      state.failures++
      if (state.failures >= settings.failures) {
        state.failures = 0
        state.coolUntil = now + settings.duration_ms
      }
      states.set(deployment, state)
    }
  }
}
type Cooldowns = ReturnType<typeof makeCooldowns>

/**
 * The deployments to try, in order: the model's own (balanced, cooling ones last), then each fallback's. A cooling
 * deployment is still tried when nothing else is left.
 */
const candidatesFor = (
  registry: Registry,
  name: string,
  cooldowns: Cooldowns,
  now: number
): Effect.Effect<ReadonlyArray<Deployment>, ModelNotFound> => {
  const model = registry.lookup(name)
  if (model === undefined) return Effect.fail(new ModelNotFound({ model: name }))
  // One deployment and no fallbacks, the common case: nothing to order (a cooling one is still tried, being alone).
  if (model.fallbacks.length === 0 && model.deployments.length === 1) return Effect.succeed(model.deployments)
  const chain = [model, ...model.fallbacks.flatMap((fallback) => registry.lookup(fallback) ?? [])]
  return Effect.map(
    Effect.forEach(chain, (entry) =>
      Effect.map(weightedOrder(entry.deployments), (ordered) => [
        ...ordered.filter((deployment) => !cooldowns.isCooling(deployment, now)),
        ...ordered.filter((deployment) => cooldowns.isCooling(deployment, now))
      ])
    ),
    (lists) => lists.flat()
  )
}

/**
 * Exponential backoff with jitter, capped at `max_delay_ms`, for retryable reasons only. An upstream's
 * `Retry-After` replaces the computed delay, and such a wait that would end past the deadline is not started;
 * a computed wait is cut short at the deadline.
 */
export const retrySchedule = (settings: RouterSettings, deadline: number, timer: TimerService) =>
  Schedule.exponential(Duration.millis(settings.retry.initial_delay_ms)).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((delay) => Duration.min(delay, Duration.millis(settings.retry.max_delay_ms))),
    Schedule.intersect(Schedule.recurs(settings.retry.max_retries)),
    Schedule.whileInput(isRetryable),
    Schedule.passthrough,
    Schedule.modifyDelay((error: ProviderError, delay) =>
      error.retryAfterMs === undefined ? delay : Duration.millis(error.retryAfterMs)
    ),
    Schedule.check((error: ProviderError) => timer.now() + (error.retryAfterMs ?? 0) < deadline),
    // A backoff never sleeps past the deadline: the attempt that would start there fails with Timeout instead.
    Schedule.modifyDelay((_: ProviderError, delay) => Duration.min(delay, Duration.millis(Math.max(0, deadline - timer.now()))))
  )

/** The request as the deployment's upstream should see it. */
const forDeployment = <R extends { readonly model: string }>(request: R, deployment: Deployment): R =>
  request.model === deployment.upstreamModel ? request : { ...request, model: deployment.upstreamModel }

/**
 * With tracing on, how one attempt runs under its span: `deployment`'s `number`th upstream call of the request,
 * its `retry`th retry there. The span is the record's `attemptSpan` while it runs (the upstream request names it).
 */
type TracedAttempt = <A>(deployment: Deployment, number: number, retry: number, effect: Effect.Effect<A, ProviderError>) => Effect.Effect<A, ProviderError>

/** The attempts of one request under its server span; none when tracing is off or the request has no span. */
const tracedAttempts = (
  tracing: TracingService | undefined,
  request: ChatCompletionRequest,
  record: RequestRecord | undefined
): TracedAttempt | undefined => {
  const parent = record?.span
  if (tracing === undefined || record === undefined || parent === undefined) return undefined
  return (deployment, number, retry, effect) => {
    const span = tracing.startAttempt(parent, { deployment, request, number, retry, keyId: record.keyId })
    record.attemptSpan = span
    // Hedged attempts run side by side: the one that answers names its own span again, for `completed` / `streaming`.
    return Effect.tap(tracing.within(span, effect), () => {
      record.attemptSpan = span
    })
  }
}

/** What `firstSuccess` found: the value, who gave it, after how many calls, and when its attempt started. */
interface Found<A> {
  readonly value: A
  readonly deployment: Deployment
  readonly attempts: number
  /** `performance.now()` when the successful attempt started. */
  readonly startedAt: number
}

/**
 * Tries each candidate with retries until one succeeds. A failure the caller caused ends the search at once;
 * otherwise the last failure is reported.
 */
const firstSuccess = <A>(
  candidates: ReadonlyArray<Deployment>,
  settings: RouterSettings,
  deadline: number,
  cooldowns: Cooldowns,
  timer: TimerService,
  attempt: (deployment: Deployment) => Effect.Effect<A, ProviderError>,
  record: RequestRecord | undefined,
  traced: TracedAttempt | undefined,
  shared?: { attempts: number },
  onCall?: (deployment: Deployment | undefined) => void
): Effect.Effect<Found<A>, ProviderError> =>
  Effect.suspend(() => {
    const counter = shared ?? { attempts: 0 }
    let attemptStarted = 0
    const tryFrom = (index: number): Effect.Effect<Found<A>, ProviderError> => {
      const deployment = candidates[index]!
      const provider = String(deployment.providerKind)
      let retry = -1
      /** One attempt ended: its outcome counted, its duration observed and added to the request's upstream time. */
      const outcome = (result: string) => {
        const elapsedMs = performance.now() - attemptStarted
        onCall?.(undefined)
        Metrics.upstreamAttempts.update(1, deployment.name, provider, result)
        Metrics.upstreamDuration.update(elapsedMs / 1000, deployment.name, provider)
        if (record !== undefined) {
          record.upstreamMs += elapsedMs
          record.attempts = counter.attempts
        }
      }
      const call = Effect.suspend(() => {
        counter.attempts++
        retry++
        attemptStarted = performance.now()
        onCall?.(deployment)
        return traced === undefined ? attempt(deployment) : traced(deployment, counter.attempts, retry, attempt(deployment))
      })
      // The success path is one match, not a chain of taps: it runs on every request.
      const succeeded = (value: A) => {
        outcome("ok")
        cooldowns.succeeded(deployment)
        return Effect.succeed({ value, deployment, attempts: counter.attempts, startedAt: attemptStarted })
      }
      const gaveUp = (error: ProviderError): Effect.Effect<Found<A>, ProviderError> => {
        if (!isFallbackWorthy(error)) return Effect.fail(error)
        cooldowns.failed(deployment, timer.now())
        const next = candidates[index + 1]
        if (next !== undefined && next.name !== deployment.name) Metrics.fallbacks.update(1, deployment.name, next.name)
        return next !== undefined
          ? Effect.logDebug("falling back").pipe(
              Effect.annotateLogs({ from: deployment.name, reason: error.reason }),
              Effect.zipRight(tryFrom(index + 1))
            )
          : Effect.fail(error)
      }
      /** After a failed attempt: the schedule decides whether (and when) to call again, fed each failure in turn. */
      const retryAfter = (firstError: ProviderError): Effect.Effect<Found<A>, ProviderError> =>
        Effect.flatMap(Schedule.driver(retrySchedule(settings, deadline, timer)), (driver) => {
          const afterFailure = (error: ProviderError): Effect.Effect<Found<A>, ProviderError> => {
            outcome(error.reason)
            return Effect.matchEffect(driver.next(error), {
              onFailure: () => gaveUp(error),
              onSuccess: () => {
                Metrics.retries.update(1, deployment.name)
                return Effect.matchEffect(call, { onSuccess: succeeded, onFailure: afterFailure })
              }
            })
          }
          return afterFailure(firstError)
        })
      // The schedule is built only once an attempt has failed: the common case pays nothing for it.
      return Effect.matchEffect(call, { onSuccess: succeeded, onFailure: retryAfter })
    }
    return tryFrom(0)
  })

/** What a hedged race found: the winner, and what the race did. */
interface HedgedFound<A> extends Found<A> {
  readonly hedge: HedgeOutcome | undefined
}

/**
 * Hedged attempts: lane 0 starts at once; while no lane has produced (a completion, a stream's first chunk), one more
 * starts every `afterMs`, up to `lanes` in all. Each lane is a whole search of its own (`runLane`: retries and
 * fallbacks included). The first lane to produce wins and the others are interrupted at once (their upstream
 * requests aborted, their connections closed); a value produced after the win is given to `discard` (a stream's
 * source released). A lane that fails does not end the request while another runs or may still start — unless it
 * failed for a reason the caller caused, which every lane would share. The request fails when every lane started
 * has failed (no hedge is started after that: hedges are for slowness, and retries and fallbacks already ran).
 *
 * The lanes run in fibers of their own made from the request fiber's runtime (its FiberRefs: the request's record,
 * its log annotations), started by the Timer (the TestClock in tests); interrupting the request interrupts them.
 */
const hedgedRace = <A>(
  model: string,
  lanes: number,
  afterMs: number,
  timer: TimerService,
  runLane: (lane: number, inFlight: (deployment: Deployment | undefined) => void) => Effect.Effect<Found<A>, ProviderError>,
  discard: (value: A) => Effect.Effect<void>
): Effect.Effect<HedgedFound<A>, ProviderError> =>
  Effect.flatMap(Effect.runtime<never>(), (runtime) =>
    Effect.async<HedgedFound<A>, ProviderError>((resume) => {
      const runFork = Runtime.runFork(runtime)
      const fibers: Array<Fiber.RuntimeFiber<Found<A>, ProviderError>> = []
      const inFlight: Array<Deployment | undefined> = []
      let settled = false
      let failed = 0
      let cancelTimer: (() => void) | undefined
      const interruptAll = (except: number) => {
        fibers.forEach((fiber, lane) => {
          if (lane !== except) fiber.unsafeInterruptAsFork(fiber.id())
        })
      }
      const settle = (outcome: Effect.Effect<HedgedFound<A>, ProviderError>, winner: number) => {
        settled = true
        cancelTimer?.()
        interruptAll(winner)
        resume(outcome)
      }
      const start = (lane: number) => {
        const fiber = runFork(runLane(lane, (deployment) => (inFlight[lane] = deployment)))
        fibers[lane] = fiber
        fiber.addObserver((exit) => {
          if (Exit.isSuccess(exit)) {
            if (settled) return void runFork(discard(exit.value.value))
            const started = fibers.length
            const cancelled: Array<Deployment> = []
            inFlight.forEach((deployment, other) => {
              if (other === lane || deployment === undefined) return
              cancelled.push(deployment)
              Metrics.upstreamAttempts.update(1, deployment.name, String(deployment.providerKind), "cancelled")
            })
            const hedge = started > 1 ? { wonBy: lane + 1, started, cancelled } : undefined
            if (hedge !== undefined) Metrics.hedges.update(1, model, `won-by-${hedge.wonBy}`)
            return settle(Effect.succeed({ ...exit.value, hedge }), lane)
          }
          if (settled) return
          failed++
          const failure = Cause.failureOption(exit.cause)
          const callersFault = failure._tag === "Some" && !isFallbackWorthy(failure.value)
          if (callersFault || failed === fibers.length) {
            if (fibers.length > 1) Metrics.hedges.update(1, model, "failed")
            settle(Effect.failCause(exit.cause), -1)
          }
        })
      }
      const hedgeLater = () => {
        cancelTimer = timer.after(afterMs, () => {
          cancelTimer = undefined
          if (settled || fibers.length >= lanes) return
          start(fibers.length)
          if (fibers.length < lanes) hedgeLater()
        })
      }
      start(0)
      if (!settled && lanes > 1) hedgeLater()
      return Effect.sync(() => {
        settled = true
        cancelTimer?.()
        interruptAll(-1)
      })
    })
  )

/** Usage as reported, or none when its counts are not counts (a client never sees, nor is billed, garbage). */
const withValidUsage = <A extends { readonly usage?: unknown }>(value: A): A => {
  if (value.usage === undefined || value.usage === null) return value
  const usage = usageOf(value.usage)
  if (usage === value.usage) return value
  if (usage !== undefined) return { ...value, usage }
  const { usage: _dropped, ...rest } = value
  return rest as A
}

/** Renames the model on every answer to the public name that served it. */
const renamed = <A extends { readonly model: string }>(value: A, name: string): A =>
  value.model === name ? value : { ...value, model: name }

/**
 * Fields a translated Messages request carries that an OpenAI-compatible upstream may not take for its model: OpenAI
 * refuses `reasoning_effort` for a model without reasoning and `top_k` always (400, `param` naming it). Claude Code
 * sends `thinking` whatever model is behind the name, so an attempt refused for one of them is made once more
 * without it rather than failing the client.
 */
const droppableFields = ["reasoning_effort", "top_k"] as const

/** The droppable field an upstream's refusal names, when the request carries it. */
const refusedField = (chat: ChatCompletionRequest, error: ProviderError): (typeof droppableFields)[number] | undefined => {
  if (error.reason !== "InvalidRequest") return undefined
  const fields = chat as Readonly<Record<string, unknown>>
  return droppableFields.find((field) => fields[field] !== undefined && (error.param === field || error.message.includes(field)))
}

/** A translated attempt, made again without each droppable field the upstream refuses (`droppableFields`). */
const withoutRefusedFields = <A>(chat: ChatCompletionRequest, attempt: (chat: ChatCompletionRequest) => Effect.Effect<A, ProviderError>): Effect.Effect<A, ProviderError> =>
  Effect.catchAll(attempt(chat), (error) => {
    const field = refusedField(chat, error)
    if (field === undefined) return Effect.fail(error)
    const { [field]: _dropped, ...without } = chat as Readonly<Record<string, unknown>>
    return withoutRefusedFields(without as ChatCompletionRequest, attempt)
  })

/**
 * A native stream's `message_start` naming the public model instead of the upstream's (its data parsed and written
 * again: once per stream). An event whose data is not as expected is left as it is.
 */
const renamedStart = (event: MessagesEvent, name: string): MessagesEvent => {
  try {
    const value: unknown = JSON.parse(event.data)
    if (typeof value !== "object" || value === null) return event
    const message: unknown = (value as Record<string, unknown>)["message"]
    if (typeof message !== "object" || message === null || Array.isArray(message)) return event
    return { ...event, data: JSON.stringify({ ...value, message: { ...message, model: name } }) }
  } catch {
    return event
  }
}

/** The events of a native Responses stream that carry the response object (which names the model). */
const lifecycleEventTypes: ReadonlySet<string> = new Set(["response.created", "response.in_progress", "response.queued", "response.completed", "response.incomplete", "response.failed"])

/**
 * A native Responses event naming the public model instead of the upstream's, in the response it carries (its data
 * parsed and written again: a few events per stream). An event whose data is not as expected is left as it is.
 */
const renamedResponseEvent = (event: ResponsesEvent, name: string): ResponsesEvent => {
  if (!lifecycleEventTypes.has(event.type)) return event
  try {
    const value: unknown = JSON.parse(event.data)
    if (typeof value !== "object" || value === null) return event
    const response: unknown = (value as Record<string, unknown>)["response"]
    if (typeof response !== "object" || response === null || Array.isArray(response)) return event
    const named = { ...response, model: name }
    return { ...event, data: JSON.stringify({ ...value, response: named }), ...(event.response === undefined ? {} : { response: named }) }
  } catch {
    return event
  }
}

/**
 * The first non-empty batch of a source, or its end; empty batches are not a first token. With a deadline, the
 * wait ends there with its timeout (one plain timer, no fiber).
 */
const firstTake = <A>(
  source: ChunkSource<A>,
  deadline?: Deadline
): Effect.Effect<ReadonlyArray<A> | "end", ProviderError> =>
  bounded<ReadonlyArray<A> | "end">(deadline, (settle) => {
    const attempt = (): boolean => {
      for (;;) {
        const take = source.poll()
        if (take === undefined) return false
        if (take === "end") settle(Effect.succeed(take))
        else if (take instanceof ProviderError) settle(Effect.fail(take))
        else if (take instanceof StreamDefect) settle(Effect.die(Cause.squash(take.cause)))
        else if (take.length === 0) continue
        else settle(Effect.succeed(take))
        return true
      }
    }
    const wait = () => {
      if (!attempt()) source.onReady(wait)
    }
    wait()
    return () => source.onReady(undefined)
  })

/** What a committed source tells its tracing: each batch as the upstream sent it, and how it ended. */
interface BatchTrace<A> {
  readonly batch: (batch: ReadonlyArray<A>) => void
  readonly end: StreamTrace["end"]
}

interface Connected<A = ChatCompletionChunk> {
  readonly first: ReadonlyArray<A> | "end"
  readonly source: ChunkSource<A>
}

/** Opens a source and reads its first batch; on failure or interruption the source is released. */
const openAndTakeFirst = <A>(
  open: Effect.Effect<ChunkSource<A>, ProviderError>,
  deadline?: Deadline
): Effect.Effect<Connected<A>, ProviderError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(open), (source) =>
      restore(firstTake(source, deadline)).pipe(
        Effect.map((first) => ({ first, source })),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : releaseOf(source)))
      )
    )
  )

/** A completion that lost a hedged race: nothing to let go of. */
const discardCompletion = (): Effect.Effect<void> => Effect.void

/** A stream that lost a hedged race after connecting: its upstream released. */
const discardConnected = (connected: Connected): Effect.Effect<void> => releaseOf(connected.source)

/**
 * The routing of one registry generation: its settings, its deployments' cooldowns. A reload makes a new one for new
 * requests; requests in flight finish on the one they started with.
 */
const makeRouting = (registry: Registry, timer: TimerService, tracing: TracingService | undefined) => {
  const { settings } = registry
  const requestMs = settings.timeouts.request_ms
  const firstTokenMs = settings.timeouts.first_token_ms
  const cooldowns = makeCooldowns(settings.cooldown)
  const requestTimeout = () => timeoutError(`request within ${requestMs} ms`)

  /** A deadline on the Timer, `ms` from now. */
  const deadlineIn = (ms: number, onTimeout: () => ProviderError): Deadline => ({ at: timer.now() + ms, timer, onTimeout })

  /**
   * Orders the candidates for the public model `name` and tries them; no attempt starts past the request's deadline.
   * `traced` runs each attempt under its span (chat requests, with tracing on).
   */
  const route = <A>(
    name: string,
    record: RequestRecord | undefined,
    traced: TracedAttempt | undefined,
    attempt: (deployment: Deployment, remainingMs: number) => Effect.Effect<A, ProviderError>,
    /** For answers that may be hedged (chat): how to let go of one that lost the race. */
    discard?: (value: A) => Effect.Effect<void>
  ): Effect.Effect<HedgedFound<A> & { readonly deadline: number }, ModelNotFound | ProviderError> =>
    Effect.suspend(() => {
      const now = timer.now()
      const deadline = now + requestMs
      const bounded = (deployment: Deployment) =>
        Effect.suspend(() => {
          const remainingMs = deadline - timer.now()
          return remainingMs <= 0 ? Effect.fail(requestTimeout()) : attempt(deployment, remainingMs)
        })
      const hedge = discard === undefined ? undefined : registry.lookup(name)?.hedge
      return Effect.flatMap(candidatesFor(registry, name, cooldowns, now), (candidates) => {
        if (hedge === undefined || discard === undefined) {
          return Effect.map(firstSuccess(candidates, settings, deadline, cooldowns, timer, bounded, record, traced), (result) => ({
            ...result,
            hedge: undefined,
            deadline
          }))
        }
        // Each hedge starts on the next of the model's own deployments (the same one when it has one), then goes on
        // through the rest and the fallbacks, retries included, like the first attempt.
        const own = registry.lookup(name)?.deployments.length ?? 1
        const shared = { attempts: 0 }
        const laneCandidates = (lane: number) => {
          const shift = lane % Math.max(1, Math.min(own, candidates.length))
          return shift === 0 ? candidates : [...candidates.slice(shift, own), ...candidates.slice(0, shift), ...candidates.slice(own)]
        }
        return hedgedRace(
          name,
          1 + hedge.max,
          hedge.after_ms,
          timer,
          (lane, inFlight) => firstSuccess(laneCandidates(lane), settings, deadline, cooldowns, timer, bounded, record, traced, shared, inFlight),
          discard
        ).pipe(Effect.map((result) => ({ ...result, attempts: shared.attempts, deadline })))
      })
    })

  // Plain maps, not generators or Effect.fn: they run on every request (a named Effect.fn captures a stack trace).
  const complete = (request: ChatCompletionRequest, record?: RequestRecord) =>
    Effect.map(
      route(
        request.model,
        record,
        tracedAttempts(tracing, request, record),
        (deployment, remainingMs) => deployment.provider.complete(forDeployment(request, deployment), deadlineIn(remainingMs, requestTimeout)),
        discardCompletion
      ),
      (result): RoutedCompletion => {
        const completion = withValidUsage(result.value)
        const span = record?.attemptSpan
        if (tracing !== undefined && span !== undefined) tracing.completed(span, completion)
        return { completion: renamed(completion, result.deployment.name), deployment: result.deployment, attempts: result.attempts, hedge: result.hedge }
      }
    )

  const stream = (request: ChatCompletionRequest, record?: RequestRecord) =>
    Effect.map(
      route(request.model, record, tracedAttempts(tracing, request, record), (deployment, remainingMs) => {
        // Waiting for the first token ends at first_token_ms, or sooner at the request's deadline.
        const deadline =
          remainingMs < firstTokenMs
            ? deadlineIn(remainingMs, requestTimeout)
            : deadlineIn(firstTokenMs, () => timeoutError(`first token within ${firstTokenMs} ms`))
        return openAndTakeFirst(deployment.provider.open(forDeployment(request, deployment), deadline), deadline)
      }, discardConnected),
      (result): RoutedStream => {
        const span = record?.attemptSpan
        const trace = tracing !== undefined && span !== undefined ? tracing.streaming(span, performance.now() - result.startedAt) : undefined
        const name = result.deployment.name
        const source = committedSource(result.value, (batch) => batch.map((chunk) => renamed(withValidUsage(chunk), name)), result.deadline, trace)
        const chunks = Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
        const deadline: Deadline = { at: result.deadline, timer, onTimeout: requestTimeout }
        return { source, chunks, deadline, deployment: result.deployment, attempts: result.attempts, hedge: result.hedge }
      }
    )

  // Not traced: the attempt spans describe chat requests (and only chat requests get a server span).
  const embed = (request: EmbeddingRequest, record?: RequestRecord) =>
    Effect.map(
      route(request.model, record, undefined, (deployment, remainingMs) =>
        Effect.flatMap(deployment.provider.embed(forDeployment(request, deployment), deadlineIn(remainingMs, requestTimeout)), (embeddings) => {
          // Checked here, for every provider: an answer a vector store would refuse is malformed (and worth a fallback).
          const problem = vectorsProblem(embeddings.vectors, request.dimensions)
          if (problem === undefined) return Effect.succeed(embeddings)
          const provider = String(deployment.providerKind)
          return Effect.fail(new ProviderError({ reason: "MalformedResponse", message: `${provider} upstream sent ${problem}`, provider }))
        })
      ),
      (result) => ({ embeddings: result.value, deployment: result.deployment, attempts: result.attempts })
    )

  /** What a native deployment is sent: the client's body with the deployment's upstream model. */
  const nativeCall = (call: { readonly body: Readonly<Record<string, unknown>>; readonly headers: NativeCall["headers"] }, deployment: Deployment): NativeCall => ({
    body: call.body["model"] === deployment.upstreamModel ? call.body : { ...call.body, model: deployment.upstreamModel },
    headers: call.headers
  })

  /** A fresh message id for a translated stream (no upstream id is known when it starts). */
  const freshMessageId = () => `msg_${crypto.randomUUID().replace(/-/g, "")}`

  /** One attempt's answer: the message, the chat request a translated attempt sent, and what its span reads. */
  type MessageAttempt = Omit<RoutedMessage, keyof Served> & { readonly traced: ChatCompletion }

  const message = (call: MessagesCall, record?: RequestRecord) =>
    Effect.gen(function* () {
      const traced = tracedAttempts(tracing, traceRequestOf(call.request), record)
      const result = yield* route(call.request.model, record, traced, (deployment, remainingMs): Effect.Effect<MessageAttempt, ProviderError> => {
        const deadline = deadlineIn(remainingMs, requestTimeout)
        const native = deployment.provider.messages
        if (native !== undefined) {
          return Effect.map(native.create(nativeCall(call, deployment), deadline), (answer) => ({
            answer: { ...answer, message: renamed(answer.message as { readonly model: string }, deployment.name) },
            translated: undefined,
            traced: traceCompletionOf(answer.message, answer.usage)
          }))
        }
        return Effect.flatMap(toChatRequest(call.request, deployment.upstreamModel), (chat) =>
          Effect.map(withoutRefusedFields(chat, (sent) => deployment.provider.complete(sent, deadline)), (completion) => {
            const checked = withValidUsage(completion)
            return {
              answer: toMessage(checked, { id: messageIdOf(completion.id), model: deployment.name, stopSequences: call.request.stop_sequences }),
              translated: chat,
              traced: checked
            }
          })
        )
      })
      const span = record?.attemptSpan
      if (tracing !== undefined && span !== undefined) tracing.completed(span, result.value.traced)
      return { answer: result.value.answer, translated: result.value.translated, deployment: result.deployment, attempts: result.attempts }
    })

  const messageStream = (call: MessagesCall, record?: RequestRecord) =>
    Effect.gen(function* () {
      // What the attempt that succeeds sent, when it translated (attempts run one after another).
      const sent: { translated: ChatCompletionRequest | undefined } = { translated: undefined }
      const result = yield* route(call.request.model, record, tracedAttempts(tracing, traceRequestOf(call.request), record), (deployment, remainingMs) => {
        const deadline =
          remainingMs < firstTokenMs
            ? deadlineIn(remainingMs, requestTimeout)
            : deadlineIn(firstTokenMs, () => timeoutError(`first token within ${firstTokenMs} ms`))
        const native = deployment.provider.messages
        if (native !== undefined) {
          sent.translated = undefined
          return openAndTakeFirst(native.open(nativeCall(call, deployment), deadline), deadline)
        }
        return Effect.flatMap(toChatRequest(call.request, deployment.upstreamModel), (chat) => {
          // Usage asked for, so that the stream's message_delta reports it and the stream is accounted exactly.
          const streamed: ChatCompletionRequest = { ...chat, stream: true, stream_options: { include_usage: true } }
          sent.translated = streamed
          const translator = makeEventTranslator({ id: freshMessageId(), model: deployment.name, stopSequences: call.request.stop_sequences })
          return openAndTakeFirst(
            Effect.map(withoutRefusedFields(streamed, (sent) => deployment.provider.open(sent, deadline)), (source) => translatedSource(source, translator)),
            deadline
          )
        })
      })
      const name = result.deployment.name
      const span = record?.attemptSpan
      const trace = tracing !== undefined && span !== undefined ? eventTrace(tracing.streaming(span, performance.now() - result.startedAt)) : undefined
      // A native stream's message_start names the upstream model; a translated one names the public model already.
      const source = committedSource(
        result.value,
        sent.translated === undefined ? (batch) => batch.map((event) => (event.event === "message_start" ? renamedStart(event, name) : event)) : (batch) => batch,
        result.deadline,
        trace
      )
      const events = Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
      const deadline: Deadline = { at: result.deadline, timer, onTimeout: requestTimeout }
      return { source, events, deadline, deployment: result.deployment, attempts: result.attempts, translated: sent.translated }
    })

  const countTokens = (call: CountTokensCall, record?: RequestRecord) =>
    Effect.map(
      route(call.request.model, record, undefined, (deployment, remainingMs) => {
        const native = deployment.provider.messages
        return native === undefined
          ? Effect.succeed(undefined)
          : native.countTokens(nativeCall(call, deployment), deadlineIn(remainingMs, requestTimeout))
      }),
      (result) => ({ inputTokens: result.value, deployment: result.deployment, attempts: result.attempts })
    )

  /** The context of a translated response: a fresh id, the public model, the time now. */
  const responseContext = (call: ResponsesCall, deployment: Deployment) => ({
    id: freshId("resp"),
    model: deployment.name,
    createdAt: Math.floor(timer.now() / 1000),
    request: call.request,
    ids: freshId
  })

  /** What a native Responses deployment is sent: the call's body with the deployment's upstream model. */
  const nativeResponsesCall = (call: ResponsesCall, deployment: Deployment) => ({
    body: call.body["model"] === deployment.upstreamModel ? call.body : { ...call.body, model: deployment.upstreamModel }
  })

  const response = (call: ResponsesCall, record?: RequestRecord) =>
    Effect.map(
      route(call.request.model, record, undefined, (deployment, remainingMs): Effect.Effect<Omit<RoutedResponse, keyof Served>, ProviderError> => {
        const deadline = deadlineIn(remainingMs, requestTimeout)
        const native = deployment.provider.responses
        if (native !== undefined) {
          return Effect.map(native.create(nativeResponsesCall(call, deployment), deadline), (answer) => ({
            response: renamed(answer.response as { readonly model: string }, deployment.name),
            translated: undefined
          }))
        }
        return Effect.flatMap(toChatFromResponses(call.request, call.history, deployment.upstreamModel), (chat) =>
          Effect.map(withoutRefusedFields(chat, (sent) => deployment.provider.complete(sent, deadline)), (completion) => ({
            response: toResponse(withValidUsage(completion), responseContext(call, deployment)),
            translated: chat
          }))
        )
      }),
      (result): RoutedResponse => ({ ...result.value, deployment: result.deployment, attempts: result.attempts })
    )

  const responseStream = (call: ResponsesCall, record?: RequestRecord) => {
    const sent: { translated: ChatCompletionRequest | undefined } = { translated: undefined }
    const routed = route(call.request.model, record, undefined, (deployment, remainingMs) => {
      const deadline =
        remainingMs < firstTokenMs
          ? deadlineIn(remainingMs, requestTimeout)
          : deadlineIn(firstTokenMs, () => timeoutError(`first token within ${firstTokenMs} ms`))
      const native = deployment.provider.responses
      if (native !== undefined) {
        sent.translated = undefined
        return openAndTakeFirst(native.open(nativeResponsesCall(call, deployment), deadline), deadline)
      }
      return Effect.flatMap(toChatFromResponses(call.request, call.history, deployment.upstreamModel), (chat) => {
        const streamed: ChatCompletionRequest = { ...chat, stream: true, stream_options: { include_usage: true } }
        sent.translated = streamed
        const translator = makeResponsesTranslator(responseContext(call, deployment))
        return openAndTakeFirst(
          Effect.map(withoutRefusedFields(streamed, (sent) => deployment.provider.open(sent, deadline)), (source) => translatedResponsesSource(source, translator)),
          deadline
        )
      })
    })
    return Effect.map(routed, (result) => {
      const name = result.deployment.name
      // A native stream's lifecycle events name the upstream model; a translated one names the public model already.
      const source = committedSource(
        result.value,
        sent.translated === undefined ? (batch) => batch.map((event) => renamedResponseEvent(event, name)) : (batch) => batch,
        result.deadline,
        undefined
      )
      const events = Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source)))
      const deadline: Deadline = { at: result.deadline, timer, onTimeout: requestTimeout }
      return { source, events, deadline, deployment: result.deployment, attempts: result.attempts, translated: sent.translated }
    })
  }

  /**
   * The data phase of a committed stream: the first batch, then the upstream's, renamed to the public name with
   * their usage checked and counted. A wait for the next batch ends at first_token_ms, and never past the request's
   * deadline. The end, a failure or `close` releases the upstream. With tracing on, `trace` sees the upstream's
   * batches as they were sent, and the end.
   */
  const committedSource = <A>(
    connected: Connected<A>,
    mapBatch: (batch: ReadonlyArray<A>) => ReadonlyArray<A>,
    deadline: number,
    trace: BatchTrace<A> | undefined
  ): ChunkSource<A> => {
    const upstream = connected.source
    let first: ReadonlyArray<A> | "end" | undefined = connected.first
    let ended: Take<A> | undefined
    let cancelTimer: (() => void) | undefined
    const stopTimer = () => {
      cancelTimer?.()
      cancelTimer = undefined
    }
    const end = (take: Take<A>): Take<A> => {
      ended = take
      stopTimer()
      upstream.close()
      if (trace !== undefined && !Array.isArray(take)) trace.end(take as Exclude<Take<A>, ReadonlyArray<A>>)
      return take
    }
    const poll = (): Take<A> | undefined => {
      if (ended !== undefined) return ended
      if (first !== undefined) {
        const taken = first
        first = undefined
        if (taken === "end") return end(taken)
        trace?.batch(taken)
        return mapBatch(taken)
      }
      const take = upstream.poll()
      if (take === undefined) return undefined
      if (!Array.isArray(take)) return end(take)
      trace?.batch(take as ReadonlyArray<A>)
      return mapBatch(take as ReadonlyArray<A>)
    }
    const onReady = (wake: (() => void) | undefined) => {
      stopTimer()
      if (wake === undefined) return upstream.onReady(undefined)
      if (ended !== undefined || first !== undefined) return wake()
      const remainingMs = deadline - timer.now()
      const timeout = () =>
        timeoutError(remainingMs <= firstTokenMs ? `request within ${requestMs} ms` : `next chunk within ${firstTokenMs} ms`)
      if (remainingMs <= 0) {
        end(timeout())
        return wake()
      }
      cancelTimer = timer.after(Math.min(firstTokenMs, remainingMs), () => {
        cancelTimer = undefined
        upstream.onReady(undefined)
        end(timeout())
        wake()
      })
      upstream.onReady(() => {
        stopTimer()
        wake()
      })
    }
    const close = () => {
      if (ended !== undefined) return
      // Closed before its end: the client left (the span says so; the source ends as it always has).
      trace?.end("cancelled")
      end("end")
    }
    const release = Effect.suspend(() => {
      close()
      return releaseOf(upstream)
    })
    return { poll, onReady, close, release }
  }

  return { complete, stream, embed, message, messageStream, countTokens, response, responseStream }
}

/** The router over the current registry, its deadlines kept by the Timer. */
export const make = Effect.gen(function* () {
  const holder = yield* ModelRegistry
  const timer = yield* Timer
  const tracing = yield* Tracing
  let generation: { readonly registry: Registry; readonly routing: ReturnType<typeof makeRouting> } | undefined
  const routing = () => {
    const registry = holder.current()
    if (generation?.registry !== registry) generation = { registry, routing: makeRouting(registry, timer, tracing) }
    return generation.routing
  }
  return {
    complete: (request: ChatCompletionRequest, record?: RequestRecord) => Effect.suspend(() => routing().complete(request, record)),
    stream: (request: ChatCompletionRequest, record?: RequestRecord) => Effect.suspend(() => routing().stream(request, record)),
    embed: (request: EmbeddingRequest, record?: RequestRecord) => Effect.suspend(() => routing().embed(request, record)),
    message: (call: MessagesCall, record?: RequestRecord) => Effect.suspend(() => routing().message(call, record)),
    messageStream: (call: MessagesCall, record?: RequestRecord) => Effect.suspend(() => routing().messageStream(call, record)),
    countTokens: (call: CountTokensCall, record?: RequestRecord) => Effect.suspend(() => routing().countTokens(call, record)),
    response: (call: ResponsesCall, record?: RequestRecord) => Effect.suspend(() => routing().response(call, record)),
    responseStream: (call: ResponsesCall, record?: RequestRecord) => Effect.suspend(() => routing().responseStream(call, record))
  }
})

/** The router over whatever ModelRegistry is provided. */
export const layer: Layer.Layer<Router, never, ModelRegistry> = Layer.effect(Router, make)
