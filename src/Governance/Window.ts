/**
 * What both governance stores share besides their contract: their options, the arithmetic of sliding windows of
 * one-second buckets, and how an admission's raw counts become an `Admission`. The Redis scripts repeat the same
 * arithmetic in Lua; the contract tests hold the two to one behaviour.
 */
import { randomUUID } from "node:crypto"
import type { Admission, KeyLimits, LimitName, WindowFigure, WindowFigures } from "./Store.js"
import { leaseTtlMs } from "./Store.js"

/** Options both stores take; every one has a default that production uses. */
export interface StoreOptions {
  /**
   * How many seconds before the current one still count in a window (default 60: the current second plus the 60
   * before it). Tests use a shorter window so that they need not wait a minute.
   */
  readonly windowSeconds?: number | undefined
  /** How long a lease lives unless renewed (default `Store.leaseTtlMs`). */
  readonly leaseTtlMs?: number | undefined
  /** The retry-after a request refused by `maxParallel` is told (default 1000 ms). */
  readonly parallelRetryMs?: number | undefined
  /** How many UTC days before today usage rows are kept (default 90); older days are dropped. */
  readonly usageRetentionDays?: number | undefined
}

/** `StoreOptions` with their defaults applied. */
export interface ResolvedOptions {
  readonly windowSeconds: number
  readonly leaseTtlMs: number
  readonly parallelRetryMs: number
  readonly usageRetentionDays: number
}

export const resolveOptions = (options: StoreOptions | undefined): ResolvedOptions => ({
  windowSeconds: options?.windowSeconds ?? 60,
  leaseTtlMs: options?.leaseTtlMs ?? leaseTtlMs,
  parallelRetryMs: options?.parallelRetryMs ?? 1000,
  usageRetentionDays: options?.usageRetentionDays ?? 90
})

/** A fresh lease id: unique across replicas without coordination. */
export const newLease = (): string => randomUUID()

/** One second of a window: the epoch second and the amount (requests or tokens) counted in it. */
export interface Bucket {
  readonly second: number
  readonly amount: number
}

/** The first epoch second still inside the window at `nowMs`. */
export const oldestSecond = (nowMs: number, windowSeconds: number): number =>
  Math.floor(nowMs / 1000) - windowSeconds

/** When a bucket's amount stops counting: the end of its second plus the window. */
const leavesAtMs = (second: number, windowSeconds: number) => (second + windowSeconds + 1) * 1000

/**
 * Milliseconds until enough of the window (`buckets`, oldest first, summing to `total`) has left it for the total
 * to be below `limit` again. A limit of 0 or less is never met: the whole window length is answered.
 */
export const retryAfterMs = (
  buckets: ReadonlyArray<Bucket>,
  total: number,
  limit: number,
  nowMs: number,
  windowSeconds: number
): number => {
  let left = total
  for (const bucket of buckets) {
    left -= bucket.amount
    if (left < limit) return Math.max(0, leavesAtMs(bucket.second, windowSeconds) - nowMs)
  }
  return (windowSeconds + 1) * 1000
}

/** Milliseconds until the newest bucket has left the window (0 when the window is empty). */
export const resetMs = (newestSecond: number | undefined, nowMs: number, windowSeconds: number): number =>
  newestSecond === undefined ? 0 : Math.max(0, leavesAtMs(newestSecond, windowSeconds) - nowMs)

/** The raw outcome of one admission, as the memory store computes it and the Redis admit script answers it. */
export interface AdmissionCounts {
  /** `undefined` when admitted. */
  readonly refusedBy: LimitName | undefined
  readonly retryAfterMs: number
  /** Requests in the window, this one included when admitted. */
  readonly requests: number
  readonly requestsResetMs: number
  readonly tokens: number
  readonly tokensResetMs: number
}

const figure = (limit: number, used: number, reset: number): WindowFigure => ({
  limit,
  remaining: Math.max(0, limit - used),
  resetMs: reset
})

/** The figures of the windows `limits` has limits for. */
export const windowFigures = (limits: KeyLimits, counts: AdmissionCounts): WindowFigures => ({
  ...(limits.rpm === undefined ? {} : { requests: figure(limits.rpm, counts.requests, counts.requestsResetMs) }),
  ...(limits.tpm === undefined ? {} : { tokens: figure(limits.tpm, counts.tokens, counts.tokensResetMs) })
})

/** The `Admission` of raw counts; `lease` is the one the store recorded when admitted. */
export const admissionOf = (limits: KeyLimits, lease: string, counts: AdmissionCounts): Admission =>
  counts.refusedBy === undefined
    ? { _tag: "Admitted", lease, figures: windowFigures(limits, counts) }
    : {
        _tag: "Refused",
        limit: counts.refusedBy,
        retryAfterMs: Math.max(0, counts.retryAfterMs),
        figures: windowFigures(limits, counts)
      }
