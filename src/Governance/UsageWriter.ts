/**
 * Ended requests' usage, written to the governance store in the background and in batches. A request only appends
 * to a bounded array — no fiber, no queue operation and no round trip of its own — and what has gathered by the next
 * turn of the event loop is written with one `finishAll` (one pipeline on Redis), one batch at a time. When its scope
 * closes, the batch being written is awaited and what is still waiting is written before the store goes (within
 * `flushMs`).
 */
import { Effect, Fiber, Runtime } from "effect"
import type { Scope } from "effect"
import { Store, StoreError } from "./Store.js"
import type { EndedRequest, UsageRecord } from "./Store.js"

/** Records ended requests on the store; never waits, never fails. */
export interface UsageWriter {
  /** Queues one ended request (its lease, if it held one, is released when the batch is written). */
  readonly record: (lease: string | undefined, usage: UsageRecord) => void
}

export interface UsageWriterOptions {
  /** Ended requests waiting to be written; past it they are dropped and reported as a store failure. */
  readonly capacity?: number
  /** Ended requests written in one `finishAll`. */
  readonly maxBatch?: number
  /** The bound of the last write, when the scope closes. */
  readonly flushMs?: number
}

/**
 * A writer on the `Store`, with `onFailure` told of every batch the store failed to take (and of requests dropped
 * from a full queue).
 */
export const make = (
  onFailure: (error: StoreError) => Effect.Effect<void>,
  options: UsageWriterOptions = {}
): Effect.Effect<UsageWriter, never, Store | Scope.Scope> =>
  Effect.gen(function* () {
    const store = yield* Store
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const maxBatch = options.maxBatch ?? 512
    const capacity = options.capacity ?? 100_000
    let waiting: Array<EndedRequest> = []
    let writing: Fiber.RuntimeFiber<void> | undefined
    let scheduled = false
    let closed = false

    const write = (batch: ReadonlyArray<EndedRequest>) =>
      batch.length === 0 ? Effect.void : store.finishAll(batch).pipe(Effect.catchAll(onFailure))

    /** Takes the next batch off the front of what waits. */
    const takeBatch = (): ReadonlyArray<EndedRequest> => {
      if (waiting.length <= maxBatch) {
        const batch = waiting
        waiting = []
        return batch
      }
      return waiting.splice(0, maxBatch)
    }

    // One batch in flight at a time, written whole even while the scope closes; the next one starts when it is done.
    const writeNext = () => {
      scheduled = false
      if (closed || writing !== undefined || waiting.length === 0) return
      const fiber = runFork(Effect.uninterruptible(write(takeBatch())))
      writing = fiber
      fiber.addObserver(() => {
        writing = undefined
        schedule()
      })
    }
    const schedule = () => {
      if (scheduled || closed || writing !== undefined || waiting.length === 0) return
      scheduled = true
      // The next turn of the event loop: the requests that end in this one go in the same batch.
      setImmediate(writeNext)
    }

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        const inFlight = writing
        const rest = Effect.suspend(function drain(): Effect.Effect<void> {
          return waiting.length === 0 ? Effect.void : Effect.zipRight(write(takeBatch()), Effect.suspend(drain))
        })
        return (inFlight === undefined ? rest : Effect.zipRight(Fiber.await(inFlight), rest)).pipe(
          Effect.timeout(options.flushMs ?? 2_000),
          Effect.ignore
        )
      })
    )

    return {
      record: (lease, usage) => {
        if (waiting.length < capacity) {
          waiting.push({ lease, usage })
          return schedule()
        }
        runFork(onFailure(new StoreError({ message: `usage queue full: the usage of key ${usage.keyId} was dropped` })))
      }
    }
  })
