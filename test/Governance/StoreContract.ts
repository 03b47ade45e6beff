/**
 * The governance store contract (src/Governance/Store.ts), as one suite that each implementation runs: the memory
 * store on a TestClock, the Redis store on real time with a short window. Assertions hold for any timing: figures
 * are checked against bounds that follow from the window, never against how long anything took.
 */
import { describe, expect } from "@effect/vitest"
import { Effect } from "effect"
import { periodEndMs } from "../../src/Governance/Calendar.js"
import type { Admission, KeyLimits, StoreError, StoreService, UsageRecord } from "../../src/Governance/Store.js"

/** What one contract test gets. */
export interface ContractContext {
  /** Two instances over one shared state: two Redis connections, or one memory store twice. */
  readonly stores: readonly [StoreService, StoreService]
  /** Lets `ms` of the store's time pass (a TestClock adjustment, or a real sleep). */
  readonly wait: (ms: number) => Effect.Effect<void>
  /** The store's time now, as the test can know it (exact on a TestClock, the local clock for Redis). */
  readonly now: Effect.Effect<number>
  /** How far the test's `now` may be from the store's own clock. */
  readonly clockToleranceMs: number
  readonly windowSeconds: number
  readonly leaseTtlMs: number
  readonly parallelRetryMs: number
}

/** How an implementation runs the contract. */
export interface Harness {
  readonly name: string
  readonly test: (name: string, body: (context: ContractContext) => Effect.Effect<void, StoreError>) => void
}

let keyCounter = 0
/** A key id no other test uses (the Redis tests share one prefix per run). */
export const freshKey = (label: string) => `${label}-${++keyCounter}-${Math.random().toString(36).slice(2, 8)}`

const usageOf = (keyId: string, fields: Partial<UsageRecord> = {}): UsageRecord => ({
  keyId,
  model: "gpt-test",
  promptTokens: 0,
  completionTokens: 0,
  spendUsd: 0,
  countInWindows: true,
  ...fields
})

const admitted = (admission: Admission) => {
  if (admission._tag !== "Admitted") throw new Error(`expected Admitted, got ${JSON.stringify(admission)}`)
  return admission
}

const refused = (admission: Admission) => {
  if (admission._tag !== "Refused") throw new Error(`expected Refused, got ${JSON.stringify(admission)}`)
  return admission
}

const today = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/** Defines the contract tests for one implementation. */
export const storeContract = (harness: Harness) =>
  describe(`${harness.name}: the governance store contract`, () => {
    const windowBoundMs = (context: ContractContext) => (context.windowSeconds + 1) * 1000

    harness.test("admits a key without limits and still keeps its figures", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("nolimits")
        const admission = admitted(yield* store.admit(key, {}))
        expect(admission.lease).not.toBe("")
        expect(admission.figures).toEqual({})
        expect(yield* store.figures(key, {})).toEqual({
          requestsLastMinute: 1,
          tokensLastMinute: 0,
          inFlight: 1,
          spendThisPeriodUsd: 0
        })
        yield* store.finish(admission.lease, usageOf(key, { promptTokens: 10, completionTokens: 5, spendUsd: 0.5 }))
        expect(yield* store.figures(key, {})).toEqual({
          requestsLastMinute: 1,
          tokensLastMinute: 15,
          inFlight: 0,
          spendThisPeriodUsd: 0.5
        })
      })
    )

    harness.test("rpm: admits the limit, refuses the next without counting it, admits again once the window lets go", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("rpm")
        const limits: KeyLimits = { rpm: 3 }
        const remaining: Array<number> = []
        for (let i = 0; i < 3; i++) {
          const { figures } = admitted(yield* store.admit(key, limits))
          expect(figures.tokens).toBeUndefined()
          expect(figures.requests?.limit).toBe(3)
          expect(figures.requests?.resetMs).toBeGreaterThan(0)
          expect(figures.requests?.resetMs).toBeLessThanOrEqual(windowBoundMs(context))
          remaining.push(figures.requests?.remaining ?? -1)
        }
        expect(remaining).toEqual([2, 1, 0])
        const first = refused(yield* store.admit(key, limits))
        const second = refused(yield* store.admit(key, limits))
        for (const refusal of [first, second]) {
          expect(refusal.limit).toBe("rpm")
          expect(refusal.retryAfterMs).toBeGreaterThan(0)
          expect(refusal.retryAfterMs).toBeLessThanOrEqual(windowBoundMs(context))
          expect(refusal.figures.requests).toMatchObject({ limit: 3, remaining: 0 })
        }
        // refused requests neither count in the window nor hold a lease
        expect(yield* store.figures(key, limits)).toMatchObject({ requestsLastMinute: 3, inFlight: 3 })
        yield* context.wait(second.retryAfterMs)
        admitted(yield* store.admit(key, limits))
      })
    )

    harness.test("tpm: refuses once the tokens finished in the window reach the limit", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("tpm")
        const limits: KeyLimits = { tpm: 100 }
        const first = admitted(yield* store.admit(key, limits))
        expect(first.figures.requests).toBeUndefined()
        expect(first.figures.tokens).toMatchObject({ limit: 100, remaining: 100, resetMs: 0 })
        yield* store.finish(first.lease, usageOf(key, { promptTokens: 40, completionTokens: 20 }))
        const second = admitted(yield* store.admit(key, limits))
        expect(second.figures.tokens).toMatchObject({ limit: 100, remaining: 40 })
        expect(second.figures.tokens?.resetMs).toBeGreaterThan(0)
        expect(second.figures.tokens?.resetMs).toBeLessThanOrEqual(windowBoundMs(context))
        yield* store.finish(second.lease, usageOf(key, { promptTokens: 30, completionTokens: 10 }))
        const refusal = refused(yield* store.admit(key, limits))
        expect(refusal.limit).toBe("tpm")
        expect(refusal.figures.tokens).toMatchObject({ limit: 100, remaining: 0 })
        expect(refusal.retryAfterMs).toBeGreaterThan(0)
        expect(refusal.retryAfterMs).toBeLessThanOrEqual(windowBoundMs(context))
        expect(yield* store.figures(key, limits)).toMatchObject({ tokensLastMinute: 100, requestsLastMinute: 2 })
        yield* context.wait(refusal.retryAfterMs)
        admitted(yield* store.admit(key, limits))
      })
    )

    harness.test("max_parallel counts live leases; finish releases one", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("parallel")
        const limits: KeyLimits = { maxParallel: 2 }
        const first = admitted(yield* store.admit(key, limits))
        admitted(yield* store.admit(key, limits))
        const refusal = refused(yield* store.admit(key, limits))
        expect(refusal).toMatchObject({ limit: "max_parallel", retryAfterMs: context.parallelRetryMs, figures: {} })
        yield* store.finish(first.lease, usageOf(key))
        admitted(yield* store.admit(key, limits))
        expect((yield* store.figures(key, limits)).inFlight).toBe(2)
      })
    )

    harness.test("a lease expires unless renewed, and renewing an expired lease does not revive it", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("lease")
        const limits: KeyLimits = { maxParallel: 1 }
        const held = admitted(yield* store.admit(key, limits))
        yield* context.wait(context.leaseTtlMs / 2)
        yield* store.renew(key, held.lease)
        // past the first ttl, within the renewed one
        yield* context.wait((context.leaseTtlMs * 2) / 3)
        expect(refused(yield* store.admit(key, limits)).limit).toBe("max_parallel")
        yield* context.wait(context.leaseTtlMs)
        yield* store.renew(key, held.lease)
        expect((yield* store.figures(key, limits)).inFlight).toBe(0)
        admitted(yield* store.admit(key, limits))
        // the expired lease's finish is harmless and releases nothing else
        yield* store.finish(held.lease, usageOf(key))
        expect((yield* store.figures(key, limits)).inFlight).toBe(1)
      })
    )

    harness.test("renewing or finishing an unknown lease is harmless", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("unknown")
        yield* store.renew(key, "no-such-lease")
        yield* store.finish("no-such-lease", usageOf(key))
        expect(yield* store.figures(key, {})).toMatchObject({ inFlight: 0, requestsLastMinute: 0 })
      })
    )

    harness.test("budget: refuses once the day's spend reaches usd, until the UTC day ends", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("daily")
        const limits: KeyLimits = { budget: { usd: 0.01, period: "daily" } }
        const first = admitted(yield* store.admit(key, limits))
        yield* store.finish(first.lease, usageOf(key, { spendUsd: 0.006 }))
        const second = admitted(yield* store.admit(key, limits))
        yield* store.finish(second.lease, usageOf(key, { spendUsd: 0.004 }))
        const refusal = refused(yield* store.admit(key, limits))
        const now = yield* context.now
        expect(refusal.limit).toBe("budget")
        expect(Math.abs(refusal.retryAfterMs - (periodEndMs("daily", now) - now))).toBeLessThanOrEqual(
          context.clockToleranceMs
        )
        expect((yield* store.figures(key, limits)).spendThisPeriodUsd).toBe(0.01)
      })
    )

    harness.test("budget: a monthly budget is refused until the UTC month ends", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("monthly")
        const limits: KeyLimits = { budget: { usd: 1, period: "monthly" } }
        const first = admitted(yield* store.admit(key, limits))
        yield* store.finish(first.lease, usageOf(key, { spendUsd: 1 }))
        const refusal = refused(yield* store.admit(key, limits))
        const now = yield* context.now
        expect(refusal.limit).toBe("budget")
        expect(Math.abs(refusal.retryAfterMs - (periodEndMs("monthly", now) - now))).toBeLessThanOrEqual(
          context.clockToleranceMs
        )
        expect((yield* store.figures(key, limits)).spendThisPeriodUsd).toBe(1)
        // the key's figures without a budget report the day's spend
        expect((yield* store.figures(key, {})).spendThisPeriodUsd).toBe(1)
      })
    )

    harness.test("limits are checked in order: budget, max_parallel, rpm, tpm", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("order")
        const limits: KeyLimits = { rpm: 1, tpm: 10, maxParallel: 1, budget: { usd: 0.001, period: "daily" } }
        const held = admitted(yield* store.admit(key, limits))
        expect(refused(yield* store.admit(key, limits)).limit).toBe("max_parallel")
        yield* store.finish(held.lease, usageOf(key, { promptTokens: 10 }))
        expect(refused(yield* store.admit(key, limits)).limit).toBe("rpm")
        yield* store.finish(undefined, usageOf(key, { spendUsd: 0.001 }))
        expect(refused(yield* store.admit(key, limits)).limit).toBe("budget")
      })
    )

    harness.test("usage that does not count in windows (the operator's) writes its row and nothing else", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const key = freshKey("operatorlike")
        yield* store.finish(undefined, usageOf(key, { promptTokens: 40, completionTokens: 2, spendUsd: 3, countInWindows: false }))
        const day = today(yield* context.now)
        expect(yield* store.usage(day, key)).toEqual([
          { key, model: "gpt-test", requests: 1, prompt_tokens: 40, completion_tokens: 2, spend_usd: 3 }
        ])
        const figures = yield* store.figures(key, { tpm: 100, budget: { usd: 10, period: "daily" } })
        expect(figures).toMatchObject({ tokensLastMinute: 0, spendThisPeriodUsd: 0 })
      })
    )

    harness.test("usage rows accumulate per key, model and UTC day, refused requests included", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const alice = freshKey("alice")
        const bob = freshKey("bob")
        const lease = admitted(yield* store.admit(alice, {})).lease
        yield* store.finish(lease, usageOf(alice, { promptTokens: 12, completionTokens: 30, spendUsd: 0.25 }))
        yield* store.finish(undefined, usageOf(alice))
        yield* store.finish(undefined, usageOf(alice, { model: "other/model:with:colons", promptTokens: 1 }))
        yield* store.finish(undefined, usageOf(bob, { completionTokens: 7, spendUsd: 0.1 }))
        const day = today(yield* context.now)
        const byModel = (rows: ReadonlyArray<{ readonly model: string }>) =>
          [...rows].sort((a, b) => a.model.localeCompare(b.model))
        expect(byModel(yield* store.usage(day, alice))).toEqual([
          { key: alice, model: "gpt-test", requests: 2, prompt_tokens: 12, completion_tokens: 30, spend_usd: 0.25 },
          { key: alice, model: "other/model:with:colons", requests: 1, prompt_tokens: 1, completion_tokens: 0, spend_usd: 0 }
        ])
        const everyKey = yield* store.usage(day)
        expect(everyKey.filter((row) => row.key === bob)).toEqual([
          { key: bob, model: "gpt-test", requests: 1, prompt_tokens: 0, completion_tokens: 7, spend_usd: 0.1 }
        ])
        expect(everyKey.filter((row) => row.key === alice)).toHaveLength(2)
        expect(yield* store.usage("1999-01-01", alice)).toEqual([])
      })
    )

    harness.test("finishAll ends many requests at once, as finishing each would: leases, token windows, spend, rows", (context) =>
      Effect.gen(function* () {
        const [store, other] = context.stores
        const carol = freshKey("carol")
        const dave = freshKey("dave")
        const limits: KeyLimits = { maxParallel: 3, tpm: 1000 }
        const leases = [admitted(yield* store.admit(carol, limits)).lease, admitted(yield* store.admit(carol, limits)).lease]
        yield* other.finishAll([])
        yield* other.finishAll([
          { lease: leases[0], usage: usageOf(carol, { promptTokens: 100, completionTokens: 20, spendUsd: 0.5 }) },
          { lease: undefined, usage: usageOf(dave, { promptTokens: 3, model: "other" }) },
          { lease: leases[1], usage: usageOf(carol, { promptTokens: 30, spendUsd: 0.25 }) },
          { lease: undefined, usage: usageOf(carol, { completionTokens: 1, countInWindows: false }) }
        ])
        const figures = yield* store.figures(carol, limits)
        expect(figures).toMatchObject({ inFlight: 0, tokensLastMinute: 150, spendThisPeriodUsd: 0.75 })
        const day = today(yield* context.now)
        expect(yield* store.usage(day, carol)).toEqual([
          { key: carol, model: "gpt-test", requests: 3, prompt_tokens: 130, completion_tokens: 21, spend_usd: 0.75 }
        ])
        expect(yield* store.usage(day, dave)).toEqual([
          { key: dave, model: "other", requests: 1, prompt_tokens: 3, completion_tokens: 0, spend_usd: 0 }
        ])
      })
    )

    harness.test("spend adds up without drift", (context) =>
      Effect.gen(function* () {
        const [store] = context.stores
        const tenths = freshKey("tenths")
        const odd = freshKey("odd")
        const price = 0.000123456789
        const count = 200
        yield* Effect.all(
          Array.from({ length: 10 }, () => store.finish(undefined, usageOf(tenths, { spendUsd: 0.1 }))),
          { concurrency: "unbounded" }
        )
        yield* Effect.all(
          Array.from({ length: count }, () => store.finish(undefined, usageOf(odd, { spendUsd: price }))),
          { concurrency: 20 }
        )
        const day = today(yield* context.now)
        expect((yield* store.usage(day, tenths))[0]?.spend_usd).toBe(1)
        expect((yield* store.figures(tenths, {})).spendThisPeriodUsd).toBe(1)
        const oddSpend = (yield* store.usage(day, odd))[0]?.spend_usd ?? Number.NaN
        expect(Math.abs(oddSpend - price * count)).toBeLessThanOrEqual(count * 1e-9)
        expect((yield* store.usage(day, odd))[0]?.requests).toBe(count)
      })
    )

    harness.test("two instances share one exact state: rpm, max_parallel, tpm and budget", (context) =>
      Effect.gen(function* () {
        const [one, two] = context.stores
        const storeAt = (index: number) => (index % 2 === 0 ? one : two)

        const rpmKey = freshKey("shared-rpm")
        const admissions = yield* Effect.all(
          Array.from({ length: 30 }, (_, index) => storeAt(index).admit(rpmKey, { rpm: 10 })),
          { concurrency: "unbounded" }
        )
        expect(admissions.filter((admission) => admission._tag === "Admitted")).toHaveLength(10)
        expect(admissions.filter((admission) => admission._tag === "Refused" && admission.limit === "rpm")).toHaveLength(20)
        expect((yield* two.figures(rpmKey, { rpm: 10 })).requestsLastMinute).toBe(10)

        const parallelKey = freshKey("shared-parallel")
        const limits: KeyLimits = { maxParallel: 3 }
        const leases = yield* Effect.all(
          Array.from({ length: 6 }, (_, index) => storeAt(index).admit(parallelKey, limits)),
          { concurrency: "unbounded" }
        )
        const held = leases.filter((admission) => admission._tag === "Admitted")
        expect(held).toHaveLength(3)
        const [releasedByOther] = held
        if (releasedByOther === undefined) throw new Error("no lease")
        // a lease taken on one instance is released through the other
        yield* two.finish(releasedByOther.lease, usageOf(parallelKey))
        admitted(yield* one.admit(parallelKey, limits))
        expect(refused(yield* two.admit(parallelKey, limits)).limit).toBe("max_parallel")

        const tpmKey = freshKey("shared-tpm")
        const tokens = admitted(yield* one.admit(tpmKey, { tpm: 50 }))
        yield* one.finish(tokens.lease, usageOf(tpmKey, { promptTokens: 25, completionTokens: 25 }))
        expect(refused(yield* two.admit(tpmKey, { tpm: 50 })).limit).toBe("tpm")

        const budgetKey = freshKey("shared-budget")
        const budget: KeyLimits = { budget: { usd: 2, period: "monthly" } }
        yield* two.finish(undefined, usageOf(budgetKey, { spendUsd: 2 }))
        expect(refused(yield* one.admit(budgetKey, budget)).limit).toBe("budget")
        expect((yield* one.figures(budgetKey, budget)).spendThisPeriodUsd).toBe(2)
      })
    )
  })
