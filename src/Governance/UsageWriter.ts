/**
 * Ended requests' usage, written to the governance store in the background and in batches. A request only appends
 * to a bounded queue — no fiber and no round trip of its own — and one fiber writes whatever has gathered with
 * `finishAll`: one pipeline on Redis for a whole batch. When its scope closes, what is still queued is written
 * before the store goes (within `flushMs`).
 */
import { Chunk, Effect, Queue, Runtime } from "effect"
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
    const queue = yield* Queue.dropping<EndedRequest>(options.capacity ?? 100_000)

    const write = (batch: Chunk.Chunk<EndedRequest>) =>
      Chunk.isEmpty(batch) ? Effect.void : store.finishAll(Chunk.toReadonlyArray(batch)).pipe(Effect.catchAll(onFailure))

    // A batch taken from the queue is written whole, even while the scope closes.
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.takeBetween(queue, 1, maxBatch), (batch) => Effect.uninterruptible(write(batch)))))
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Queue.takeAll(queue), write).pipe(Effect.timeout(options.flushMs ?? 2_000), Effect.ignore)
    )

    return {
      record: (lease, usage) => {
        if (Queue.unsafeOffer(queue, { lease, usage })) return
        runFork(onFailure(new StoreError({ message: `usage queue full: the usage of key ${usage.keyId} was dropped` })))
      }
    }
  })
