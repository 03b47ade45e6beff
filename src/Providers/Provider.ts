/**
 * The interface every upstream dialect implements, and the one error they fail with.
 */
import { Data } from "effect"
import type { Redacted } from "effect"
import type { Effect, Stream } from "effect"
import type { ChunkSource } from "./ChunkSource.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"

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

/** When an attempt must be over (epoch milliseconds, live clock), and the failure it then ends with. */
export interface AttemptDeadline {
  readonly at: number
  readonly onTimeout: () => ProviderError
}

/**
 * One upstream deployment speaking one dialect. `request.model` is already the upstream model id.
 *
 * `stream` is lazy: nothing is sent until it is pulled, so the router can retry it as a whole until its
 * first chunk arrives. Interrupting either call aborts the upstream request.
 *
 * `completeBy` and `open` are optional fast paths the router prefers. They end by the deadline they are given
 * (aborting the upstream call), so the router needs no timer fiber per attempt — a fixed cost the benchmark showed
 * at ~10 % of a streamed request.
 */
export interface Provider {
  readonly complete: (request: ChatCompletionRequest) => Effect.Effect<ChatCompletion, ProviderError>
  readonly stream: (request: ChatCompletionRequest) => Stream.Stream<ChatCompletionChunk, ProviderError>
  /** `complete`, failing with `deadline.onTimeout()` when it is not done by `deadline.at`. */
  readonly completeBy?: (request: ChatCompletionRequest, deadline: AttemptDeadline) => Effect.Effect<ChatCompletion, ProviderError>
  /**
   * The same as `stream` without the Stream: connects (interrupting it aborts the attempt; past `deadline`, when
   * given, it fails with its timeout) and hands over the connected stream as a ChunkSource, which the caller must
   * close. The data phase then runs no fiber per batch.
   */
  readonly open?: (request: ChatCompletionRequest, deadline?: AttemptDeadline) => Effect.Effect<ChunkSource, ProviderError>
}

/** Where one deployment's upstream lives and how to authenticate to it; read from the model registry. */
export interface UpstreamTarget {
  /** Base URL as the provider's official SDK spells it (OpenAI's includes `/v1`; Anthropic's and Gemini's do not). */
  readonly baseUrl: string
  /** The gateway's own credential for this upstream; never the client's key. */
  readonly apiKey: Redacted.Redacted<string> | undefined
  /** Extra headers sent with every upstream request (e.g. OpenRouter's `HTTP-Referer`). */
  readonly headers: Readonly<Record<string, string>>
}
