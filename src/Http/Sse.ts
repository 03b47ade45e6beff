/**
 * SSE framing of a chat completion stream: `data: <chunk>\n\n` frames, then `data: [DONE]\n\n`. A failure after
 * the first frame becomes one `data: {"error":{...}}` frame (what the OpenAI SDKs raise as an API error) and the
 * stream ends without `[DONE]`.
 *
 * Two writers share the framing: `encode`, a Stream of chunks to a Stream of bytes (what a library user or the
 * HttpApi handler serves through `HttpServerResponse.stream`), and `writeSse`, the fast path's writer from a
 * ChunkSource straight to a Node response, with no fiber per batch.
 */
import { Cause, Chunk, Duration, Effect, Option, Schedule, Stream } from "effect"
import { InternalError, ShuttingDown } from "../Errors.js"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"
import type { ChunkTextSink } from "../OpenAi/Wire.js"
import { StreamDefect } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import { ProviderError } from "../Providers/Provider.js"
import type { TimerService } from "../Timer.js"
import type { GatewayError } from "./Errors.js"
import { describeError } from "./Errors.js"

const encoder = new TextEncoder()

/** One `data:` frame. The payload must be a single line, which JSON.stringify guarantees. */
export const dataFrame = (payload: string): Uint8Array => encoder.encode(`data: ${payload}\n\n`)

export const doneFrame: Uint8Array = encoder.encode("data: [DONE]\n\n")

/** The terminal frame for a failure after the stream began. */
export const errorFrame = (error: GatewayError): Uint8Array => dataFrame(JSON.stringify(describeError(error).body))

/** Headers of every SSE response. */
export const sseHeaders: Readonly<Record<string, string>> = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
}

/** Whether a chunk is the usage-only chunk that `stream_options.include_usage` asks for. */
const isUsageOnly = (chunk: ChatCompletionChunk): boolean => chunk.choices.length === 0 && chunk.usage != null

/** Drops usage the client did not ask for: the usage-only chunk and `usage` on other chunks. */
const withoutUsage = (chunk: ChatCompletionChunk): ChatCompletionChunk => {
  if (chunk.usage === undefined) return chunk
  const { usage: _usage, ...rest } = chunk
  return rest
}

/**
 * The frames of one batch of chunks, as one string: one socket write per upstream read. Throws what
 * JSON.stringify throws (a chunk no JSON can hold); both writers catch it.
 */
export const framesOf = (chunks: Iterable<ChatCompletionChunk>, includeUsage: boolean, sink?: ChunkTextSink): string => {
  let text = ""
  for (const chunk of chunks) {
    if (includeUsage || chunk.usage === undefined) {
      const json = JSON.stringify(chunk)
      sink?.wrote(chunk, json)
      text += `data: ${json}\n\n`
    } else if (!isUsageOnly(chunk)) text += `data: ${JSON.stringify(withoutUsage(chunk))}\n\n`
  }
  return text
}

/** What the SSE encoders need to know. */
export interface EncodeOptions {
  /** `stream_options.include_usage` as the client sent it. */
  readonly includeUsage: boolean
  /** Named in the error frame of a defect (a bug) after the stream began; the defect itself is logged. */
  readonly requestId?: string
  /** `encode` only: a `: keepalive` comment every this many milliseconds of the stream (`undefined` or 0: none). */
  readonly keepaliveMs?: number
  /** Told the JSON of each whole chunk written (the response cache's recording). */
  readonly sink?: ChunkTextSink
}

/**
 * How the items of one dialect's stream are written as SSE: OpenAI's chat chunks (`chatFraming`) or Anthropic's
 * Messages events (src/Http/Messages.ts). The writers below are the same for both.
 */
export interface Framing<A> {
  /** The frames of one batch, as one string (empty: nothing to write). May throw what JSON.stringify throws. */
  readonly frames: (batch: ReadonlyArray<A>) => string
  /** Written when the stream ends normally (OpenAI's `[DONE]`; nothing for a dialect whose last event says so). */
  readonly done: Uint8Array
  /** The terminal frame of a failure after the stream began. */
  readonly error: (error: GatewayError) => Uint8Array
  /** Written when the stream has been silent too long. */
  readonly keepalive: string
}

/** OpenAI's chat-completion framing: usage only when the client asked for it, `[DONE]` at the end. */
export const chatFraming = (includeUsage: boolean, sink?: ChunkTextSink): Framing<ChatCompletionChunk> => ({
  frames: (batch) => framesOf(batch, includeUsage, sink),
  done: doneFrame,
  error: errorFrame,
  keepalive: keepaliveFrame
})

/**
 * A stream of chunks as the bytes of its SSE body: a frame per chunk (usage only when asked for), `[DONE]` at the
 * end, or one error frame for a failure (a defect is logged and framed as an internal error). Compose it with
 * `HttpServerResponse.stream(bytes, { contentType: "text/event-stream" })`.
 */
export const encode = <E extends GatewayError>(
  chunks: Stream.Stream<ChatCompletionChunk, E>,
  options: EncodeOptions
): Stream.Stream<Uint8Array> => encodeFramed(chunks, chatFraming(options.includeUsage, options.sink), options)

/** `encode` for any dialect's items, framed by `framing`. */
export const encodeFramed = <A, E extends GatewayError>(
  items: Stream.Stream<A, E>,
  framing: Framing<A>,
  options: Omit<EncodeOptions, "includeUsage">
): Stream.Stream<Uint8Array> => {
  const internal = new InternalError({ requestId: options.requestId ?? "unknown" })
  const framed = items.pipe(
    Stream.chunks,
    Stream.map((batch) => framing.frames(Chunk.toReadonlyArray(batch))),
    Stream.filter((text) => text.length > 0),
    Stream.map((text) => encoder.encode(text)),
    Stream.concat(framing.done.length > 0 ? Stream.succeed(framing.done) : Stream.empty),
    Stream.catchAllCause((cause) => {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) return Stream.succeed(framing.error(failure.value))
      if (Cause.isInterruptedOnly(cause)) return Stream.empty
      return Stream.fromEffect(Effect.as(Effect.logError("unhandled failure in stream", cause), framing.error(internal)))
    })
  )
  const everyMs = options.keepaliveMs ?? 0
  if (everyMs <= 0) return framed
  const comment = encoder.encode(framing.keepalive)
  return Stream.merge(framed, Stream.fromSchedule(Schedule.spaced(Duration.millis(everyMs))).pipe(Stream.as(comment)), {
    haltStrategy: "left"
  })
}

/** What the fast path's writer needs besides the source and the response. */
export interface SseOptions extends EncodeOptions {
  readonly requestId: string
  /** Logs a defect with the request's id. */
  readonly logDefect: (cause: Cause.Cause<unknown>) => void
  /** Registers a callback for the end of the shutdown grace period; returns its unregistration. */
  readonly onTerminate: (terminate: () => void) => () => void
  /**
   * When the response must be over, however slowly the client reads: then the upstream is closed, the error frame
   * written, and a client that does not take it within `flushGraceMs` is disconnected.
   */
  readonly deadline?: { readonly at: number; readonly timer: TimerService; readonly onTimeout: () => GatewayError }
  /**
   * An SSE comment (`: keepalive`) whenever nothing has been written for this long, so that load balancers do not
   * close a stream whose model thinks for minutes; `undefined` or 0: none.
   */
  readonly keepalive?: { readonly everyMs: number; readonly timer: TimerService }
  /** Called once, when the first frame of content is written (time to first token). */
  readonly onFirstWrite?: () => void
}

/** The comment line a stream writes when it has been silent too long; every SSE client ignores it. */
export const keepaliveFrame = ": keepalive\n\n"

/** Time a response ended at its deadline gets to flush its error frame before its socket is destroyed. */
export const flushGraceMs = 1000

/** The part of a Node ServerResponse the SSE writer uses. */
export interface SseResponse {
  write(text: string): boolean
  end(lastFrame: Uint8Array): unknown
  cork(): void
  uncork(): void
  destroy(): unknown
  once(event: "drain" | "close" | "finish", listener: () => void): unknown
  readonly writableEnded: boolean
  readonly writableLength: number
  readonly writableFinished: boolean
}

/**
 * Writes the SSE frames of a committed chat completion straight to a response whose headers are sent: what is
 * ready is written in one corked burst (one socket write for a fast upstream's batches and `[DONE]`), then each
 * batch as it arrives; a full socket pauses the pump until `drain`. A response closed before the end (the client
 * left) closes the source; so does every ending. Nothing it does can throw past it: a chunk that cannot be framed
 * ends the stream with an internal-error frame, logged.
 */
export const writeSse = (source: ChunkSource, options: SseOptions, response: SseResponse): void =>
  writeFramed(source, chatFraming(options.includeUsage, options.sink), options, response)

/** `writeSse` for any dialect's items, framed by `framing`. */
export const writeFramed = <A>(source: ChunkSource<A>, framing: Framing<A>, options: Omit<SseOptions, "includeUsage">, response: SseResponse): void => {
  let ended = false
  let unregister = () => {}
  let cancelDeadline = () => {}
  let cancelKeepalive = () => {}
  let lastWrite = 0
  let wroteContent = false
  const stop = () => {
    if (ended) return
    ended = true
    unregister()
    cancelDeadline()
    cancelKeepalive()
    source.onReady(undefined)
    source.close()
  }
  const finish = (lastFrame: Uint8Array) => {
    if (ended) return
    stop()
    response.end(lastFrame)
  }
  const defect = (cause: Cause.Cause<unknown>) => {
    options.logDefect(cause)
    finish(framing.error(new InternalError({ requestId: options.requestId })))
  }
  const run = (): void => {
    while (!ended) {
      const take = source.poll()
      if (take === undefined) return source.onReady(pump)
      if (take === "end") return finish(framing.done)
      if (take instanceof ProviderError) return finish(framing.error(take))
      if (take instanceof StreamDefect) return defect(take.cause)
      const text = framing.frames(take)
      // An empty batch (e.g. only usage nobody asked for) writes nothing: take the next one.
      if (text.length === 0) continue
      if (!wroteContent) {
        wroteContent = true
        options.onFirstWrite?.()
      }
      lastWrite = keepaliveTimer?.now() ?? 0
      if (!response.write(text)) {
        response.once("drain", pump)
        return
      }
    }
  }
  function pump(): void {
    try {
      response.cork()
      run()
    } catch (thrown) {
      defect(Cause.die(thrown))
    } finally {
      if (!response.writableEnded) response.uncork()
    }
  }
  const keepaliveTimer = options.keepalive !== undefined && options.keepalive.everyMs > 0 ? options.keepalive.timer : undefined
  if (keepaliveTimer !== undefined && options.keepalive !== undefined) {
    const everyMs = options.keepalive.everyMs
    lastWrite = keepaliveTimer.now()
    const tick = () => {
      if (ended) return
      const silentMs = keepaliveTimer.now() - lastWrite
      if (silentMs >= everyMs) {
        lastWrite = keepaliveTimer.now()
        // A full socket already tells the load balancer the connection is alive: nothing is queued behind it.
        if (response.writableLength === 0) response.write(framing.keepalive)
        cancelKeepalive = keepaliveTimer.after(everyMs, tick)
      } else cancelKeepalive = keepaliveTimer.after(everyMs - silentMs, tick)
    }
    cancelKeepalive = keepaliveTimer.after(everyMs, tick)
  }
  const { deadline } = options
  if (deadline !== undefined) {
    cancelDeadline = deadline.timer.after(deadline.at - deadline.timer.now(), () => {
      finish(framing.error(deadline.onTimeout()))
      const cancelFlush = deadline.timer.after(flushGraceMs, () => {
        if (!response.writableFinished) response.destroy()
      })
      response.once("close", cancelFlush)
    })
  }
  unregister = options.onTerminate(() => finish(framing.error(new ShuttingDown())))
  response.once("close", stop)
  pump()
}
