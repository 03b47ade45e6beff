/**
 * SSE framing of a chat completion stream: `data: <chunk>\n\n` frames, then `data: [DONE]\n\n`. A failure after
 * the first frame becomes one `data: {"error":{...}}` frame (what the OpenAI SDKs raise as an API error) and the
 * stream ends without `[DONE]`.
 */
import { Effect, Runtime } from "effect"
import { Readable } from "node:stream"
import { InternalError, ShuttingDown } from "../Errors.js"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"
import { StreamDefect } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import { ProviderError } from "../Providers/Provider.js"
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

/** The frames of one batch of chunks, as one string: one socket write per upstream read. */
export const framesOf = (chunks: Iterable<ChatCompletionChunk>, includeUsage: boolean): string => {
  let text = ""
  for (const chunk of chunks) {
    if (includeUsage) text += `data: ${JSON.stringify(chunk)}\n\n`
    else if (!isUsageOnly(chunk)) text += `data: ${JSON.stringify(withoutUsage(chunk))}\n\n`
  }
  return text
}

export interface SseOptions {
  /** `stream_options.include_usage` as the client sent it. */
  readonly includeUsage: boolean
  /** Named in the error frame of a defect (a bug) after the stream began; the defect itself is only logged. */
  readonly requestId: string
  /** Logs a defect with the request's services. */
  readonly runtime: Runtime.Runtime<never>
  /** Registers a callback for the end of the shutdown grace period; returns its unregistration. */
  readonly onTerminate: (terminate: () => void) => () => void
}

/** Where the frames go: text that may be refused (backpressure), and the last frame. */
interface FrameSink {
  /** Writes frames; `false` when the consumer is full and the pump must wait to be resumed. */
  readonly write: (text: string) => boolean
  readonly end: (lastFrame: Uint8Array) => void
  /** Wraps each run of the pump, e.g. to cork a socket around a burst of writes. */
  readonly around?: (run: () => void) => void
}

/**
 * Moves batches from the source to the sink until the sink is full or nothing is ready; ends with `[DONE]`, or one
 * error frame on a failure, a defect or shutdown. `stop` (the consumer left) and every ending close the source,
 * which releases the upstream. No Effect runs per batch.
 */
const makePump = (source: ChunkSource, options: SseOptions, sink: FrameSink) => {
  let ended = false
  let unregister = () => {}
  const stop = () => {
    if (ended) return
    ended = true
    unregister()
    source.onReady(undefined)
    source.close()
  }
  const finish = (lastFrame: Uint8Array) => {
    if (ended) return
    stop()
    sink.end(lastFrame)
  }
  const run = (): void => {
    while (!ended) {
      const take = source.poll()
      if (take === undefined) return source.onReady(pump)
      if (take === "end") return finish(doneFrame)
      if (take instanceof ProviderError) return finish(errorFrame(take))
      if (take instanceof StreamDefect) {
        Runtime.runFork(options.runtime)(Effect.logError("unhandled failure in stream", take.cause))
        return finish(errorFrame(new InternalError({ requestId: options.requestId })))
      }
      const text = framesOf(take, options.includeUsage)
      // An empty batch (e.g. only usage nobody asked for) writes nothing: take the next one.
      if (text.length > 0 && !sink.write(text)) return
    }
  }
  const { around } = sink
  const pump = around === undefined ? run : () => around(run)
  unregister = options.onTerminate(() => finish(errorFrame(new ShuttingDown())))
  return { pump, stop }
}

/**
 * The SSE body of a committed chat completion as a Node Readable, for a platform response: it takes batches from
 * the source as the client reads (so a slow client slows the upstream) and pushes each batch's frames in one
 * piece. Destroying it (the client left) closes the source.
 */
export const sseBody = (source: ChunkSource, options: SseOptions): Readable => {
  const { pump, stop } = makePump(source, options, {
    write: (text) => body.push(text),
    end: (lastFrame) => {
      body.push(lastFrame)
      body.push(null)
    }
  })
  const body: Readable = new Readable({
    read: pump,
    destroy(error, callback) {
      stop()
      callback(error)
    }
  })
  return body
}

/** The part of a Node ServerResponse the SSE writer uses. */
export interface SseResponse {
  write(text: string): boolean
  end(lastFrame: Uint8Array): unknown
  cork(): void
  uncork(): void
  once(event: "drain" | "close", listener: () => void): unknown
  readonly writableEnded: boolean
}

/**
 * Writes the SSE frames of a committed chat completion straight to a response whose headers are sent: what is
 * ready is written in one corked burst (one socket write for a fast upstream's batches and `[DONE]`), then each
 * batch as it arrives; a full socket pauses the pump until `drain`. A response closed before the end (the client
 * left) closes the source.
 */
export const writeSse = (source: ChunkSource, options: SseOptions, response: SseResponse): void => {
  const { pump, stop } = makePump(source, options, {
    write: (text) => {
      if (response.write(text)) return true
      response.once("drain", pump)
      return false
    },
    end: (lastFrame) => {
      response.end(lastFrame)
    },
    around: (run) => {
      response.cork()
      run()
      if (!response.writableEnded) response.uncork()
    }
  })
  response.once("close", stop)
  pump()
}
