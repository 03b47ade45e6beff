/**
 * The governance store in memory: exact for one process, the default when no Redis is configured. Time comes from
 * the `Timer` service (tests drive it with a TestClock). Memory stays bounded: every call prunes the key it touches,
 * a sweep at most once per window drops whatever has expired everywhere (and the keys left empty), and usage rows
 * are kept for `usageRetentionDays` days.
 */
import { Effect, Layer } from "effect"
import { Timer } from "../Timer.js"
import { dayMs, fromNanoUsd, periodEndMs, periodName, toNanoUsd, utcDay } from "./Calendar.js"
import type { Period } from "./Calendar.js"
import { Store } from "./Store.js"
import type { KeyFigures, KeyLimits, StoreService, UsageRecord, UsageRow } from "./Store.js"
import type { AdmissionCounts, Bucket, StoreOptions } from "./Window.js"
import { admissionOf, newLease, oldestSecond, resetMs, resolveOptions, retryAfterMs } from "./Window.js"

/** One key's live state. */
interface KeyState {
  /** Epoch second → requests admitted in it. */
  readonly requests: Map<number, number>
  /** Epoch second → tokens finished in it. */
  readonly tokens: Map<number, number>
  /** Lease → when it expires (ms), in order of expiry: a renewed lease is moved to the end. */
  readonly leases: Map<string, number>
  /** Period name (`d:YYYY-MM-DD`, `m:YYYY-MM`) → spend in nano-dollars. */
  readonly spendNano: Map<string, number>
}

interface UsageCounts {
  requests: number
  promptTokens: number
  completionTokens: number
  spendNano: number
}

interface UsageEntry {
  readonly key: string
  readonly model: string
  readonly counts: UsageCounts
}

/** The memory store, with its size for tests that check it stays bounded. */
export interface MemoryStoreService extends StoreService {
  /** How many keys hold state and how many UTC days hold usage rows, after dropping what expired. */
  readonly size: Effect.Effect<{ readonly keys: number; readonly usageDays: number }>
}

/** The buckets of a window still inside it, oldest first, and their total; drops the ones that left. */
const currentWindow = (buckets: Map<number, number>, oldest: number) => {
  const inside: Array<Bucket> = []
  let total = 0
  for (const [second, amount] of buckets) {
    if (second < oldest) buckets.delete(second)
    else {
      inside.push({ second, amount })
      total += amount
    }
  }
  inside.sort((a, b) => a.second - b.second)
  return { buckets: inside, total, newest: inside.at(-1)?.second }
}

const addTo = <K>(map: Map<K, number>, key: K, amount: number) => map.set(key, (map.get(key) ?? 0) + amount)

/** A memory store; time from the `Timer` service. */
export const make = (options?: StoreOptions): Effect.Effect<MemoryStoreService> =>
  Effect.gen(function* () {
    const timer = yield* Timer
    const { windowSeconds, leaseTtlMs, parallelRetryMs, usageRetentionDays } = resolveOptions(options)
    const keys = new Map<string, KeyState>()
    /** UTC day → row id (`[key, model]` as JSON) → row. */
    const usageByDay = new Map<string, Map<string, UsageEntry>>()
    let nextSweepMs = 0

    const stateOf = (keyId: string): KeyState => {
      const existing = keys.get(keyId)
      if (existing !== undefined) return existing
      const created: KeyState = { requests: new Map(), tokens: new Map(), leases: new Map(), spendNano: new Map() }
      keys.set(keyId, created)
      return created
    }

    const liveLeases = (state: KeyState, nowMs: number) => {
      for (const [lease, expiresAt] of state.leases) {
        if (expiresAt > nowMs) break
        state.leases.delete(lease)
      }
      return state.leases.size
    }

    /** Keeps only the spend of the current day and month: nothing reads older periods. */
    const dropPastPeriods = (state: KeyState, nowMs: number) => {
      const current = new Set([periodName("daily", nowMs), periodName("monthly", nowMs)])
      for (const name of state.spendNano.keys()) if (!current.has(name)) state.spendNano.delete(name)
    }

    const dropOldUsage = (nowMs: number) => {
      const oldestKept = utcDay(nowMs - usageRetentionDays * dayMs)
      for (const day of usageByDay.keys()) if (day < oldestKept) usageByDay.delete(day)
    }

    const sweepIfDue = (nowMs: number) => {
      if (nowMs < nextSweepMs) return
      nextSweepMs = nowMs + windowSeconds * 1000
      const oldest = oldestSecond(nowMs, windowSeconds)
      for (const [keyId, state] of keys) {
        currentWindow(state.requests, oldest)
        currentWindow(state.tokens, oldest)
        liveLeases(state, nowMs)
        dropPastPeriods(state, nowMs)
        const empty =
          state.requests.size === 0 && state.tokens.size === 0 && state.leases.size === 0 && state.spendNano.size === 0
        if (empty) keys.delete(keyId)
      }
      dropOldUsage(nowMs)
    }

    const spentNano = (state: KeyState | undefined, period: Period, nowMs: number) =>
      state?.spendNano.get(periodName(period, nowMs)) ?? 0

    const admitNow = (keyId: string, limits: KeyLimits, lease: string) => {
      const nowMs = timer.now()
      sweepIfDue(nowMs)
      const state = stateOf(keyId)
      const oldest = oldestSecond(nowMs, windowSeconds)
      const requests = currentWindow(state.requests, oldest)
      const tokens = currentWindow(state.tokens, oldest)
      const inFlight = liveLeases(state, nowMs)
      const outcome = (refusedBy: AdmissionCounts["refusedBy"], retryAfter: number): AdmissionCounts => ({
        refusedBy,
        retryAfterMs: retryAfter,
        requests: requests.total,
        requestsResetMs: resetMs(requests.newest, nowMs, windowSeconds),
        tokens: tokens.total,
        tokensResetMs: resetMs(tokens.newest, nowMs, windowSeconds)
      })
      const { budget, maxParallel, rpm, tpm } = limits
      if (budget !== undefined && spentNano(state, budget.period, nowMs) >= toNanoUsd(budget.usd)) {
        return outcome("budget", periodEndMs(budget.period, nowMs) - nowMs)
      }
      if (maxParallel !== undefined && inFlight >= maxParallel) return outcome("max_parallel", parallelRetryMs)
      if (rpm !== undefined && requests.total >= rpm) {
        return outcome("rpm", retryAfterMs(requests.buckets, requests.total, rpm, nowMs, windowSeconds))
      }
      if (tpm !== undefined && tokens.total >= tpm) {
        return outcome("tpm", retryAfterMs(tokens.buckets, tokens.total, tpm, nowMs, windowSeconds))
      }
      const second = Math.floor(nowMs / 1000)
      addTo(state.requests, second, 1)
      state.leases.set(lease, nowMs + leaseTtlMs)
      return {
        ...outcome(undefined, 0),
        requests: requests.total + 1,
        requestsResetMs: resetMs(second, nowMs, windowSeconds)
      }
    }

    const finishNow = (lease: string | undefined, usage: UsageRecord) => {
      const nowMs = timer.now()
      sweepIfDue(nowMs)
      if (lease !== undefined) keys.get(usage.keyId)?.leases.delete(lease)
      const tokens = usage.promptTokens + usage.completionTokens
      const spend = toNanoUsd(usage.spendUsd)
      if (tokens > 0 && usage.countInWindows) addTo(stateOf(usage.keyId).tokens, Math.floor(nowMs / 1000), tokens)
      if (spend !== 0 && usage.countInWindows) {
        const state = stateOf(usage.keyId)
        dropPastPeriods(state, nowMs)
        addTo(state.spendNano, periodName("daily", nowMs), spend)
        addTo(state.spendNano, periodName("monthly", nowMs), spend)
      }
      const day = utcDay(nowMs)
      let rows = usageByDay.get(day)
      if (rows === undefined) {
        rows = new Map()
        usageByDay.set(day, rows)
        dropOldUsage(nowMs)
      }
      const rowId = JSON.stringify([usage.keyId, usage.model])
      let row = rows.get(rowId)
      if (row === undefined) {
        const counts = { requests: 0, promptTokens: 0, completionTokens: 0, spendNano: 0 }
        row = { key: usage.keyId, model: usage.model, counts }
        rows.set(rowId, row)
      }
      row.counts.requests += 1
      row.counts.promptTokens += usage.promptTokens
      row.counts.completionTokens += usage.completionTokens
      row.counts.spendNano += spend
    }

    const renewNow = (keyId: string, lease: string) => {
      const nowMs = timer.now()
      const state = keys.get(keyId)
      const expiresAt = state?.leases.get(lease)
      if (state === undefined || expiresAt === undefined || expiresAt <= nowMs) return
      state.leases.delete(lease)
      state.leases.set(lease, nowMs + leaseTtlMs)
    }

    const figuresNow = (keyId: string, limits: KeyLimits): KeyFigures => {
      const nowMs = timer.now()
      sweepIfDue(nowMs)
      const state = keys.get(keyId)
      if (state === undefined) return { requestsLastMinute: 0, tokensLastMinute: 0, inFlight: 0, spendThisPeriodUsd: 0 }
      const oldest = oldestSecond(nowMs, windowSeconds)
      return {
        requestsLastMinute: currentWindow(state.requests, oldest).total,
        tokensLastMinute: currentWindow(state.tokens, oldest).total,
        inFlight: liveLeases(state, nowMs),
        spendThisPeriodUsd: fromNanoUsd(spentNano(state, limits.budget?.period ?? "daily", nowMs))
      }
    }

    const usageNow = (day: string, keyId: string | undefined): ReadonlyArray<UsageRow> => {
      dropOldUsage(timer.now())
      const rows: Array<UsageRow> = []
      for (const { key, model, counts } of usageByDay.get(day)?.values() ?? []) {
        if (keyId !== undefined && key !== keyId) continue
        rows.push({
          key,
          model,
          requests: counts.requests,
          prompt_tokens: counts.promptTokens,
          completion_tokens: counts.completionTokens,
          spend_usd: fromNanoUsd(counts.spendNano)
        })
      }
      return rows
    }

    return {
      kind: "memory",
      admit: (keyId, limits) =>
        Effect.sync(() => {
          const lease = newLease()
          return admissionOf(limits, lease, admitNow(keyId, limits, lease))
        }),
      renew: (keyId, lease) => Effect.sync(() => renewNow(keyId, lease)),
      finish: (lease, usage) => Effect.sync(() => finishNow(lease, usage)),
      finishAll: (ended) =>
        Effect.sync(() => {
          for (const { lease, usage } of ended) finishNow(lease, usage)
        }),
      figures: (keyId, limits) => Effect.sync(() => figuresNow(keyId, limits)),
      usage: (day, keyId) => Effect.sync(() => usageNow(day, keyId)),
      ping: Effect.void,
      size: Effect.sync(() => {
        nextSweepMs = 0
        sweepIfDue(timer.now())
        return { keys: keys.size, usageDays: usageByDay.size }
      })
    }
  })

/** The memory store with the default options. */
export const layer: Layer.Layer<Store> = Layer.effect(Store, make())

/** The memory store with options of your own (a shorter window, lease ttl, retention). */
export const layerWith = (options: StoreOptions): Layer.Layer<Store> => Layer.effect(Store, make(options))
