/**
 * What one request did, gathered as it goes — by the transport (arrival, first byte, status), the chat core (key,
 * model, tokens) and the Router (attempts, time waiting on upstreams) — for its access-log line and the latency
 * metrics. Plain mutable fields: it is written a handful of times per request and read once, at its end.
 *
 * It also carries what every upstream request of the request says about it (the upstream transport reads it from
 * `currentRecord`): its id, and with tracing on the span of the attempt in progress, for `traceparent`.
 */
import type { Span } from "@opentelemetry/api"
import { FiberRef } from "effect"
import { globalValue } from "effect/GlobalValue"

export interface RequestRecord {
  /** `performance.now()` at the request's arrival. */
  readonly arrivedAt: number
  /** The request's id, sent upstream as `x-request-id`. */
  readonly requestId: string | undefined
  /** With tracing on: the request's server span, from its arrival until its response closes. */
  span: Span | undefined
  /**
   * With tracing on: the span of the upstream attempt in progress, then of the one that answered (a stream's ends
   * with the stream).
   */
  attemptSpan: Span | undefined
  keyId: string | undefined
  /** The public model asked for. */
  model: string | undefined
  /** The provider kind of the deployment that served. */
  provider: string | undefined
  attempts: number
  /** Time spent waiting on upstream attempts (for a stream: until its first chunk). */
  upstreamMs: number
  promptTokens: number | undefined
  completionTokens: number | undefined
  /** `performance.now()` when the first byte of content was written to the client (streams). */
  firstByteAt: number | undefined
  /** For a model with a response cache: `hit`, `miss` or `bypass`. */
  cache: string | undefined
  /** When hedged attempts ran: which attempt won (1 is the first). */
  hedgeWinner: number | undefined
}

/** A fresh record for a request arriving now. */
export const newRecord = (requestId?: string, arrivedAt: number = performance.now()): RequestRecord => ({
  arrivedAt,
  requestId,
  span: undefined,
  attemptSpan: undefined,
  keyId: undefined,
  model: undefined,
  provider: undefined,
  attempts: 0,
  upstreamMs: 0,
  promptTokens: undefined,
  completionTokens: undefined,
  firstByteAt: undefined,
  cache: undefined,
  hedgeWinner: undefined
})

/**
 * The current request's record, in its fiber: both transports set it, the HttpApi handler reads it, and the upstream
 * transport takes the request id (and trace context) of every upstream request from it. A FiberRef rather than a
 * Context entry: the fast path sets it as it makes the request's fiber, at the cost of no Context copy.
 */
export const currentRecord: FiberRef.FiberRef<RequestRecord | undefined> = globalValue(Symbol.for("llm-proxy/currentRecord"), () =>
  FiberRef.unsafeMake<RequestRecord | undefined>(undefined)
)
