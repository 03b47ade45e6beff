/**
 * Tracing: the spans of a chat request, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set.
 *
 * The decision is made once, when the gateway is built: with tracing off the `Tracing` reference is `undefined`,
 * OpenTelemetry is not even loaded, and every place that would trace tests one variable — no span objects, no Effect
 * steps, no header work. With it on (`Otel.ts`): one server span per request, from its arrival until its response
 * closes (a stream included), and a client span per upstream attempt under it, which the upstream request names in
 * its `traceparent`.
 */
import type { Span } from "@opentelemetry/api"
import { Context, Effect, Layer } from "effect"
import { ProxyConfig } from "../Config.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import type { StreamDefect } from "../Providers/ChunkSource.js"
import type { ProviderError } from "../Providers/ProviderError.js"
import type { Deployment } from "../Router/Registry.js"

/** Request headers as Node and the platform both hold them (lower-case names). */
export type IncomingHeaders = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/** What a transport knows of a request when it arrives. */
export interface ArrivingRequest {
  readonly method: string
  /** The path without its query (which may carry what must never be exported). */
  readonly path: string
  readonly headers: IncomingHeaders
  readonly httpVersion: string | undefined
  readonly clientAddress: string | undefined
  /** The port the request arrived on (when the Host header names none). */
  readonly localPort: number | undefined
  readonly requestId: string
}

/** One upstream attempt, as the Router starts it. */
export interface Attempt {
  readonly deployment: Deployment
  /** The request as the client sent it (its parameters, never its messages, go on the span). */
  readonly request: ChatCompletionRequest
  /** 1 for the request's first upstream call, counting retries and fallbacks. */
  readonly number: number
  /** 0 for the first call to this deployment, then 1, 2… for its retries. */
  readonly retry: number
  readonly keyId: string | undefined
}

/** How a committed stream ended, for its attempt's span. */
export type StreamEnd = "end" | "cancelled" | ProviderError | StreamDefect

/** The spans of a committed stream's attempt: each batch the upstream sent, then its end. */
export interface StreamTrace {
  readonly batch: (chunks: ReadonlyArray<ChatCompletionChunk>) => void
  readonly end: (how: StreamEnd) => void
}

/** The tracing of one gateway (present only when tracing is on). */
export interface TracingService {
  /** Starts a request's server span at its arrival, continuing a valid `traceparent` / `tracestate`. */
  readonly startServer: (request: ArrivingRequest) => Span
  /**
   * Ends it once the response is over: `status` as sent (`undefined`: none was), `clientLeft` when the client closed
   * the connection first; what the request did comes from its record.
   */
  readonly endServer: (span: Span, record: RequestRecord, status: number | undefined, clientLeft: boolean) => void
  /** Starts an upstream attempt's span (kind client) under the server span. */
  readonly startAttempt: (parent: Span, attempt: Attempt) => Span
  /**
   * Runs an attempt under its span: spans of Effect code inside (a provider's own) nest under it, and a failure,
   * an interruption or a defect ends it. A success leaves it open: `completed` or `streaming` ends it.
   */
  readonly within: <A>(span: Span, effect: Effect.Effect<A, ProviderError>) => Effect.Effect<A, ProviderError>
  /** Ends a completion's attempt with what the upstream answered (its own model name, before renaming). */
  readonly completed: (span: Span, completion: ChatCompletion) => void
  /** The trace of a committed stream's attempt, `firstChunkMs` after the attempt started. */
  readonly streaming: (span: Span, firstChunkMs: number) => StreamTrace
}

/** The gateway's tracing: `undefined` (the default) when off. */
export class Tracing extends Context.Reference<Tracing>()("llm-proxy/Tracing", {
  defaultValue: (): TracingService | undefined => undefined
}) {}

/**
 * Tracing as ProxyConfig says: off (nothing loaded), or OpenTelemetry with a batching OTLP exporter whose queue is
 * flushed, within the export timeout, when the layer is released (after the server has drained).
 */
export const layer: Layer.Layer<Tracing, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.flatMap(ProxyConfig, ({ tracing }) =>
    tracing === undefined
      ? Effect.succeed(Layer.succeed(Tracing, undefined))
      : Effect.map(
          Effect.promise(() => import("./Otel.js")),
          (Otel) => Otel.layer(tracing)
        )
  )
)
