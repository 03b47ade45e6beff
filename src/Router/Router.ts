/**
 * Router: model name → deployments, weighted load balancing, retries on a Schedule, fallbacks, deadlines and,
 * for streams, the commit point (the first upstream chunk is in hand before the client sees a 200).
 */
import { Cause, Chunk, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Random, Runtime, Schedule, Scope, Stream } from "effect"
import { ModelNotFound } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { fromPull, pullOf, releaseOf, StreamDefect } from "../Providers/ChunkSource.js"
import type { ChunkSource, Take } from "../Providers/ChunkSource.js"
import { isFallbackWorthy, isRetryable, ProviderError } from "../Providers/Provider.js"
import { bounded } from "../Providers/Upstream.js"
import type { AttemptDeadline, Provider } from "../Providers/Provider.js"
import { ModelRegistry } from "./Registry.js"
import type { Deployment, Registry } from "./Registry.js"
import type { RouterSettings } from "./RegistryFile.js"

/** Which deployment answered, and after how many upstream calls in all. */
export interface Served {
  readonly deployment: Deployment
  readonly attempts: number
}

/** A completed non-streamed request. `completion.model` is the public name that served it. */
export interface RoutedCompletion extends Served {
  readonly completion: ChatCompletion
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
  /** The next batch of `source` as an Effect; fails with `None` at the end. */
  readonly next: Effect.Effect<Chunk.Chunk<ChatCompletionChunk>, Option.Option<ProviderError>>
  /** The same batches as a Stream. */
  readonly chunks: Stream.Stream<ChatCompletionChunk, ProviderError>
  /** Releases the upstream connection now; for a caller that may drop `chunks` without running it. */
  readonly release: Effect.Effect<void>
}

/** Routes chat requests to deployments. */
export class Router extends Context.Tag("llm-proxy/Router")<
  Router,
  {
    readonly complete: (request: ChatCompletionRequest) => Effect.Effect<RoutedCompletion, ModelNotFound | ProviderError>
    readonly stream: (request: ChatCompletionRequest) => Effect.Effect<RoutedStream, ModelNotFound | ProviderError>
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
export const retrySchedule = (settings: RouterSettings, deadline: number) =>
  Schedule.exponential(Duration.millis(settings.retry.initial_delay_ms)).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((delay) => Duration.min(delay, Duration.millis(settings.retry.max_delay_ms))),
    Schedule.intersect(Schedule.recurs(settings.retry.max_retries)),
    Schedule.whileInput(isRetryable),
    Schedule.passthrough,
    Schedule.modifyDelay((error: ProviderError, delay) =>
      error.retryAfterMs === undefined ? delay : Duration.millis(error.retryAfterMs)
    ),
    Schedule.checkEffect((error: ProviderError) =>
      Effect.map(Clock.currentTimeMillis, (now) => now + (error.retryAfterMs ?? 0) < deadline)
    ),
    // A backoff never sleeps past the deadline: the attempt that would start there fails with Timeout instead.
    Schedule.modifyDelayEffect((_: ProviderError, delay) =>
      Effect.map(Clock.currentTimeMillis, (now) => Duration.min(delay, Duration.millis(Math.max(0, deadline - now))))
    )
  )

/** The request as the deployment's upstream should see it. */
const forDeployment = (request: ChatCompletionRequest, deployment: Deployment): ChatCompletionRequest =>
  request.model === deployment.upstreamModel ? request : { ...request, model: deployment.upstreamModel }

/**
 * Tries each candidate with retries until one succeeds. A failure the caller caused ends the search at once;
 * otherwise the last failure is reported.
 */
const firstSuccess = <A>(
  candidates: ReadonlyArray<Deployment>,
  settings: RouterSettings,
  deadline: number,
  cooldowns: Cooldowns,
  attempt: (deployment: Deployment) => Effect.Effect<A, ProviderError>
): Effect.Effect<{ readonly value: A; readonly deployment: Deployment; readonly attempts: number }, ProviderError> =>
  Effect.suspend(() => {
    let attempts = 0
    type Found = { readonly value: A; readonly deployment: Deployment; readonly attempts: number }
    const tryFrom = (index: number): Effect.Effect<Found, ProviderError> => {
      const deployment = candidates[index]!
      const outcome = (result: string) =>
        Metrics.upstreamAttempts.update(1, deployment.name, String(deployment.providerKind), result)
      const call = Effect.suspend(() => {
        attempts++
        return attempt(deployment)
      })
      // The success path is one match, not a chain of taps: it runs on every request.
      const succeeded = (value: A) => {
        outcome("ok")
        cooldowns.succeeded(deployment)
        return Effect.succeed({ value, deployment, attempts })
      }
      const gaveUp = (error: ProviderError): Effect.Effect<Found, ProviderError> => {
        if (!isFallbackWorthy(error)) return Effect.fail(error)
        return Effect.clockWith((clock) => {
          cooldowns.failed(deployment, clock.unsafeCurrentTimeMillis())
          return index + 1 < candidates.length
            ? Effect.logDebug("falling back").pipe(
                Effect.annotateLogs({ from: deployment.name, reason: error.reason }),
                Effect.zipRight(tryFrom(index + 1))
              )
            : Effect.fail(error)
        })
      }
      return Effect.matchEffect(call, {
        onSuccess: succeeded,
        // The schedule is built only once an attempt has failed: the common case pays nothing for it.
        onFailure: (firstError) => {
          outcome(firstError.reason)
          let replayed = false
          const again = Effect.suspend(() =>
            replayed ? Effect.tapError(call, (error) => Effect.sync(() => outcome(error.reason))) : ((replayed = true), Effect.fail(firstError))
          )
          return Effect.matchEffect(Effect.retry(again, retrySchedule(settings, deadline)), { onSuccess: succeeded, onFailure: gaveUp })
        }
      })
    }
    return tryFrom(0)
  })

/** Renames the model on every answer to the public name that served it. */
const renamed = <A extends { readonly model: string }>(value: A, name: string): A =>
  value.model === name ? value : { ...value, model: name }

/** The clock every Effect runtime starts with; tests swap in a TestClock. */
const liveClock = Effect.runSync(Effect.clock)

/**
 * `Effect.timeoutFail`, cheaper on the live clock. The standard combinator races two fibers, which the benchmark
 * showed as ~80 µs of every request; one fork and a timer do the same. Under any other clock (a TestClock) the
 * standard combinator keeps time with it.
 */
export const withDeadline = <A, E>(
  effect: Effect.Effect<A, E>,
  ms: number,
  onTimeout: () => E
): Effect.Effect<A, E> =>
  Effect.clockWith((clock) =>
    clock !== liveClock
      ? Effect.timeoutFail(effect, { duration: ms, onTimeout })
      : Effect.flatMap(Effect.fork(effect), (fiber) =>
          Effect.async<A, E>((resume) => {
            let settled = false
            const settle = (outcome: Effect.Effect<A, E>) => {
              if (settled) return
              settled = true
              clearTimeout(timer)
              resume(outcome)
            }
            const timer = setTimeout(() => settle(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout()))), ms)
            fiber.addObserver((exit) => settle(exit))
            return Effect.suspend(() => {
              settled = true
              clearTimeout(timer)
              return Fiber.interrupt(fiber)
            })
          })
        )
  )

/**
 * Calls `fire` after `ms` on the given clock: a plain timer on the live clock, a sleeping fiber under any other (a
 * TestClock), so that tests keep time with it. Returns the cancellation.
 */
const schedule = (clock: Clock.Clock, runtime: Runtime.Runtime<never>, ms: number, fire: () => void): (() => void) => {
  if (clock === liveClock) {
    const timer = setTimeout(fire, ms)
    return () => clearTimeout(timer)
  }
  const fiber = Runtime.runFork(runtime)(Effect.zipRight(clock.sleep(Duration.millis(ms)), Effect.sync(fire)))
  return () => fiber.unsafeInterruptAsFork(fiber.id())
}

/** The provider's connected stream: its own `open`, or its `stream` pulled through a source. */
const openSource = (provider: Provider, request: ChatCompletionRequest): Effect.Effect<ChunkSource, ProviderError> =>
  provider.open !== undefined
    ? provider.open(request)
    : // The runtime is taken outside the uninterruptible region: the pulls it runs must stay interruptible.
      Effect.flatMap(Effect.runtime<never>(), (runtime) =>
        Effect.uninterruptible(
          Effect.gen(function* () {
            const scope = yield* Scope.make()
            const pull = yield* Scope.extend(Stream.toPull(provider.stream(request)), scope)
            return fromPull(pull, runtime, scope)
          })
        )
      )

/**
 * The first non-empty batch of a source, or its end; empty batches are not a first token. With a deadline, the
 * wait ends there with its timeout (one plain timer, no fiber).
 */
const firstTake = (
  source: ChunkSource,
  deadline?: AttemptDeadline
): Effect.Effect<ReadonlyArray<ChatCompletionChunk> | "end", ProviderError> =>
  bounded(deadline, (settle) => {
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

interface Connected {
  readonly first: ReadonlyArray<ChatCompletionChunk> | "end"
  readonly source: ChunkSource
}

/** Opens a source and reads its first batch; on failure or interruption the source is released. */
const openAndTakeFirst = (
  open: Effect.Effect<ChunkSource, ProviderError>,
  deadline?: AttemptDeadline
): Effect.Effect<Connected, ProviderError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(restore(open), (source) =>
      restore(firstTake(source, deadline)).pipe(
        Effect.map((first) => ({ first, source })),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : releaseOf(source)))
      )
    )
  )

/**
 * Connects to the upstream and reads up to its first chunk, within `timeoutMs`. A provider with `open` keeps the
 * time itself on the live clock; otherwise (or under a TestClock) a timer fiber does.
 */
const connect = (
  provider: Provider,
  request: ChatCompletionRequest,
  timeoutMs: number,
  onTimeout: () => ProviderError
): Effect.Effect<Connected, ProviderError> =>
  Effect.clockWith((clock) => {
    if (clock === liveClock && provider.open !== undefined) {
      const deadline = { at: Date.now() + timeoutMs, onTimeout }
      return openAndTakeFirst(provider.open(request, deadline), deadline)
    }
    return withDeadline(openAndTakeFirst(openSource(provider, request)), timeoutMs, onTimeout)
  })

/** One non-streamed attempt within `timeoutMs`: the provider's own `completeBy` on the live clock, else a timer fiber. */
const completeWithin = (
  provider: Provider,
  request: ChatCompletionRequest,
  timeoutMs: number,
  onTimeout: () => ProviderError
): Effect.Effect<ChatCompletion, ProviderError> =>
  Effect.clockWith((clock) =>
    clock === liveClock && provider.completeBy !== undefined
      ? provider.completeBy(request, { at: Date.now() + timeoutMs, onTimeout })
      : withDeadline(provider.complete(request), timeoutMs, onTimeout)
  )

/** The router over the registry. */
export const make = Effect.gen(function* () {
  const registry = yield* ModelRegistry
  const { settings } = registry
  const requestMs = settings.timeouts.request_ms
  const firstTokenMs = settings.timeouts.first_token_ms
  const cooldowns = makeCooldowns(settings.cooldown)

  /**
   * Each attempt is bounded by what is left of the request's deadline (and, for streams, by `first_token_ms`), so
   * no separate race over the whole request is needed; an attempt that would start past the deadline does not.
   */
  const bounded = <A>(deadline: number, attempt: (remainingMs: number) => Effect.Effect<A, ProviderError>) =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      return now >= deadline ? Effect.fail(timeoutError(`request within ${requestMs} ms`)) : attempt(deadline - now)
    })

  /** Orders the candidates for the request's model and tries them, each attempt bounded by the deadline. */
  const route = <A>(request: ChatCompletionRequest, attempt: (deployment: Deployment, remainingMs: number) => Effect.Effect<A, ProviderError>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const deadline = now + requestMs
      return Effect.flatMap(candidatesFor(registry, request.model, cooldowns, now), (candidates) =>
        firstSuccess(candidates, settings, deadline, cooldowns, (deployment) =>
          bounded(deadline, (remainingMs) => attempt(deployment, remainingMs))
        ).pipe(Effect.map((result) => ({ ...result, deadline })))
      )
    })

  // Plain generators, not Effect.fn: a named Effect.fn captures a stack trace per call, measurable per request.
  const complete = (request: ChatCompletionRequest) =>
    Effect.gen(function* () {
      const result = yield* route(request, (deployment, remainingMs) =>
        completeWithin(deployment.provider, forDeployment(request, deployment), remainingMs, () =>
          timeoutError(`request within ${requestMs} ms`)
        )
      )
      Metrics.recordUsage(result.deployment.name, result.value.usage)
      return {
        completion: renamed(result.value, result.deployment.name),
        deployment: result.deployment,
        attempts: result.attempts
      }
    })

  const stream = (request: ChatCompletionRequest) =>
    Effect.gen(function* () {
      const result = yield* route(request, (deployment, remainingMs) => {
        // Waiting for the first token ends at first_token_ms, or sooner at the request's deadline.
        const [limitMs, what] =
          remainingMs < firstTokenMs ? [remainingMs, `request within ${requestMs} ms`] : [firstTokenMs, `first token within ${firstTokenMs} ms`]
        return connect(deployment.provider, forDeployment(request, deployment), limitMs, () => timeoutError(what))
      })
      const source = committedSource(result.value, result.deployment.name, result.deadline, yield* Effect.clock, yield* Effect.runtime<never>())
      const next = pullOf(source)
      const release = releaseOf(source)
      const chunks = Stream.repeatEffectChunkOption(next).pipe(Stream.ensuring(release))
      return { source, next, chunks, release, deployment: result.deployment, attempts: result.attempts }
    })

  /**
   * The data phase of a committed stream: the first batch, then the upstream's, renamed to the public name with
   * their usage counted. A wait for the next batch ends at first_token_ms, and never past the request's deadline.
   * The end, a failure or `close` releases the upstream.
   */
  const committedSource = (
    connected: Connected,
    name: string,
    deadline: number,
    clock: Clock.Clock,
    runtime: Runtime.Runtime<never>
  ): ChunkSource => {
    const upstream = connected.source
    let first: ReadonlyArray<ChatCompletionChunk> | "end" | undefined = connected.first
    let ended: Take<ChatCompletionChunk> | undefined
    let cancelTimer: (() => void) | undefined
    const stopTimer = () => {
      cancelTimer?.()
      cancelTimer = undefined
    }
    const end = (take: Take<ChatCompletionChunk>): Take<ChatCompletionChunk> => {
      ended = take
      stopTimer()
      upstream.close()
      return take
    }
    const renamedBatch = (batch: ReadonlyArray<ChatCompletionChunk>): ReadonlyArray<ChatCompletionChunk> =>
      batch.map((chunk) => {
        Metrics.recordUsage(name, chunk.usage)
        return renamed(chunk, name)
      })
    const poll = (): Take<ChatCompletionChunk> | undefined => {
      if (ended !== undefined) return ended
      if (first !== undefined) {
        const taken = first
        first = undefined
        return taken === "end" ? end(taken) : renamedBatch(taken)
      }
      const take = upstream.poll()
      if (take === undefined) return undefined
      return Array.isArray(take) ? renamedBatch(take) : end(take)
    }
    const onReady = (wake: (() => void) | undefined) => {
      stopTimer()
      if (wake === undefined) return upstream.onReady(undefined)
      if (ended !== undefined || first !== undefined) return wake()
      const remainingMs = deadline - clock.unsafeCurrentTimeMillis()
      const timeout = () =>
        timeoutError(remainingMs <= firstTokenMs ? `request within ${requestMs} ms` : `next chunk within ${firstTokenMs} ms`)
      if (remainingMs <= 0) {
        end(timeout())
        return wake()
      }
      cancelTimer = schedule(clock, runtime, Math.min(firstTokenMs, remainingMs), () => {
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
      if (ended === undefined) end("end")
    }
    const release = Effect.suspend(() => {
      close()
      return releaseOf(upstream)
    })
    return { poll, onReady, close, release }
  }

  return { complete, stream }
})

/** The router over whatever ModelRegistry is provided. */
export const layer: Layer.Layer<Router, never, ModelRegistry> = Layer.effect(Router, make)
