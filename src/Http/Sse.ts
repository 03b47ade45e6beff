/**
 * SSE framing of a chat completion stream: `data: <chunk>\n\n` frames, then `data: [DONE]\n\n`. A failure after
 * the first frame becomes one `data: {"error":{...}}` frame (what the OpenAI SDKs raise as an API error) and the
 * stream ends without `[DONE]`.
 */
import { Cause, Effect, Option, Stream } from "effect"
import { InternalError } from "../Errors.js"
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

export interface SseOptions {
  /** `stream_options.include_usage` as the client sent it. */
  readonly includeUsage: boolean
  /** Completes when the stream must end now (shutdown): it then ends with an error frame. */
  readonly terminate: Effect.Effect<GatewayError>
  /** Named in the error frame of a defect (a bug) after the stream began; the defect itself is only logged. */
  readonly requestId?: string
}

/** Frames a committed chunk stream as SSE bytes; never fails. */
export const toSseBody = <E extends GatewayError>(
  chunks: Stream.Stream<ChatCompletionChunk, E>,
  options: SseOptions
): Stream.Stream<Uint8Array> => {
  const visible = options.includeUsage
    ? chunks
    : chunks.pipe(Stream.filter((chunk) => !isUsageOnly(chunk)), Stream.map(withoutUsage))
  const frames = visible.pipe(
    Stream.map((chunk) => dataFrame(JSON.stringify(chunk))),
    Stream.concat(Stream.make(doneFrame))
  )
  return Stream.merge(
    frames.pipe(
      // A defect must end the stream with an error frame too: otherwise the response just stops, without
      // [DONE], and a client takes the truncated answer for a complete one.
      Stream.catchAllCause((cause: Cause.Cause<GatewayError>) =>
        Option.match(Cause.failureOption(cause), {
          onSome: (error) => Stream.make(errorFrame(error)),
          onNone: () =>
            Stream.fromEffect(
              Effect.as(
                Effect.logError("unhandled failure in stream", cause),
                errorFrame(new InternalError({ requestId: options.requestId ?? "unknown" }))
              )
            )
        })
      )
    ),
    Stream.fromEffect(Effect.map(options.terminate, errorFrame)),
    { haltStrategy: "either" }
  )
}
