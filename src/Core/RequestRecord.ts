/**
 * What one request did, gathered as it goes — by the transport (arrival, first byte, status), the chat core (key,
 * model, tokens) and the Router (attempts, time waiting on upstreams) — for its access-log line and the latency
 * metrics. Plain mutable fields: it is written a handful of times per request and read once, at its end.
 */
import { Context } from "effect"

export interface RequestRecord {
  /** `performance.now()` at the request's arrival. */
  readonly arrivedAt: number
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
}

/** A fresh record for a request arriving now. */
export const newRecord = (arrivedAt: number = performance.now()): RequestRecord => ({
  arrivedAt,
  keyId: undefined,
  model: undefined,
  provider: undefined,
  attempts: 0,
  upstreamMs: 0,
  promptTokens: undefined,
  completionTokens: undefined,
  firstByteAt: undefined
})

/** The current request's record, for transports that pass it down through the Effect context (the HttpApi). */
export class CurrentRecord extends Context.Reference<CurrentRecord>()("llm-proxy/CurrentRecord", {
  defaultValue: (): RequestRecord | undefined => undefined
}) {}
