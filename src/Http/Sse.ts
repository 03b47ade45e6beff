/**
 * SSE framing of a chat completion stream: `data: <chunk>\n\n` frames, then `data: [DONE]\n\n`. A failure after
 * the first frame becomes one `data: {"error":{...}}` frame (what the OpenAI SDKs raise as an API error) and the
 * stream ends without `[DONE]`.
 */
import { Cause, Effect, Exit, Option, Runtime } from "effect"
import type { Chunk, Fiber } from "effect"
import { Readable } from "node:stream"
import { InternalError, ShuttingDown } from "../Errors.js"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"
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

/** Pulls the next batch of a committed stream; fails with `None` at its end. */
export type NextBatch = Effect.Effect<Chunk.Chunk<ChatCompletionChunk>, Option.Option<GatewayError>>

export interface SseOptions {
  /** `stream_options.include_usage` as the client sent it. */
  readonly includeUsage: boolean
  /** Named in the error frame of a defect (a bug) after the stream began; the defect itself is only logged. */
  readonly requestId: string
  /** Runs the pulls (and the log of a defect) with the request's services. */
  readonly runtime: Runtime.Runtime<never>
  /** Registers a callback for the end of the shutdown grace period; returns its unregistration. */
  readonly onTerminate: (terminate: () => void) => () => void
  /** Releases the upstream; called once, however the body ends. */
  readonly release: () => void
}

/**
 * The SSE body of a committed chat completion: a Node Readable that pulls batches of the chunk stream on demand
 * (so a slow client slows the upstream) and writes each batch's frames in one piece. It ends with `[DONE]`, or
 * with one error frame on a failure, a defect or shutdown. Destroying it (the client left) interrupts the pull in
 * flight and releases the upstream.
 *
 * Why a Readable and not a second Effect Stream: the committed stream has already been run once (to its first
 * chunk); running it again as a Stream costs a fixed ~125 µs of Stream machinery per response, which the
 * benchmark showed as the largest single cost of a streamed request.
 */
export const sseBody = (next: NextBatch, options: SseOptions): Readable => {
  const runFork = Runtime.runFork(options.runtime)
  let pulling: Fiber.RuntimeFiber<Chunk.Chunk<ChatCompletionChunk>, Option.Option<GatewayError>> | undefined
  let ended = false
  let unregister = () => {}
  const cleanUp = () => {
    ended = true
    unregister()
    pulling?.unsafeInterruptAsFork(pulling.id())
    pulling = undefined
    options.release()
  }
  const body: Readable = new Readable({
    read() {
      if (pulling !== undefined || ended) return
      const fiber = runFork(next)
      pulling = fiber
      fiber.addObserver((exit) => {
        if (pulling !== fiber || ended) return
        pulling = undefined
        if (Exit.isSuccess(exit)) {
          const text = framesOf(exit.value, options.includeUsage)
          // An empty batch (e.g. only usage nobody asked for) writes nothing: pull again.
          if (text.length === 0) body._read(0)
          else body.push(text)
          return
        }
        const failure = Cause.failureOption(exit.cause)
        if (Option.isSome(failure)) return finish(Option.isSome(failure.value) ? errorFrame(failure.value.value) : doneFrame)
        // A defect, or a pull interrupted by something other than this body (which would stall it): end it.
        runFork(Effect.logError("unhandled failure in stream", exit.cause))
        finish(errorFrame(new InternalError({ requestId: options.requestId })))
      })
    },
    destroy(error, callback) {
      if (!ended) cleanUp()
      callback(error)
    }
  })
  const finish = (lastFrame: Uint8Array) => {
    if (ended) return
    cleanUp()
    body.push(lastFrame)
    body.push(null)
  }
  unregister = options.onTerminate(() => finish(errorFrame(new ShuttingDown())))
  return body
}
