/**
 * The shared state of governance: each key's windows (requests and tokens in the last 60 s), its requests in flight
 * (leases), its spend per budget period, and the usage rows per UTC day. Two implementations with one contract:
 * in memory (one process, the default) and Redis (`REDIS_URL`: exact across any number of replicas).
 *
 * Windows are sliding, counted in one-second buckets: a request or a token counts for the 60 s after the second it
 * happened in, plus that second (61 buckets), so no rolling 60 s ever holds more than the limit. Time is the
 * store's own (Redis `TIME`; the process clock in memory), never each replica's.
 */
import { Context, Data } from "effect"
import type { Effect } from "effect"

/** One key's limits, as the registry file declares them; each optional. */
export interface KeyLimits {
  /** Requests admitted in any rolling 60 s. */
  readonly rpm?: number | undefined
  /** Prompt + completion tokens in any rolling 60 s. */
  readonly tpm?: number | undefined
  /** Requests in flight at once (a stream counts until it ends or is cancelled). */
  readonly maxParallel?: number | undefined
  /** Spend per UTC calendar period. */
  readonly budget?: { readonly usd: number; readonly period: "daily" | "monthly" } | undefined
}

/** The limit that refused a request. */
export type LimitName = "rpm" | "tpm" | "max_parallel" | "budget"

/** One window's figures, as OpenAI's rate-limit headers report them. */
export interface WindowFigure {
  readonly limit: number
  readonly remaining: number
  /** Milliseconds until the window is back to its full limit. */
  readonly resetMs: number
}

/** The figures of the windows a key has limits for (after this admission, when admitted). */
export interface WindowFigures {
  readonly requests?: WindowFigure | undefined
  readonly tokens?: WindowFigure | undefined
}

/** What the store decided about one request. */
export type Admission =
  | {
      readonly _tag: "Admitted"
      /** The request's in-flight lease: renew it while the request runs, release it in `finish`. */
      readonly lease: string
      readonly figures: WindowFigures
    }
  | {
      readonly _tag: "Refused"
      readonly limit: LimitName
      /** When a retry could be admitted (whole seconds are what the client is told). */
      readonly retryAfterMs: number
      readonly figures: WindowFigures
    }

/** What one finished request used; recorded for every request, refused and failed ones too (with zero tokens). */
export interface UsageRecord {
  /** The key's id, or `operator`. */
  readonly keyId: string
  /** The public model name asked for. */
  readonly model: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly spendUsd: number
  /**
   * Whether the tokens and spend also count in the key's windows and budget periods. False for the operator key,
   * which has no limits: only its usage row is written (on Redis: one script, not two).
   */
  readonly countInWindows: boolean
}

/** A key's current figures, for `GET /admin/keys`. */
export interface KeyFigures {
  readonly requestsLastMinute: number
  readonly tokensLastMinute: number
  readonly inFlight: number
  /** Spend in the current budget period (the UTC day when the key has no budget). */
  readonly spendThisPeriodUsd: number
}

/** An ended request for `finishAll`: its lease (if it held one) and its usage. */
export interface EndedRequest {
  readonly lease: string | undefined
  readonly usage: UsageRecord
}

/** One row of `GET /admin/usage`: a key's use of one public model on one UTC day. */
export interface UsageRow {
  readonly key: string
  readonly model: string
  readonly requests: number
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly spend_usd: number
}

/** The store could not be reached or answered nonsense; the caller decides (on_store_failure) what it means. */
export class StoreError extends Data.TaggedError("StoreError")<{ readonly message: string; readonly cause?: unknown }> {}

/** How long a lease lives unless renewed: a replica that dies frees its keys' slots within this. */
export const leaseTtlMs = 30_000

/** How often a request in flight renews its lease. */
export const leaseRenewMs = 10_000

/** The governance store. */
export interface StoreService {
  /** Which implementation this is, for logs and `/ready`. */
  readonly kind: "memory" | "redis"
  /**
   * Admits one request of `keyId` against `limits`, in one atomic step (one round trip on Redis): budget (spend this
   * period below `budget.usd`), requests in flight below `maxParallel`, requests in the window below `rpm`, tokens
   * in the window below `tpm`. Admitted: the request counts in the window and holds a lease. Refused: nothing is
   * counted. A key with no limits is admitted all the same (its figures are still kept).
   */
  readonly admit: (keyId: string, limits: KeyLimits) => Effect.Effect<Admission, StoreError>
  /** Extends a lease by `leaseTtlMs` from now; a lease that expired is not revived. */
  readonly renew: (keyId: string, lease: string) => Effect.Effect<void, StoreError>
  /**
   * The request ended (completed, failed, cancelled or refused): its lease (if any) released, its tokens added to
   * the key's token window, its spend to the key's budget periods, and its usage row for the UTC day incremented.
   */
  readonly finish: (lease: string | undefined, usage: UsageRecord) => Effect.Effect<void, StoreError>
  /** What `finish` does, for many ended requests at once, in order: one round trip on Redis. */
  readonly finishAll: (ended: ReadonlyArray<EndedRequest>) => Effect.Effect<void, StoreError>
  /** A key's current figures; `limits.budget.period` says which period's spend. */
  readonly figures: (keyId: string, limits: KeyLimits) => Effect.Effect<KeyFigures, StoreError>
  /** The usage rows of one UTC day (`YYYY-MM-DD`), of every key or of one. */
  readonly usage: (day: string, keyId?: string) => Effect.Effect<ReadonlyArray<UsageRow>, StoreError>
  /** Succeeds when the store answers. */
  readonly ping: Effect.Effect<void, StoreError>
}

export class Store extends Context.Tag("llm-proxy/Store")<Store, StoreService>() {}
