/**
 * The memory store: the shared contract on a TestClock, then what only a controlled clock can show exactly (the
 * sliding window to the millisecond, period roll-overs) and that its memory stays bounded.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import * as MemoryStore from "../../src/Governance/MemoryStore.js"
import type { Admission, KeyLimits } from "../../src/Governance/Store.js"
import { leaseTtlMs } from "../../src/Governance/Store.js"
import * as Timer from "../../src/Timer.js"
import { storeContract } from "./StoreContract.js"

/** A Saturday mid-morning, half a second into its second. */
const start = Date.UTC(2025, 4, 17, 10, 20, 30, 500)

const withStore = <A, E>(body: (store: MemoryStore.MemoryStoreService) => Effect.Effect<A, E>, startMs = start) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(startMs)
    return yield* body(yield* MemoryStore.make())
  }).pipe(Effect.provide(Timer.layerTest))

storeContract({
  name: "MemoryStore",
  test: (name, body) =>
    it.effect(name, () =>
      withStore((store) =>
        body({
          stores: [store, store],
          wait: (ms) => TestClock.adjust(ms),
          now: TestClock.currentTimeMillis,
          clockToleranceMs: 0,
          windowSeconds: 60,
          leaseTtlMs,
          parallelRetryMs: 1000
        })
      )
    )
})

const tagOf = (admission: Admission) => (admission._tag === "Admitted" ? "Admitted" : admission.limit)

describe("MemoryStore on a controlled clock", () => {
  it.effect("the window is the current second plus the 60 before it, to the millisecond", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const limits: KeyLimits = { rpm: 2 }
        const first = yield* store.admit("k", limits)
        // the first request leaves at the end of its second + 60 s: 60.5 s from now
        expect(first).toMatchObject({ _tag: "Admitted", figures: { requests: { limit: 2, remaining: 1, resetMs: 60_500 } } })
        yield* TestClock.adjust(30_000)
        expect(yield* store.admit("k", limits)).toMatchObject({ figures: { requests: { remaining: 0, resetMs: 60_500 } } })
        expect(yield* store.admit("k", limits)).toMatchObject({ _tag: "Refused", limit: "rpm", retryAfterMs: 30_500 })
        yield* TestClock.adjust(30_499)
        expect(yield* store.admit("k", limits)).toMatchObject({ _tag: "Refused", limit: "rpm", retryAfterMs: 1 })
        yield* TestClock.adjust(1)
        expect(yield* store.admit("k", limits)).toMatchObject({ _tag: "Admitted" })
      })
    )
  )

  it.effect("no rolling 60 s ever holds more than rpm admissions", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const rpm = 7
        const admittedAt: Array<number> = []
        let seed = 42
        const nextGap = () => {
          seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
          return seed % 4_000
        }
        for (let i = 0; i < 300; i++) {
          yield* TestClock.adjust(nextGap())
          const admission = yield* store.admit("k", { rpm })
          if (admission._tag === "Admitted") admittedAt.push(yield* TestClock.currentTimeMillis)
          else {
            expect(admission.retryAfterMs).toBeGreaterThan(0)
            expect(admission.retryAfterMs).toBeLessThanOrEqual(61_000)
          }
        }
        for (const at of admittedAt) {
          expect(admittedAt.filter((other) => other > at - 60_000 && other <= at).length).toBeLessThanOrEqual(rpm)
        }
        // and it is not stricter than it must be: over 10 minutes, most of ten minutes' worth got through
        expect(admittedAt.length).toBeGreaterThan(rpm * 8)
      })
    )
  )

  it.effect("a daily budget opens again at UTC midnight, a monthly one on the first of the month", () =>
    withStore(
      (store) =>
        Effect.gen(function* () {
          const daily: KeyLimits = { budget: { usd: 1, period: "daily" } }
          const monthly: KeyLimits = { budget: { usd: 1, period: "monthly" } }
          yield* store.finish(undefined, { keyId: "k", model: "m", promptTokens: 0, completionTokens: 0, spendUsd: 1, countInWindows: true })
          expect(tagOf(yield* store.admit("k", daily))).toBe("budget")
          expect(yield* store.admit("k", monthly)).toMatchObject({ limit: "budget", retryAfterMs: 1000 + 86_400_000 })
          yield* TestClock.adjust(999)
          expect(yield* store.admit("k", daily)).toMatchObject({ limit: "budget", retryAfterMs: 1 })
          yield* TestClock.adjust(1)
          expect(tagOf(yield* store.admit("k", daily))).toBe("Admitted")
          expect(tagOf(yield* store.admit("k", monthly))).toBe("budget")
          yield* TestClock.adjust(86_400_000)
          expect(tagOf(yield* store.admit("k", monthly))).toBe("Admitted")
        }),
      Date.UTC(2024, 1, 28, 23, 59, 59, 0)
    )
  )

  it.effect("expired buckets, leases and periods are dropped, and so are keys left empty", () =>
    withStore((store) =>
      Effect.gen(function* () {
        for (let i = 0; i < 50; i++) {
          const admission = yield* store.admit(`key-${i}`, { rpm: 10, tpm: 100 })
          // half the leases are never finished: they must expire on their own
          if (i % 2 === 0 && admission._tag === "Admitted") {
            yield* store.finish(admission.lease, {
              keyId: `key-${i}`,
              model: "m",
              promptTokens: 5,
              completionTokens: 5,
              spendUsd: 0,
              countInWindows: true
            })
          }
        }
        expect((yield* store.size).keys).toBe(50)
        yield* TestClock.adjust(Math.max(61_000, leaseTtlMs) + 1)
        expect((yield* store.size).keys).toBe(0)
        // spend keeps a key only until its month is over (May 17 → 27 → June 6)
        yield* store.finish(undefined, { keyId: "spender", model: "m", promptTokens: 0, completionTokens: 0, spendUsd: 1, countInWindows: true })
        yield* TestClock.adjust(10 * 86_400_000)
        expect((yield* store.size).keys).toBe(1)
        yield* TestClock.adjust(10 * 86_400_000)
        expect((yield* store.size).keys).toBe(0)
      })
    )
  )

  it.effect("usage rows are kept for 90 days, the oldest dropped", () =>
    withStore((store) =>
      Effect.gen(function* () {
        const firstDay = new Date(start).toISOString().slice(0, 10)
        for (let day = 0; day < 120; day++) {
          yield* store.finish(undefined, { keyId: "k", model: "m", promptTokens: 1, completionTokens: 0, spendUsd: 0, countInWindows: true })
          yield* TestClock.adjust(86_400_000)
        }
        expect((yield* store.size).usageDays).toBe(90)
        expect(yield* store.usage(firstDay)).toEqual([])
        const lastDay = new Date(start + 119 * 86_400_000).toISOString().slice(0, 10)
        expect(yield* store.usage(lastDay, "k")).toMatchObject([{ requests: 1, prompt_tokens: 1 }])
      })
    )
  )
})
