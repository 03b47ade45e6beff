/**
 * A committed stream of chunks read without an Effect fiber per batch. Upstream bytes arrive as Node callbacks
 * and leave as socket writes; in between, the benchmark showed every run of a fiber (to pull a batch, or to race a
 * timer) as a fixed cost per batch and the largest share of a streamed request's allocations. So the data phase is
 * a small synchronous interface — take what is ready, or be woken when something is — and the Effect views of it
 * (`pullOf`, and the Router's `next` and `chunks`) are derived from it, not the other way round.
 */
import { Cause, Chunk, Effect, Exit, Fiber, Option, Runtime, Scope } from "effect"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"
import { ProviderError } from "./ProviderError.js"

/** A bug found while reading a stream (a defect in a provider): logged with its cause, answered as an internal error. */
export class StreamDefect {
  readonly _tag = "StreamDefect"
  constructor(readonly cause: Cause.Cause<unknown>) {}
}

/** What a source has ready: a batch of items, its end, or what ended it. */
export type Take<A> = ReadonlyArray<A> | "end" | ProviderError | StreamDefect

/** A stream of items pulled synchronously. One consumer; after `end` or a failure, every poll repeats it. */
export interface ChunkSource<A = ChatCompletionChunk> {
  /** Takes everything ready since the last take, or `undefined` when nothing is ready yet. */
  readonly poll: () => Take<A> | undefined
  /** Calls `wake` once, as soon as `poll` has something (at once if it already has); `undefined` cancels it. */
  readonly onReady: (wake: (() => void) | undefined) => void
  /** Stops reading and releases the upstream; idempotent. */
  readonly close: () => void
  /** `close`, as an Effect that also waits until the upstream is released; for sources that release asynchronously. */
  readonly release?: Effect.Effect<void>
}

/** Closes a source and waits for its release. */
export const releaseOf = <A>(source: ChunkSource<A>): Effect.Effect<void> => source.release ?? Effect.sync(source.close)

const isBatch = <A>(take: Take<A>): take is ReadonlyArray<A> => Array.isArray(take)

/** The Effect view of one poll: a batch, `None` at the end, the failure, or the defect. */
export const takeToEffect = <A>(take: Take<A>): Effect.Effect<Chunk.Chunk<A>, Option.Option<ProviderError>> =>
  isBatch(take)
    ? Effect.succeed(Chunk.unsafeFromArray(take))
    : take === "end"
      ? Effect.fail(Option.none())
      : take instanceof ProviderError
        ? Effect.fail(Option.some(take))
        : Effect.failCause(take.cause as Cause.Cause<never>)

/** Pulls the next batch as an Effect; interrupting the wait cancels it. */
export const pullOf = <A>(source: ChunkSource<A>): Effect.Effect<Chunk.Chunk<A>, Option.Option<ProviderError>> =>
  Effect.async((resume) => {
    const ready = source.poll()
    if (ready !== undefined) return resume(takeToEffect(ready))
    source.onReady(() => resume(takeToEffect(source.poll() ?? "end")))
    return Effect.sync(() => source.onReady(undefined))
  })

/** A source that gives `items` once, then ends. */
export const fromItems = <A>(items: ReadonlyArray<A>): ChunkSource<A> => {
  let given = items.length === 0
  return {
    poll: () => {
      if (given) return "end"
      given = true
      return items
    },
    onReady: (wake) => wake?.(),
    close: () => {
      given = true
    }
  }
}

/**
 * The same source, with each item it gives seen by `onItem` and `onEnd` called once when the stream ends however it
 * ends: read to its end, failed, or closed (the client left).
 */
export const observed = <A>(source: ChunkSource<A>, onItem: (item: A) => void, onEnd: () => void): ChunkSource<A> => {
  let ended = false
  const end = () => {
    if (ended) return
    ended = true
    onEnd()
  }
  return {
    poll: () => {
      const take = source.poll()
      if (take === undefined) return take
      if (isBatch(take)) for (const item of take) onItem(item)
      else end()
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

/**
 * A source over an Effect pull (a provider that only implements `stream`, through `Stream.toPull`): each poll
 * with nothing ready starts one pull in a fiber. `close` interrupts it and closes `scope`.
 */
export const fromPull = <A>(
  pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<ProviderError>>,
  runtime: Runtime.Runtime<never>,
  scope: Scope.CloseableScope
): ChunkSource<A> => {
  const runFork = Runtime.runFork(runtime)
  let ready: Take<A> | undefined
  let finished: Take<A> | undefined
  let pulling: Fiber.RuntimeFiber<Chunk.Chunk<A>, Option.Option<ProviderError>> | undefined
  let waiting: (() => void) | undefined
  let closed = false

  const settle = (exit: Exit.Exit<Chunk.Chunk<A>, Option.Option<ProviderError>>) => {
    pulling = undefined
    if (closed) return
    if (Exit.isSuccess(exit)) {
      ready = Chunk.toReadonlyArray(exit.value)
    } else {
      const failure = Cause.failureOption(exit.cause)
      finished = Option.isSome(failure) ? (Option.isSome(failure.value) ? failure.value.value : "end") : new StreamDefect(exit.cause)
    }
    const wake = waiting
    waiting = undefined
    wake?.()
  }
  const start = () => {
    if (pulling !== undefined || closed) return
    const fiber = runFork(pull)
    pulling = fiber
    fiber.addObserver(settle)
  }
  let closingFiber: Fiber.RuntimeFiber<void> | undefined
  /** Interrupts the pull in flight, then closes the scope (the stream's finalizers); once. */
  const closing = (): Fiber.RuntimeFiber<void> => {
    if (closingFiber !== undefined) return closingFiber
    closed = true
    waiting = undefined
    const fiber = pulling
    pulling = undefined
    closingFiber = runFork(Effect.zipRight(fiber === undefined ? Effect.void : Fiber.interrupt(fiber), Scope.close(scope, Exit.void)))
    return closingFiber
  }
  const take = (): Take<A> | undefined => {
    if (ready !== undefined) {
      const batch = ready
      ready = undefined
      return batch
    }
    return finished
  }
  return {
    poll: () => {
      const taken = take()
      if (taken === undefined) start()
      return taken ?? (closed ? "end" : take())
    },
    onReady: (wake) => {
      waiting = wake
      if (wake === undefined) return
      if (ready !== undefined || finished !== undefined || closed) {
        waiting = undefined
        return wake()
      }
      start()
    },
    close: () => {
      closing()
    },
    release: Effect.suspend(() => Fiber.join(closing()))
  }
}
