/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` a request arrives with, read; the one
 * an upstream request carries, written. Plain functions over strings, no OpenTelemetry at run time.
 */
import type { SpanContext } from "@opentelemetry/api"

/** A parent read from `traceparent`. */
export interface RemoteParent {
  readonly traceId: string
  readonly spanId: string
  readonly traceFlags: number
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const zeroTraceId = "0".repeat(32)
const zeroSpanId = "0".repeat(16)

/**
 * The parent a `traceparent` header names, or `undefined` when it is absent or invalid (the request then starts a
 * trace of its own). Version `ff` and all-zero ids are invalid; version 00 allows nothing after the flags, a later
 * version may add fields, which are ignored.
 */
export const parseTraceparent = (header: string | undefined): RemoteParent | undefined => {
  if (header === undefined || header.length > 512) return undefined
  const match = traceparentPattern.exec(header.trim())
  if (match === null) return undefined
  const [, version, traceId, spanId, flags, rest] = match
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (traceId === zeroTraceId || spanId === zeroSpanId) return undefined
  return { traceId: traceId!, spanId: spanId!, traceFlags: Number.parseInt(flags!, 16) }
}

/** The `traceparent` that names a span as the parent of what the receiver does. */
export const formatTraceparent = (context: SpanContext): string =>
  `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 1) === 1 ? "01" : "00"}`
