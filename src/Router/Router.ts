/**
 * Router: model name → deployments, weighted load balancing, retries on a Schedule, fallbacks, deadlines and,
 * for streams, the commit point (the first upstream chunk is in hand before the client sees a 200).
 */
import { Chunk, Clock, Context, Duration, Effect, Exit, Fiber, Layer, Option, Random, Schedule, Scope, Stream } from "effect"
import { ModelNotFound } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { isFallbackWorthy, isRetryable, ProviderError } from "../Providers/Provider.js"
import type { Provider } from "../Providers/Provider.js"
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
 * A committed stream: the upstream is connected and its first chunk read. Running `chunks` to its end (or
 * interrupting it) releases the upstream connection.
 */
export interface RoutedStream extends Served {
  /**
   * The next batch of chunks, the first one (already read) included; fails with `None` at the end. Each pull is
   * bounded by `first_token_ms` (silence) and by the request's deadline. The upstream is released at the end.
   */
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
    const tryFrom = (index: number): Effect.Effect<{ readonly value: A; readonly deployment: Deployment; readonly attempts: number }, ProviderError> => {
      const deployment = candidates[index]!
      const outcome = (result: string) =>
        Metrics.upstreamAttempts.update(1, deployment.name, String(deployment.providerKind), result)
      const once = Effect.suspend(() => {
        attempts++
        return attempt(deployment)
      }).pipe(
        Effect.tapBoth({
          onFailure: (error) => Effect.sync(() => outcome(error.reason)),
          onSuccess: () => Effect.sync(() => outcome("ok"))
        })
      )
      return once.pipe(
        // The schedule is built only once an attempt has failed: the common case pays nothing for it.
        Effect.catchAll((firstError) => {
          let replayed = false
          const again = Effect.suspend(() => (replayed ? once : ((replayed = true), Effect.fail(firstError))))
          return Effect.retry(again, retrySchedule(settings, deadline))
        }),
        Effect.tapBoth({
          onSuccess: () => Effect.sync(() => cooldowns.succeeded(deployment)),
          onFailure: (error) =>
            isFallbackWorthy(error)
              ? Effect.map(Clock.currentTimeMillis, (now) => cooldowns.failed(deployment, now))
              : Effect.void
        }),
        Effect.map((value) => ({ value, deployment, attempts })),
        Effect.catchAll((error) =>
          index + 1 < candidates.length && isFallbackWorthy(error)
            ? Effect.logDebug("falling back").pipe(
                Effect.annotateLogs({ from: deployment.name, reason: error.reason }),
                Effect.zipRight(tryFrom(index + 1))
              )
            : Effect.fail(error)
        )
      )
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

interface Connected {
  readonly first: Chunk.Chunk<ChatCompletionChunk>
  readonly pull: Effect.Effect<Chunk.Chunk<ChatCompletionChunk>, Option.Option<ProviderError>>
  readonly scope: Scope.CloseableScope
}

/** Connects to the upstream and reads up to its first chunk, inside a scope that outlives this call. */
const connect = (
  provider: Provider,
  request: ChatCompletionRequest,
  timeoutMs: number,
  onTimeout: () => ProviderError
): Effect.Effect<Connected, ProviderError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Scope.make(), (scope) =>
      restore(
        Effect.gen(function* () {
          const pull = yield* Scope.extend(
            provider.open === undefined ? Stream.toPull(provider.stream(request)) : provider.open(request),
            scope
          )
          // An empty chunk is not a first token; an ended stream (None) commits as it is.
          const pullOrEnd = pull.pipe(
            Effect.map(Option.some),
            Effect.catchAll((error) => (Option.isSome(error) ? Effect.fail(error.value) : Effect.succeedNone))
          )
          let first = Chunk.empty<ChatCompletionChunk>()
          while (Chunk.isEmpty(first)) {
            const next = yield* pullOrEnd
            if (Option.isNone(next)) break
            first = next.value
          }
          return { first, pull, scope }
        }).pipe((effect) => withDeadline(effect, timeoutMs, onTimeout))
      ).pipe(Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit))))
    )
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
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      now >= deadline ? Effect.fail(timeoutError(`request within ${requestMs} ms`)) : attempt(deadline - now)
    )

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
        withDeadline(deployment.provider.complete(forDeployment(request, deployment)), remainingMs, () =>
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
      const { deadline } = result
      const { first, pull, scope } = result.value
      const name = result.deployment.name
      const release = Scope.close(scope, Exit.void)
      const renamedBatch = Chunk.map((chunk: ChatCompletionChunk) => {
        Metrics.recordUsage(name, chunk.usage)
        return renamed(chunk, name)
      })
      // A pull may wait for the next chunk at most first_token_ms, and never past the request's deadline.
      const boundedPull = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const remainingMs = deadline - now
        const limitMs = Math.min(firstTokenMs, remainingMs)
        const onTimeout = () =>
          Option.some(timeoutError(remainingMs <= firstTokenMs ? `request within ${requestMs} ms` : `next chunk within ${firstTokenMs} ms`))
        return remainingMs <= 0 ? Effect.fail(onTimeout()) : withDeadline(pull, limitMs, onTimeout)
      })
      let firstTaken = false
      const next = Effect.suspend(() => {
        if (!firstTaken) {
          firstTaken = true
          if (Chunk.isNonEmpty(first)) return Effect.succeed(renamedBatch(first))
        }
        return Effect.map(boundedPull, renamedBatch)
      }).pipe(Effect.tapError(() => release))
      const chunks = Stream.repeatEffectChunkOption(next).pipe(Stream.ensuring(release))
      return { next, chunks, release, deployment: result.deployment, attempts: result.attempts }
    })

  return { complete, stream }
})

/** The router over whatever ModelRegistry is provided. */
export const layer: Layer.Layer<Router, never, ModelRegistry> = Layer.effect(Router, make)
