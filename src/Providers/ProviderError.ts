/**
 * The one error every upstream dialect fails with, and what its reason means for retries and fallbacks.
 */
import { Data } from "effect"

/**
 * Why an upstream call failed, decided once at the provider boundary. Retries, fallbacks and the HTTP error
 * table read the reason, never an upstream status.
 */
export type ProviderErrorReason =
  | "RateLimited"
  | "QuotaExhausted"
  | "Authentication"
  | "InvalidRequest"
  | "NotFound"
  | "ContentPolicy"
  | "Unavailable"
  | "Timeout"
  | "MalformedResponse"

/** An upstream failure with its semantic reason. `message` is safe to show to the client. */
export class ProviderError extends Data.TaggedError("ProviderError")<{
  readonly reason: ProviderErrorReason
  readonly message: string
  /** Which provider kind failed, e.g. `anthropic`. */
  readonly provider: string
  /** The upstream HTTP status, when there was one. */
  readonly status?: number | undefined
  /** How long the upstream asked us to wait, from `retry-after-ms` or `retry-after`. */
  readonly retryAfterMs?: number | undefined
  /** The upstream's `param` / `code`, passed on for the caller's own mistakes. */
  readonly param?: string | null | undefined
  readonly code?: string | null | undefined
}> {}

const retryableReasons: ReadonlySet<ProviderErrorReason> = new Set(["RateLimited", "Unavailable", "Timeout"])

/** Worth another attempt at the same deployment: 408, 409, 429, 5xx, connection failures, timeouts. */
export const isRetryable = (error: ProviderError): boolean => retryableReasons.has(error.reason)

const callerMistakes: ReadonlySet<ProviderErrorReason> = new Set(["InvalidRequest", "NotFound", "ContentPolicy"])

/**
 * Worth trying another deployment or a fallback model: anything but the caller's own mistakes, which would
 * fail the same way everywhere.
 */
export const isFallbackWorthy = (error: ProviderError): boolean => !callerMistakes.has(error.reason)
