/**
 * The usage writer: requests' usage reaches the store in batches, in order, all of it (also what is still queued
 * when the scope closes); a full queue drops and reports, a failing store is reported and the writer goes on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Scope } from "effect"
import * as MemoryStore from "../../src/Governance/MemoryStore.js"
import { Store, StoreError } from "../../src/Governance/Store.js"
import type { EndedRequest, StoreService, UsageRecord } from "../../src/Governance/Store.js"
import * as UsageWriter from "../../src/Governance/UsageWriter.js"
import * as Timer from "../../src/Timer.js"

const usageOf = (keyId: string, promptTokens: number): UsageRecord => ({
  keyId,
  model: "m",
  promptTokens,
  completionTokens: 0,
  spendUsd: 0,
  countInWindows: true
})

/** A memory store whose `finishAll` batches are seen (and may be held or failed by the test). */
const watchedStore = (hold?: Effect.Effect<void>, failFirst = false) =>
  Effect.gen(function* () {
    const inner = yield* MemoryStore.make()
    const batches: Array<ReadonlyArray<EndedRequest>> = []
    let failed = false
    const store: StoreService = {
      ...inner,
      finishAll: (ended) =>
        Effect.suspend(() => {
          batches.push(ended)
          if (failFirst && !failed) {
            failed = true
            return Effect.fail(new StoreError({ message: "the store is down" }))
          }
          return Effect.zipRight(hold ?? Effect.void, inner.finishAll(ended))
        })
    }
    return { inner, store, batches }
  })

/** Runs `body` with a writer over `store` in a scope of its own, closed by the test. */
const writerOn = (store: StoreService, failures: Array<string>, options?: UsageWriter.UsageWriterOptions) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const writer = yield* UsageWriter.make((error) => Effect.sync(() => failures.push(error.message)), options).pipe(
      Effect.provide(Layer.succeed(Store, store)),
      Scope.extend(scope)
    )
    return { writer, close: Scope.close(scope, Exit.void) }
  })

const day = (store: MemoryStore.MemoryStoreService) => store.usage(new Date().toISOString().slice(0, 10))

describe("UsageWriter", () => {
  it.live("writes every recorded request, in order, in far fewer batches than requests", () =>
    Effect.gen(function* () {
      const { batches, inner, store } = yield* watchedStore()
      const failures: Array<string> = []
      const { close, writer } = yield* writerOn(store, failures)
      for (let index = 0; index < 1000; index++) writer.record(undefined, usageOf("k", index))
      yield* Effect.sleep("20 millis")
      const written = batches.flat()
      expect(written.map((ended) => ended.usage.promptTokens)).toEqual(Array.from({ length: 1000 }, (_, index) => index))
      expect(batches.length).toBeLessThanOrEqual(2)
      const rows = yield* day(inner)
      expect(rows).toEqual([expect.objectContaining({ key: "k", requests: 1000, prompt_tokens: (999 * 1000) / 2 })])
      expect(failures).toEqual([])
      yield* close
    }).pipe(Effect.provideService(Timer.Timer, Timer.live))
  )

  it.live("writes what is still queued when its scope closes, the batch being written included", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const { batches, inner, store } = yield* watchedStore(Deferred.await(release))
      const failures: Array<string> = []
      const { close, writer } = yield* writerOn(store, failures)
      writer.record(undefined, usageOf("k", 1))
      yield* Effect.sleep("10 millis")
      // The first batch is being written (held); these wait in the queue.
      for (let index = 2; index <= 5; index++) writer.record(undefined, usageOf("k", index))
      const closing = yield* Effect.fork(close)
      yield* Effect.sleep("10 millis")
      yield* Deferred.succeed(release, undefined)
      yield* closing.await
      expect(batches.flat().map((ended) => ended.usage.promptTokens)).toEqual([1, 2, 3, 4, 5])
      const rows = yield* day(inner)
      expect(rows).toEqual([expect.objectContaining({ requests: 5, prompt_tokens: 15 })])
      expect(failures).toEqual([])
    }).pipe(Effect.provideService(Timer.Timer, Timer.live))
  )

  it.live("holds at most its capacity: past it a request's usage is dropped and reported", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const { batches, store } = yield* watchedStore(Deferred.await(release))
      const failures: Array<string> = []
      const { close, writer } = yield* writerOn(store, failures, { capacity: 4 })
      writer.record(undefined, usageOf("first", 0))
      yield* Effect.sleep("10 millis")
      for (let index = 1; index <= 7; index++) writer.record(undefined, usageOf(`k${index}`, index))
      yield* Effect.sleep("10 millis")
      expect(failures).toEqual(["k5", "k6", "k7"].map((key) => `usage queue full: the usage of key ${key} was dropped`))
      yield* Deferred.succeed(release, undefined)
      yield* close
      expect(batches.flat().map((ended) => ended.usage.keyId)).toEqual(["first", "k1", "k2", "k3", "k4"])
    }).pipe(Effect.provideService(Timer.Timer, Timer.live))
  )

  it.live("reports a batch the store refused and writes the next ones", () =>
    Effect.gen(function* () {
      const { inner, store } = yield* watchedStore(undefined, true)
      const failures: Array<string> = []
      const { close, writer } = yield* writerOn(store, failures)
      writer.record(undefined, usageOf("k", 1))
      yield* Effect.sleep("10 millis")
      writer.record(undefined, usageOf("k", 2))
      yield* Effect.sleep("10 millis")
      expect(failures).toEqual(["the store is down"])
      const rows = yield* day(inner)
      expect(rows).toEqual([expect.objectContaining({ requests: 1, prompt_tokens: 2 })])
      yield* close
    }).pipe(Effect.provideService(Timer.Timer, Timer.live))
  )
})
