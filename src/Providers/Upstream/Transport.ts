/**
 * The upstream transport: one pooled undici dispatcher, scoped (closed with its layer) and injectable (a test may
 * pass undici's MockAgent), with the bounds every upstream answer is read under. undici directly rather than
 * through HttpClient: the gateway's hot path is this call, and the wrapper's cost showed in the profiles.
 */
import { Context, Effect, FiberRef, Layer } from "effect"
import type { Span } from "@opentelemetry/api"
import { ProxyConfig } from "../../Config.js"
import { currentRecord } from "../../Core/RequestRecord.js"
import type { RequestRecord } from "../../Core/RequestRecord.js"
import { formatTraceparent } from "../../Tracing/TraceContext.js"
import { Agent, request } from "undici"
import type { Dispatcher } from "undici"
import type { Readable } from "node:stream"
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib"
import { bounded } from "../Deadline.js"
import type { Deadline } from "../Deadline.js"
import { ProviderError } from "../ProviderError.js"
import { clientVisibleMessage, parseErrorBody, reasonForStatus, retryAfterMillis } from "./Status.js"

/** How much of an upstream answer the gateway reads before it calls the answer malformed. */
export interface TransportLimits {
  /** A whole non-streamed body (after decompression). */
  readonly maxResponseBytes: number
  /** One server-sent event of a stream. */
  readonly maxEventBytes: number
  /** Decoded stream data held for a client that reads slower than the upstream writes; past it the upstream waits. */
  readonly streamBufferBytes: number
  /**
   * Every request together: non-streamed bodies being read and stream events being assembled. Each request's own
   * bounds times the requests in flight is no bound; past this one, the read that would pass it fails its request.
   */
  readonly maxHeldBytes: number
}

export const defaultLimits: TransportLimits = {
  maxResponseBytes: 64 * 1024 * 1024,
  maxEventBytes: 16 * 1024 * 1024,
  streamBufferBytes: 1024 * 1024,
  maxHeldBytes: 256 * 1024 * 1024
}

/** The bytes of upstream answers held now, by every request of one transport, against `maxHeldBytes`. */
export class HeldBytes {
  held = 0
  constructor(readonly max: number) {}
  /** Takes `bytes` when they fit under the bound; takes nothing and answers false when they do not. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.max) return false
    this.held += bytes
    return true
  }
  give(bytes: number): void {
    this.held -= bytes
  }
}

/** The dispatcher upstream requests go through, and the bounds they are read under. */
export interface TransportService {
  readonly dispatcher: Dispatcher
  readonly limits: TransportLimits
  /** What every request of this transport holds now, against `limits.maxHeldBytes`. */
  readonly held: HeldBytes
}

/** A transport over `dispatcher` with `limits` (defaults otherwise). */
export const transportOf = (dispatcher: Dispatcher, limits: Partial<TransportLimits> = {}): TransportService => {
  const all = { ...defaultLimits, ...limits }
  return { dispatcher, limits: all, held: new HeldBytes(all.maxHeldBytes) }
}

/** The upstream transport service. */
export class UpstreamTransport extends Context.Tag("llm-proxy/UpstreamTransport")<UpstreamTransport, TransportService>() {}

/** An undici Agent: one keep-alive pool per upstream origin, closed (its sockets destroyed) with the scope. */
export const makeAgent = Effect.acquireRelease(
  Effect.sync(() => new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connect: { timeout: 10_000 } })),
  (agent) => Effect.promise(() => agent.destroy().catch(() => undefined))
)

/** The pooled transport with the given limits (defaults otherwise). */
export const layer = (limits: Partial<TransportLimits> = {}): Layer.Layer<UpstreamTransport> =>
  Layer.scoped(
    UpstreamTransport,
    Effect.map(makeAgent, (dispatcher) => transportOf(dispatcher, limits))
  )

/** A transport over a dispatcher of the caller's (e.g. undici's MockAgent in a test); not closed here. */
export const layerDispatcher = (dispatcher: Dispatcher, limits: Partial<TransportLimits> = {}): Layer.Layer<UpstreamTransport> =>
  Layer.succeed(UpstreamTransport, transportOf(dispatcher, limits))

/** Where one provider sends its requests. */
export interface Endpoint {
  /** The provider kind named in every failure, e.g. `anthropic`. */
  readonly provider: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
}

/** A dialect's own reading of an error body, for what the status alone cannot tell (e.g. Gemini's 400 for a bad key). */
export type RefineError = (error: ProviderError, body: unknown) => ProviderError

/** A 2xx upstream response whose body has not been read yet: read it, stream it, or destroy it. */
export interface UpstreamResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  /** The body, decompressed when the upstream labelled it gzip, deflate or br. */
  readonly body: Readable
}

const ignore = () => {}

/** Drops a body nobody will read (its error, when destroyed early, goes nowhere). */
export const discard = (body: Readable): void => {
  body.on("error", ignore)
  body.destroy()
}

/** An upstream error body is read up to this many bytes; the rest is of no use to anyone. */
const maxErrorBodyBytes = 64 * 1024

const flattenHeaders = (headers: Dispatcher.ResponseData["headers"]): Record<string, string | undefined> => {
  const flat: Record<string, string | undefined> = {}
  for (const name in headers) {
    const value = headers[name]
    flat[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return flat
}

/**
 * The body as the upstream meant it: decompressed when labelled (undici does not decompress). Every stream of it
 * has an error listener from the start: destroying an undici body before its end makes it emit an AbortError, and
 * an 'error' nobody listens to is an uncaught exception that takes the whole process down. Whoever reads the body
 * adds listeners of its own.
 */
const decodedBody = (body: Readable, encoding: string | undefined): Readable => {
  body.on("error", ignore)
  const label = encoding?.trim().toLowerCase()
  if (label === undefined || label === "" || label === "identity") return body
  const decompressor =
    label === "gzip" || label === "x-gzip" ? createGunzip() : label === "deflate" ? createInflate() : label === "br" ? createBrotliDecompress() : undefined
  if (decompressor === undefined) return body
  decompressor.on("error", ignore)
  body.on("error", (error) => decompressor.destroy(error))
  decompressor.once("close", () => body.destroy())
  return body.pipe(decompressor)
}

/** A body read to its end, cut at its limit (`"over"`) or at the transport's held-bytes bound (`"held"`), or broken off. */
type ReadOutcome = { readonly text: string } | "over" | "held" | Error

/**
 * Reads a body as UTF-8 text, at most `limit` bytes, its pieces counted in `held` until the read ends: `"over"` past
 * `limit` and `"held"` past what `held` can take (the body destroyed either way), or the transport error that broke
 * it off. Destroying the body aborts the read.
 */
const readUpTo = (body: Readable, limit: number, held: HeldBytes, onDone: (outcome: ReadOutcome) => void): void => {
  const pieces: Array<Buffer> = []
  let size = 0
  let done = false
  const finish = (outcome: ReadOutcome) => {
    if (done) return
    done = true
    held.give(size)
    onDone(outcome)
  }
  const cut = (outcome: "over" | "held") => {
    finish(outcome)
    body.destroy()
  }
  body.on("data", (piece: Buffer) => {
    if (done) return
    if (size + piece.length > limit) return cut("over")
    if (!held.take(piece.length)) return cut("held")
    size += piece.length
    pieces.push(piece)
  })
  body.once("end", () => finish({ text: Buffer.concat(pieces, size).toString("utf8") }))
  body.once("error", (error) => finish(error))
  body.once("close", () => finish(new Error("body closed before its end")))
}

const transportCode = (error: unknown): string => {
  if (typeof error !== "object" || error === null) return "unknown error"
  const code = (error as { code?: unknown }).code
  return typeof code === "string" ? code.slice(0, 64) : error instanceof Error ? error.name : "unknown error"
}

/** A transport failure (refused, reset, DNS, TLS) or a body that broke off. */
export const errorFromTransport = (provider: string, error: unknown): ProviderError =>
  new ProviderError({
    reason: "Unavailable",
    message: `${provider} upstream could not be reached or broke off (${transportCode(error)})`,
    provider
  })

/** An answer that breaks the dialect: not retried (it would break the same way), but worth a fallback. */
export const malformed = (provider: string, what: string): ProviderError =>
  new ProviderError({ reason: "MalformedResponse", message: `${provider} upstream sent ${what}`, provider })

/** An answer refused because the answers of every request in flight already hold `maxHeldBytes`. */
export const overHeldBytes = (provider: string, transport: TransportService): ProviderError =>
  malformed(
    provider,
    `more than the gateway may hold now: upstream answers in flight already hold ${transport.limits.maxHeldBytes} bytes (UPSTREAM_MAX_HELD_BYTES)`
  )

/** Builds the `ProviderError` for a non-2xx upstream response from (a bounded part of) its body. */
const describeFailure = (
  provider: string,
  response: UpstreamResponse,
  text: string,
  refine: RefineError | undefined
): ProviderError => {
  const details = parseErrorBody(text)
  const error = new ProviderError({
    reason: reasonForStatus(response.status, details),
    message: clientVisibleMessage(provider, response.status, response.headers["content-type"] ?? "", details),
    provider,
    status: response.status,
    retryAfterMs: retryAfterMillis(response.headers),
    param: details.param ?? null,
    code: details.code ?? null
  })
  if (refine === undefined) return error
  try {
    return refine(error, JSON.parse(text))
  } catch {
    return error
  }
}

/** The upstream's address on an attempt's span (`server.address`, `server.port`). */
const noteServer = (span: Span, url: string) => {
  try {
    const { hostname, port, protocol } = new URL(url)
    span.setAttributes({
      "server.address": hostname.startsWith("[") ? hostname.slice(1, -1) : hostname,
      "server.port": port === "" ? (protocol === "https:" ? 443 : 80) : Number(port)
    })
  } catch {
    // not a URL: undici will say so
  }
}

/**
 * The headers of one upstream request: the endpoint's, and what the request says about itself — its id
 * (`x-request-id`) and, with tracing on, its attempt's span (`traceparent`, with the client's `tracestate`).
 */
const outboundHeaders = (endpoint: Endpoint, record: RequestRecord | undefined): Readonly<Record<string, string>> => {
  if (record === undefined) return endpoint.headers
  const span = record.attemptSpan
  if (span === undefined) return record.requestId === undefined ? endpoint.headers : { ...endpoint.headers, "x-request-id": record.requestId }
  noteServer(span, endpoint.url)
  const context = span.spanContext()
  const headers: Record<string, string> = { ...endpoint.headers, traceparent: formatTraceparent(context) }
  if (record.requestId !== undefined) headers["x-request-id"] = record.requestId
  const state = context.traceState?.serialize()
  if (state !== undefined && state !== "") headers["tracestate"] = state
  return headers
}

/**
 * Sends `body` as JSON and resolves with a 2xx response; any other status becomes a `ProviderError`, which
 * `refine` may sharpen from the parsed error body. Interrupting the caller, or reaching `deadline`, aborts the
 * request; the deadline covers a stalled error body too. The current request (`currentRecord`) names itself in
 * the headers.
 */
export const postJson = (
  transport: TransportService,
  endpoint: Endpoint,
  body: string,
  deadline: Deadline | undefined,
  refine?: RefineError
): Effect.Effect<UpstreamResponse, ProviderError> =>
  Effect.flatMap(FiberRef.get(currentRecord), (record) => send(transport, endpoint, outboundHeaders(endpoint, record), body, deadline, refine))

const send = (
  transport: TransportService,
  endpoint: Endpoint,
  headers: Readonly<Record<string, string>>,
  body: string,
  deadline: Deadline | undefined,
  refine: RefineError | undefined
): Effect.Effect<UpstreamResponse, ProviderError> =>
  bounded<UpstreamResponse>(deadline, (settle, isSettled) => {
    const controller = new AbortController()
    const { provider } = endpoint
    request(endpoint.url, {
      method: "POST",
      headers,
      body,
      signal: controller.signal,
      dispatcher: transport.dispatcher
    }).then(
      (response) => {
        if (isSettled()) return discard(response.body)
        const headers = flattenHeaders(response.headers)
        const upstream = { status: response.statusCode, headers, body: decodedBody(response.body, headers["content-encoding"]) }
        if (upstream.status >= 200 && upstream.status < 300) return settle(Effect.succeed(upstream))
        readUpTo(upstream.body, maxErrorBodyBytes, transport.held, (outcome) => {
          const text = typeof outcome === "object" && "text" in outcome ? outcome.text : ""
          settle(Effect.fail(describeFailure(provider, upstream, text, refine)))
        })
      },
      (error: unknown) => settle(Effect.fail(errorFromTransport(provider, error)))
    )
    return () => controller.abort()
  })

/** Reads a whole 2xx body as text, at most `maxResponseBytes`; interruption, or reaching `deadline`, destroys it. */
export const readText = (
  transport: TransportService,
  provider: string,
  response: UpstreamResponse,
  deadline: Deadline | undefined
): Effect.Effect<string, ProviderError> =>
  bounded<string>(deadline, (settle) => {
    const limit = transport.limits.maxResponseBytes
    readUpTo(response.body, limit, transport.held, (outcome) =>
      settle(
        outcome === "over"
          ? Effect.fail(malformed(provider, `a body larger than ${limit} bytes`))
          : outcome === "held"
            ? Effect.fail(overHeldBytes(provider, transport))
            : "text" in outcome
            ? Effect.succeed(outcome.text)
            : Effect.fail(errorFromTransport(provider, outcome))
      )
    )
    return () => response.body.destroy()
  })

/** The deepest nesting of objects and arrays a JSON answer or request may have; deeper is not a real answer. */
export const maxJsonDepth = 200

/**
 * Whether JSON text nests its objects and arrays deeper than `limit`. Read off the text (for text that parsed): the
 * brackets outside strings are counted, and a string is skipped with `indexOf`, so the cost follows the structure,
 * not the length of the strings — and text too short to nest that deep is not read at all.
 */
export const nestsDeeperThan = (text: string, limit: number): boolean => {
  // Each level takes an opening and a closing bracket.
  if (text.length <= 2 * limit) return false
  let depth = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (code === 34 /* " */) {
      for (;;) {
        const end = text.indexOf('"', index + 1)
        if (end === -1) return false
        let backslashes = 0
        for (let before = end - 1; text.charCodeAt(before) === 92 /* \ */; before--) backslashes++
        index = end
        // A quote after an odd number of backslashes is escaped: the string goes on.
        if (backslashes % 2 === 0) break
      }
    } else if (code === 91 /* [ */ || code === 123 /* { */) {
      if (++depth > limit) return true
    } else if (code === 93 /* ] */ || code === 125 /* } */) {
      depth--
    }
  }
  return false
}

/** Parses JSON text that must be a sane value: `undefined` when it is not JSON or nests too deep. */
export const parseBoundedJson = (text: string): unknown => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  return nestsDeeperThan(text, maxJsonDepth) ? undefined : value
}

/** Reads a 2xx JSON body, failing with `MalformedResponse` when it is not JSON (or nests absurdly deep). */
export const readJson = (
  transport: TransportService,
  provider: string,
  response: UpstreamResponse,
  deadline: Deadline | undefined
): Effect.Effect<unknown, ProviderError> =>
  Effect.flatMap(readText(transport, provider, response, deadline), (text) => {
    const value = parseBoundedJson(text)
    return value === undefined ? Effect.fail(malformed(provider, "a body that is not JSON")) : Effect.succeed(value)
  })

/** The media type of a response, lower-cased, without parameters. */
export const mediaTypeOf = (response: UpstreamResponse): string =>
  (response.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()

/** The pooled transport with the limits of ProxyConfig (`UPSTREAM_MAX_RESPONSE_BYTES` and the like). */
export const layerConfig: Layer.Layer<UpstreamTransport, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.map(ProxyConfig, (config) =>
    layer({
      maxResponseBytes: config.upstreamMaxResponseBytes,
      maxEventBytes: config.upstreamMaxEventBytes,
      streamBufferBytes: config.upstreamStreamBufferBytes,
      maxHeldBytes: config.upstreamMaxHeldBytes
    })
  )
)
