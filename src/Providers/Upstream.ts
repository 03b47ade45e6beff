/**
 * What every HTTP provider shares: sending a JSON request, turning an upstream failure into a
 * `ProviderError` with its reason (once, here), and decoding an SSE body into events.
 */
import * as Sse from "@effect/experimental/Sse"
import { Effect, Either, Stream } from "effect"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"
import { pullOf } from "./ChunkSource.js"
import type { ChunkSource, Take } from "./ChunkSource.js"
import { Agent, request } from "undici"
import type { Dispatcher } from "undici"
import { ProviderError } from "./Provider.js"
import type { AttemptDeadline, ProviderErrorReason } from "./Provider.js"

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

/**
 * One keep-alive connection pool per upstream origin, shared by every provider. undici directly rather than
 * through HttpClient: the gateway's hot path is this call, and the wrapper's cost showed in the profiles.
 */
const dispatcher = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000 })

/** A 2xx upstream response whose body has not been read yet: read it, stream it, or it is destroyed. */
export interface UpstreamResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly body: Dispatcher.ResponseData["body"]
}

const flattenHeaders = (headers: Dispatcher.ResponseData["headers"]): Record<string, string | undefined> => {
  const flat: Record<string, string | undefined> = {}
  for (const name in headers) {
    const value = headers[name]
    flat[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return flat
}

/** Reads at most `limit` characters of a body, then destroys the rest of it. */
const readBounded = (body: UpstreamResponse["body"], limit: number): Promise<string> =>
  new Promise((resolve) => {
    let text = ""
    body.setEncoding("utf8")
    body.on("data", (piece: string) => {
      text += piece
      if (text.length >= limit) body.destroy()
    })
    body.on("error", () => resolve(text))
    body.on("close", () => resolve(text))
    body.on("end", () => resolve(text))
  })

/** Builds the `ProviderError` for a non-2xx upstream response, consuming (a bounded part of) its body. */
const describeFailure = async (provider: string, response: UpstreamResponse, refine?: RefineError): Promise<ProviderError> => {
  const text = await readBounded(response.body, maxErrorBodyChars)
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
}

const transportCode = (error: unknown): string => {
  if (typeof error !== "object" || error === null) return "unknown error"
  const code = (error as { code?: unknown }).code
  return typeof code === "string" ? code : error instanceof Error ? error.name : "unknown error"
}

/** A transport failure (refused, reset, DNS, TLS) or a body that broke off. */
export const errorFromTransport = (provider: string, error: unknown): ProviderError =>
  new ProviderError({
    reason: "Unavailable",
    message: `${provider} upstream could not be reached or broke off (${transportCode(error)})`,
    provider
  })

export const malformed = (provider: string, what: string): ProviderError =>
  new ProviderError({ reason: "MalformedResponse", message: `${provider} upstream sent ${what}`, provider })

/**
 * An async upstream step that settles once: by its own outcome, by the deadline (which aborts it and fails with the
 * deadline's timeout), or by interruption (which aborts it). One plain timer, no fiber. `start` begins the step and
 * returns how to abort it. The providers' calls use it, and the Router's wait for a first chunk.
 */
export const bounded = <A>(
  deadline: AttemptDeadline | undefined,
  start: (settle: (outcome: Effect.Effect<A, ProviderError>) => void, isSettled: () => boolean) => () => void
): Effect.Effect<A, ProviderError> =>
  Effect.async<A, ProviderError>((resume) => {
    let settled = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const settle = (outcome: Effect.Effect<A, ProviderError>) => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      resume(outcome)
    }
    const abort = start(settle, () => settled)
    if (deadline !== undefined && !settled) {
      timer = setTimeout(() => {
        abort()
        settle(Effect.fail(deadline.onTimeout()))
      }, Math.max(0, deadline.at - Date.now()))
    }
    return Effect.sync(() => {
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      abort()
    })
  })

/**
 * Sends `body` as JSON and resolves with a 2xx response; any other status becomes a `ProviderError`, which
 * `refine` may sharpen from the parsed error body. Interrupting the calling fiber, or reaching `deadline`, aborts
 * the request.
 */
export const postJson = (
  provider: string,
  url: string,
  headers: Readonly<Record<string, string>>,
  body: unknown,
  refine?: RefineError,
  deadline?: AttemptDeadline
): Effect.Effect<UpstreamResponse, ProviderError> =>
  bounded<UpstreamResponse>(deadline, (settle, isSettled) => {
    const controller = new AbortController()
    request(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
      dispatcher
    }).then(
      (response) => {
        const upstream = { status: response.statusCode, headers: flattenHeaders(response.headers), body: response.body }
        if (isSettled()) response.body.destroy()
        else if (upstream.status >= 200 && upstream.status < 300) settle(Effect.succeed(upstream))
        // The deadline covers the error body too: a stalled one ends with the timeout, not a hang.
        else describeFailure(provider, upstream, refine).then((error) => settle(Effect.fail(error)))
      },
      (error: unknown) => settle(Effect.fail(errorFromTransport(provider, error)))
    )
    return () => controller.abort()
  })

/** Reads a whole body as text; interruption, or reaching `deadline`, destroys it. */
const readText = (provider: string, response: UpstreamResponse, deadline?: AttemptDeadline): Effect.Effect<string, ProviderError> =>
  bounded<string>(deadline, (settle) => {
    response.body.text().then(
      (text) => settle(Effect.succeed(text)),
      (error: unknown) => settle(Effect.fail(errorFromTransport(provider, error)))
    )
    return () => response.body.destroy()
  })

/** Reads a 2xx JSON body, failing with `MalformedResponse` when it is not JSON. */
export const readJson = (provider: string, response: UpstreamResponse, deadline?: AttemptDeadline): Effect.Effect<unknown, ProviderError> =>
  Effect.flatMap(readText(provider, response, deadline), (text) =>
    Effect.try({ try: () => JSON.parse(text) as unknown, catch: () => malformed(provider, "a body that is not JSON") })
  )

/** One server-sent event: its name (`message` when unnamed) and its data. */
export interface SseEvent {
  readonly event: string
  readonly data: string
}

const noEvents: ReadonlyArray<SseEvent> = []

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
      if (chunk.includes("\r")) chunk = chunk.replace(/\r\n?/g, "\n")
      let start = 0
      while (start < chunk.length) {
        const newline = chunk.indexOf("\n", start)
        const end = newline === -1 ? chunk.length : newline + 1
        if (parser.feed(chunk.slice(start, end)) !== undefined) return undefined
        start = end
      }
      if (events.length === 0) return noEvents
      const completed = events.slice()
      events.length = 0
      return completed
    },
    /** Flushes what a final blank line would have completed. */
    end(): ReadonlyArray<SseEvent> {
      parser.feed(heldCarriageReturn ? "\r\n\r\n" : "\n\n")
      return events.splice(0, events.length)
    }
  }
}

/** What a dialect makes of the events of one network read: its items, or the failure they stand for. */
export type EventBatch<A> =
  | { readonly items: ReadonlyArray<A>; /** The dialect's own end marker was seen (e.g. `[DONE]`). */ readonly done: boolean }
  | ProviderError

/** Decoded items held for the consumer before the body is paused. */
const highWaterItems = 256

/**
 * The body of a 2xx `text/event-stream` response as a ChunkSource, decoded in one pass per network read: bytes →
 * text → SSE events → `decode` → items. Each poll takes every item decoded since the last one, so a consumer that
 * falls behind gets fewer, larger batches; past `highWaterItems` the body pauses (a slow client slows the upstream
 * instead of filling memory). `close` destroys the body, which aborts the upstream request. When the body ends
 * without the dialect's end marker, `atEnd` gives the last items, or fails the stream (an upstream that broke off).
 */
export const eventSource = <A>(
  provider: string,
  response: UpstreamResponse,
  decode: (events: ReadonlyArray<SseEvent>) => EventBatch<A>,
  atEnd: () => ReadonlyArray<A> | ProviderError = () => []
): ChunkSource<A> => {
  const { body } = response
  const decoder = makeSseDecoder()
  // `stream: true` keeps a UTF-8 sequence split across two reads whole.
  const utf8 = new TextDecoder()
  let items: Array<A> = []
  let markerSeen = false
  let ended = false
  let failure: ProviderError | undefined
  let waiting: (() => void) | undefined

  const isReady = () => items.length > 0 || failure !== undefined || ended
  const take = (): Take<A> | undefined => {
    if (items.length > 0) {
      const batch = items
      items = []
      if (body.isPaused() && failure === undefined) body.resume()
      return batch
    }
    if (failure !== undefined) return failure
    return ended ? "end" : undefined
  }
  const wake = () => {
    const resume = waiting
    if (resume !== undefined && isReady()) {
      waiting = undefined
      resume()
    }
  }
  const fail = (error: ProviderError) => {
    failure = error
    body.destroy()
    wake()
  }
  const deliver = (events: ReadonlyArray<SseEvent>) => {
    if (markerSeen || events.length === 0) return
    const batch = decode(events)
    if (batch instanceof ProviderError) return fail(batch)
    // After the end marker the rest of the body is read and dropped, so the connection can be reused.
    markerSeen = batch.done
    for (const item of batch.items) items.push(item)
    if (items.length >= highWaterItems) body.pause()
    wake()
  }
  body.on("data", (piece: Uint8Array) => {
    if (failure !== undefined) return
    const events = decoder.feed(utf8.decode(piece, { stream: true }))
    if (events === undefined) fail(malformed(provider, "an SSE event larger than 16 MiB"))
    else deliver(events)
  })
  body.once("end", () => {
    if (failure !== undefined) return
    deliver(decoder.end())
    if (failure !== undefined) return
    const last = markerSeen ? [] : atEnd()
    if (last instanceof ProviderError) return fail(last)
    for (const item of last) items.push(item)
    ended = true
    wake()
  })
  body.once("error", (error) => {
    if (failure === undefined && !ended) fail(errorFromTransport(provider, error))
  })
  return {
    poll: take,
    onReady: (resume) => {
      waiting = resume
      wake()
    },
    close: () => {
      waiting = undefined
      body.destroy()
    }
  }
}

/**
 * Drives a dialect's pure stream state machine: `step` per input (an SSE event, or a parsed frame), `finish` when
 * the body ends. `feedAll` and `atEnd` are what `eventSource` takes as `decode` and `atEnd`.
 */
export const runMachine = <S, I, A>(
  initial: S,
  step: (state: S, input: I) => Either.Either<readonly [S, ReadonlyArray<A>], ProviderError>,
  finish: (state: S) => Either.Either<ReadonlyArray<A>, ProviderError>
) => {
  let state = initial
  const feedAll = (inputs: Iterable<I>): EventBatch<A> => {
    const items: Array<A> = []
    for (const input of inputs) {
      const result = step(state, input)
      if (Either.isLeft(result)) return result.left
      state = result.right[0]
      for (const item of result.right[1]) items.push(item)
    }
    return { items, done: false }
  }
  return {
    feedAll,
    atEnd: (): ReadonlyArray<A> | ProviderError => Either.getOrElse(finish(state), (error): ProviderError => error),
    finish: () => finish(state)
  }
}

/** A provider's `stream` from its `open`: the same batches, as a Stream that closes the source when it ends. */
export const streamFromOpen =
  <R>(open: (request: R) => Effect.Effect<ChunkSource, ProviderError>) =>
  (request: R): Stream.Stream<ChatCompletionChunk, ProviderError> =>
    Stream.unwrapScoped(
      Effect.map(Effect.acquireRelease(open(request), (source) => Effect.sync(source.close)), (source) =>
        Stream.repeatEffectChunkOption(pullOf(source))
      )
    )

/** Parses one SSE `data:` payload as JSON, or the failure it stands for. */
export const parseEventData = (provider: string, data: string): Either.Either<unknown, ProviderError> =>
  Either.try({ try: () => JSON.parse(data) as unknown, catch: () => malformed(provider, "an SSE event whose data is not JSON") })

