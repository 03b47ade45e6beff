/**
 * The body of a 2xx `text/event-stream` upstream response as a ChunkSource, decoded in one pass per network read:
 * bytes → text → SSE events → a dialect's decode → items. No fiber per batch.
 */
import { Either } from "effect"
import type { ChunkSource, Take } from "../ChunkSource.js"
import { ProviderError } from "../ProviderError.js"
import { makeSseDecoder } from "./SseDecoder.js"
import type { SseEvent } from "./SseDecoder.js"
import { errorFromTransport, malformed, overHeldBytes, parseBoundedJson } from "./Transport.js"
import type { TransportService, UpstreamResponse } from "./Transport.js"

/** What a dialect makes of the events of one network read: its items, or the failure they stand for. */
export type EventBatch<A> =
  | { readonly items: ReadonlyArray<A>; /** The dialect's own end marker was seen (e.g. `[DONE]`). */ readonly done: boolean }
  | ProviderError

/**
 * Each poll takes every item decoded since the last one, so a consumer that falls behind gets fewer, larger
 * batches. Backpressure is in bytes: once `streamBufferBytes` of the body wait for the consumer, the body pauses
 * (a slow client slows the upstream instead of filling memory). `close` destroys the body, which aborts the
 * upstream request. When the body ends without the dialect's end marker, `atEnd` gives the last items, or fails
 * the stream (an upstream that broke off). Whatever a dialect's `decode` throws ends this stream with a
 * `MalformedResponse`, never the process.
 */
export const eventSource = <A>(
  transport: TransportService,
  provider: string,
  response: UpstreamResponse,
  decode: (events: ReadonlyArray<SseEvent>) => EventBatch<A>,
  atEnd: () => ReadonlyArray<A> | ProviderError = () => []
): ChunkSource<A> => {
  const { body } = response
  const { maxEventBytes, streamBufferBytes } = transport.limits
  const decoder = makeSseDecoder(maxEventBytes)
  // `stream: true` keeps a UTF-8 sequence split across two reads whole.
  const utf8 = new TextDecoder()
  let items: Array<A> = []
  let bufferedBytes = 0
  let markerSeen = false
  let ended = false
  let failure: ProviderError | undefined
  let waiting: (() => void) | undefined
  // The event in progress counts against the transport's bound on what every request holds (a character a byte).
  let heldChars = 0
  const holdPending = (): boolean => {
    const pending = decoder.pendingChars()
    if (pending > heldChars && !transport.held.take(pending - heldChars)) return false
    if (pending < heldChars) transport.held.give(heldChars - pending)
    heldChars = pending
    return true
  }
  const releaseHeld = () => {
    transport.held.give(heldChars)
    heldChars = 0
  }

  const isReady = () => items.length > 0 || failure !== undefined || ended
  const take = (): Take<A> | undefined => {
    if (items.length > 0) {
      const batch = items
      items = []
      bufferedBytes = 0
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
    items = []
    releaseHeld()
    body.destroy()
    wake()
  }
  const guarded = <B>(step: () => B): B | ProviderError => {
    try {
      return step()
    } catch {
      return malformed(provider, "a stream the gateway could not translate")
    }
  }
  const deliver = (events: ReadonlyArray<SseEvent>) => {
    if (markerSeen || events.length === 0) return
    const batch = guarded(() => decode(events))
    if (batch instanceof ProviderError) return fail(batch)
    // After the end marker the rest of the body is read and dropped, so the connection can be reused.
    markerSeen = batch.done
    for (const item of batch.items) items.push(item)
    wake()
  }
  body.on("data", (piece: Uint8Array) => {
    if (failure !== undefined) return
    const events = decoder.feed(utf8.decode(piece, { stream: true }))
    if (events === undefined) return fail(malformed(provider, `an SSE event larger than ${maxEventBytes} bytes`))
    if (!holdPending()) return fail(overHeldBytes(provider, transport))
    bufferedBytes += piece.length
    deliver(events)
    if (bufferedBytes > streamBufferBytes && items.length > 0 && failure === undefined) body.pause()
  })
  body.once("end", () => {
    if (failure !== undefined) return
    deliver(decoder.end())
    releaseHeld()
    if (failure !== undefined) return
    const last = markerSeen ? [] : guarded(atEnd)
    if (last instanceof ProviderError) return fail(last)
    for (const item of last) items.push(item)
    ended = true
    wake()
  })
  body.once("error", (error) => {
    if (failure === undefined && !ended) fail(errorFromTransport(provider, error))
  })
  body.once("close", () => {
    if (failure === undefined && !ended) fail(errorFromTransport(provider, new Error("closed")))
    releaseHeld()
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

/** Parses one SSE `data:` payload as JSON, or the failure it stands for. */
export const parseEventData = (provider: string, data: string): Either.Either<unknown, ProviderError> => {
  const value = parseBoundedJson(data)
  return value === undefined ? Either.left(malformed(provider, "an SSE event whose data is not JSON")) : Either.right(value)
}
