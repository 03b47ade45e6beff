/**
 * What every HTTP provider shares: sending a JSON request, turning an upstream failure into a
 * `ProviderError` with its reason (once, here), and decoding an SSE body into events.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import * as Sse from "@effect/experimental/Sse"
import { Effect, Stream } from "effect"
import { ProviderError } from "./Provider.js"
import type { ProviderErrorReason } from "./Provider.js"

/** An upstream error body is read up to this many characters; the rest is of no use to anyone. */
const maxErrorBodyChars = 64 * 1024
/** An SSE event larger than this is a malformed upstream, not a reason to grow without bound. */
const maxSseEventChars = 16 * 1024 * 1024

const decimal = /^\s*\d+(?:\.\d+)?\s*$/
/** Every HTTP date form starts with a day name and has a time of day; `Date.parse` alone reads "-1" or "" as dates. */
const httpDate = /^\s*[A-Za-z]{3}.*\d{2}:\d{2}:\d{2}/

/** Reads `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date) into milliseconds. */
export const retryAfterMillis = (headers: Readonly<Record<string, string | undefined>>, now = Date.now()): number | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined && decimal.test(ms)) return Number(ms)
  const after = headers["retry-after"]
  if (after === undefined) return undefined
  if (decimal.test(after)) return Number(after) * 1000
  const date = httpDate.test(after) ? Date.parse(after) : Number.NaN
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** The fields an upstream error body may carry, whichever of the three dialects it speaks. */
interface UpstreamErrorDetails {
  readonly message?: string | undefined
  readonly type?: string | undefined
  readonly code?: string | undefined
  readonly param?: string | undefined
}

const stringField = (value: unknown): string | undefined =>
  typeof value === "string" ? value : typeof value === "number" ? String(value) : undefined

/**
 * Pulls message/type/code/param out of OpenAI's `{error:{...}}`, Anthropic's `{type:"error",error:{type,message}}`
 * and Gemini's `{error:{code,message,status}}` (sometimes wrapped in an array).
 */
export const parseErrorBody = (text: string): UpstreamErrorDetails => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return {}
  }
  const root = Array.isArray(parsed) ? parsed[0] : parsed
  if (typeof root !== "object" || root === null) return {}
  const error = "error" in root ? (root as { error: unknown }).error : root
  if (typeof error === "string") return { message: error }
  if (typeof error !== "object" || error === null) return {}
  const fields = error as Record<string, unknown>
  return {
    message: stringField(fields["message"]),
    type: stringField(fields["type"]) ?? stringField(fields["status"]),
    code: stringField(fields["code"]),
    param: stringField(fields["param"])
  }
}

const contentPolicyMarkers = /content[_ ]?(policy|filter|management)|safety|moderation/i
const quotaMarkers = /insufficient_quota|quota|billing|credit/i

/** The one table from an upstream HTTP status (and its body's hints) to a reason. */
export const reasonForStatus = (status: number, details: UpstreamErrorDetails): ProviderErrorReason => {
  const hint = `${details.type ?? ""} ${details.code ?? ""}`
  switch (status) {
    case 400:
    case 413:
    case 422:
      return contentPolicyMarkers.test(hint) ? "ContentPolicy" : "InvalidRequest"
    case 401:
    case 403:
      return "Authentication"
    case 402:
      return "QuotaExhausted"
    case 404:
      return "NotFound"
    case 408:
    case 504:
      return "Timeout"
    case 429:
      return quotaMarkers.test(hint) && !/rate/i.test(hint) ? "QuotaExhausted" : "RateLimited"
    default:
      return status >= 500 || status === 409 ? "Unavailable" : "InvalidRequest"
  }
}

const clientVisibleMessage = (provider: string, status: number, contentType: string, details: UpstreamErrorDetails): string => {
  if (details.message !== undefined && details.message.length > 0) return details.message
  const kind = contentType.split(";")[0]?.trim() || "an empty"
  return `${provider} upstream answered ${status} with ${kind} body`
}

/** A dialect's own reading of an error body, for what the status alone cannot tell (e.g. Gemini's 400 for a bad key). */
export type RefineError = (error: ProviderError, body: unknown) => ProviderError

const parseOrUndefined = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Builds the `ProviderError` for a non-2xx upstream response, consuming (a bounded part of) its body. */
export const errorFromResponse = (
  provider: string,
  response: HttpClientResponse.HttpClientResponse,
  refine?: RefineError
): Effect.Effect<ProviderError> =>
  response.text.pipe(
    Effect.map((text) => text.slice(0, maxErrorBodyChars)),
    Effect.orElseSucceed(() => ""),
    Effect.map((text) => {
      const details = parseErrorBody(text)
      const contentType = response.headers["content-type"] ?? ""
      const error = new ProviderError({
        reason: reasonForStatus(response.status, details),
        message: clientVisibleMessage(provider, response.status, contentType, details),
        provider,
        status: response.status,
        retryAfterMs: retryAfterMillis(response.headers),
        param: details.param ?? null,
        code: details.code ?? null
      })
      return refine === undefined ? error : refine(error, parseOrUndefined(text))
    })
  )

/** A transport failure (refused, reset, DNS, TLS) or a body that broke off. */
export const errorFromTransport = (provider: string, error: HttpClientError.HttpClientError): ProviderError =>
  new ProviderError({
    reason: "Unavailable",
    message: `${provider} upstream could not be reached: ${
      error._tag === "RequestError" ? error.reason : "the response broke off"
    }`,
    provider
  })

export const malformed = (provider: string, what: string): ProviderError =>
  new ProviderError({ reason: "MalformedResponse", message: `${provider} upstream sent ${what}`, provider })

/**
 * Sends `body` as JSON and resolves with a 2xx response; any other status becomes a `ProviderError`, which
 * `refine` may sharpen from the parsed error body.
 * The request is aborted if the calling fiber is interrupted.
 */
export const postJson = (
  client: HttpClient.HttpClient,
  provider: string,
  url: string,
  headers: Readonly<Record<string, string>>,
  body: unknown,
  refine?: RefineError
): Effect.Effect<HttpClientResponse.HttpClientResponse, ProviderError> =>
  client
    .execute(
      HttpClientRequest.post(url).pipe(
        HttpClientRequest.setHeaders(headers),
        HttpClientRequest.bodyText(JSON.stringify(body), "application/json")
      )
    )
    .pipe(
      Effect.mapError((error) => errorFromTransport(provider, error)),
      Effect.flatMap((response) =>
        response.status >= 200 && response.status < 300
          ? Effect.succeed(response)
          : Effect.flatMap(errorFromResponse(provider, response, refine), Effect.fail)
      )
    )

/** Reads a 2xx JSON body, failing with `MalformedResponse` when it is not JSON. */
export const readJson = (
  provider: string,
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<unknown, ProviderError> =>
  response.text.pipe(
    Effect.mapError((error) => errorFromTransport(provider, error)),
    Effect.flatMap((text) =>
      Effect.try({ try: () => JSON.parse(text) as unknown, catch: () => malformed(provider, "a body that is not JSON") })
    )
  )

/** One server-sent event: its name (`message` when unnamed) and its data. */
export interface SseEvent {
  readonly event: string
  readonly data: string
}

/**
 * A stateful SSE decoder over text chunks. Wraps @effect/experimental's parser, holding back a trailing CR so
 * that a CRLF split across two chunks is not read as an extra blank line.
 */
export const makeSseDecoder = () => {
  const events: Array<SseEvent> = []
  let heldCarriageReturn = false
  let started = false
  const parser = Sse.makeParser(
    (event) => {
      if (event._tag === "Event") events.push({ event: event.event, data: event.data })
    },
    { maxEventSize: maxSseEventChars }
  )
  return {
    /** Feeds text; returns the events it completed, or `undefined` when an event grew past the limit. */
    feed(text: string): ReadonlyArray<SseEvent> | undefined {
      let chunk = heldCarriageReturn ? "\r" + text : text
      // The parser only strips a BOM given as UTF-8 bytes; decoded text carries it as U+FEFF.
      if (!started && chunk.length > 0) {
        started = true
        if (chunk.startsWith("\uFEFF")) chunk = chunk.slice(1)
      }
      heldCarriageReturn = chunk.endsWith("\r")
      if (heldCarriageReturn) chunk = chunk.slice(0, -1)
      // The parser rescans its whole buffer for each line (quadratic in the chunk size) and misreads a blank
      // LF line after a CRLF in the same buffer: feed it one LF-terminated line at a time.
      for (const line of chunk.replace(/\r\n?/g, "\n").split(/(?<=\n)/)) {
        if (line.length > 0 && parser.feed(line) !== undefined) return undefined
      }
      return events.splice(0, events.length)
    },
    /** Flushes what a final blank line would have completed. */
    end(): ReadonlyArray<SseEvent> {
      parser.feed(heldCarriageReturn ? "\r\n\r\n" : "\n\n")
      return events.splice(0, events.length)
    }
  }
}

/** The body of a 2xx `text/event-stream` response as events. A broken-off body fails with `Unavailable`. */
export const sseEvents = (
  provider: string,
  response: HttpClientResponse.HttpClientResponse
): Stream.Stream<SseEvent, ProviderError> =>
  Stream.suspend(() => {
    const decoder = makeSseDecoder()
    const fromBody = response.stream.pipe(
      Stream.mapError((error) => errorFromTransport(provider, error)),
      Stream.decodeText(),
      Stream.mapEffect((text) => {
        const events = decoder.feed(text)
        return events === undefined
          ? Effect.fail(malformed(provider, "an SSE event larger than 16 MiB"))
          : Effect.succeed(events)
      }),
      Stream.flattenIterables
    )
    return Stream.concat(fromBody, Stream.suspend(() => Stream.fromIterable(decoder.end())))
  })

/** Parses one SSE `data:` payload as JSON, failing with `MalformedResponse`. */
export const parseEventJson = (provider: string, data: string): Effect.Effect<unknown, ProviderError> =>
  Effect.try({
    try: () => JSON.parse(data) as unknown,
    catch: () => malformed(provider, "an SSE event whose data is not JSON")
  })
