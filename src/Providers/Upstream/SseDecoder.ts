/**
 * A server-sent events decoder (the WHATWG event-stream grammar) over text pieces, in linear time: each character
 * is scanned once wherever the pieces are cut, and an event (its data plus the line being read) larger than
 * `maxEventChars` stops it at once instead of growing a buffer. @effect/experimental's parser rescans its buffer
 * for every line, so one huge event took seconds and its size guard never fired.
 */

/** One server-sent event: its name (`message` when unnamed) and its data. */
export interface SseEvent {
  readonly event: string
  readonly data: string
}

/** The default bound of one event. */
export const defaultMaxEventChars = 16 * 1024 * 1024

const noEvents: ReadonlyArray<SseEvent> = []
const LF = 10
const CR = 13

/** A stateful decoder; `feed` pieces in order, then `end`. */
export interface SseDecoder {
  /** Feeds text; returns the events it completed, or `undefined` once an event grew past the limit. */
  readonly feed: (text: string) => ReadonlyArray<SseEvent> | undefined
  /** Completes what a final blank line would have (upstreams often omit it), and returns it. */
  readonly end: () => ReadonlyArray<SseEvent>
  /** Characters held for the event in progress (its data lines and an unfinished line). */
  readonly pendingChars: () => number
}

export const makeSseDecoder = (maxEventChars: number = defaultMaxEventChars): SseDecoder => {
  let events: Array<SseEvent> = []
  let partialLine = ""
  let dataLines: Array<string> = []
  let eventChars = 0
  let eventName = ""
  let skipLeadingLf = false
  let started = false
  let overflowed = false

  const dispatch = () => {
    if (dataLines.length > 0) {
      events.push({ event: eventName === "" ? "message" : eventName, data: dataLines.length === 1 ? dataLines[0]! : dataLines.join("\n") })
    }
    dataLines = []
    eventChars = 0
    eventName = ""
  }

  const line = (text: string) => {
    if (text.length === 0) return dispatch()
    if (text.charCodeAt(0) === 58 /* : */) return
    const colon = text.indexOf(":")
    const name = colon === -1 ? text : text.slice(0, colon)
    let value = colon === -1 ? "" : text.slice(colon + 1)
    if (value.charCodeAt(0) === 32 /* space */) value = value.slice(1)
    if (name === "data") {
      dataLines.push(value)
      eventChars += value.length + 1
    } else if (name === "event") {
      eventName = value
    }
    // `id` and `retry` are of no use to a proxy; other names are ignored, as the grammar says.
  }

  const feed = (input: string): ReadonlyArray<SseEvent> | undefined => {
    if (overflowed) return undefined
    let text = input
    if (!started && text.length > 0) {
      started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    let start = 0
    if (skipLeadingLf && text.length > 0) {
      skipLeadingLf = false
      if (text.charCodeAt(0) === LF) start = 1
    }
    // Positions of the next CR and LF, each found once per run of the scan (never rescanned).
    let nextLf = text.indexOf("\n", start)
    let nextCr = text.indexOf("\r", start)
    while (start < text.length) {
      if (nextLf !== -1 && nextLf < start) nextLf = text.indexOf("\n", start)
      if (nextCr !== -1 && nextCr < start) nextCr = text.indexOf("\r", start)
      const end = nextLf === -1 ? nextCr : nextCr === -1 ? nextLf : Math.min(nextLf, nextCr)
      if (end === -1) {
        partialLine += text.slice(start)
        if (partialLine.length + eventChars > maxEventChars) {
          overflowed = true
          return undefined
        }
        break
      }
      const piece = text.slice(start, end)
      const whole = partialLine.length === 0 ? piece : partialLine + piece
      partialLine = ""
      if (whole.length + eventChars > maxEventChars) {
        overflowed = true
        return undefined
      }
      line(whole)
      if (text.charCodeAt(end) === CR) {
        if (end + 1 === text.length) skipLeadingLf = true
        else if (text.charCodeAt(end + 1) === LF) {
          start = end + 2
          continue
        }
      }
      start = end + 1
    }
    if (events.length === 0) return noEvents
    const completed = events
    events = []
    return completed
  }

  const end = (): ReadonlyArray<SseEvent> => {
    if (overflowed) return noEvents
    if (partialLine.length > 0) {
      line(partialLine)
      partialLine = ""
    }
    dispatch()
    const completed = events
    events = []
    return completed
  }

  return { feed, end, pendingChars: () => partialLine.length + eventChars }
}
