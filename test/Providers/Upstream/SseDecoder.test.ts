import { describe, expect, it } from "vitest"
import { makeSseDecoder } from "../../../src/Providers/Upstream/SseDecoder.js"
import type { SseEvent } from "../../../src/Providers/Upstream/SseDecoder.js"

describe("makeSseDecoder", () => {
  /** Feeds the parts in order and ends the stream; an oversized event shows up as a marker. */
  const decode = (parts: ReadonlyArray<string>): ReadonlyArray<SseEvent> => {
    const decoder = makeSseDecoder()
    const events = parts.flatMap((part) => decoder.feed(part) ?? [{ event: "OVERSIZED", data: "" }])
    return [...events, ...decoder.end()]
  }

  it("decodes LF-separated events", () => {
    expect(decode(["data: a\n\nevent: named\ndata: b\n\n"])).toEqual([
      { event: "message", data: "a" },
      { event: "named", data: "b" }
    ])
  })

  it("decodes CRLF-separated events", () => {
    expect(decode(["event: named\r\ndata: {\"x\":1}\r\n\r\ndata: b\r\n\r\n"])).toEqual([
      { event: "named", data: "{\"x\":1}" },
      { event: "message", data: "b" }
    ])
  })

  it("returns each event as soon as its blank line arrives", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("data: a\n")).toEqual([])
    expect(decoder.feed("\ndata: b")).toEqual([{ event: "message", data: "a" }])
    expect(decoder.feed("\n\n")).toEqual([{ event: "message", data: "b" }])
    expect(decoder.end()).toEqual([])
  })

  it("keeps the event name when an event: line's CRLF is split between chunks", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("event: content_block_delta\r")).toEqual([])
    expect(decoder.feed("\ndata: {}\r\n\r\n")).toEqual([{ event: "content_block_delta", data: "{}" }])
  })

  it("ends a line at a lone CR and skips the LF of a CRLF split between chunks", () => {
    const decoder = makeSseDecoder()
    // the CR ends the blank line at once: the event is complete without waiting for the LF
    expect(decoder.feed("data: a\r\n\r")).toEqual([{ event: "message", data: "a" }])
    expect(decoder.feed("\n")).toEqual([])
    expect(decoder.feed("data: b\r")).toEqual([])
    expect(decoder.feed("\n\r")).toEqual([{ event: "message", data: "b" }])
    expect(decoder.feed("\nevent: c\r")).toEqual([])
    expect(decoder.feed("\ndata: c\r\n\r\n")).toEqual([{ event: "c", data: "c" }])
    expect(decoder.end()).toEqual([])
  })

  it("decodes the same events wherever a CRLF body is cut", () => {
    const body = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\r\n\r\nevent: delta\r\ndata: x\r\ndata: y\r\n\r\ndata: z\r\n\r\n"
    const expected = [
      { event: "message_start", data: "{\"a\":1}" },
      { event: "delta", data: "x\ny" },
      { event: "message", data: "z" }
    ]
    expect(decode([body])).toEqual(expected)
    expect(decode([...body])).toEqual(expected)
    for (let i = 0; i <= body.length; i++) {
      for (let j = i; j <= body.length; j += 3) {
        expect(decode([body.slice(0, i), body.slice(i, j), body.slice(j)]), `cut at ${i} and ${j}`).toEqual(expected)
      }
    }
  })

  it("accepts lone CR line endings and mixed endings in one chunk", () => {
    expect(decode(["data: a\r\rdata: b\r\r"])).toEqual([
      { event: "message", data: "a" },
      { event: "message", data: "b" }
    ])
    expect(decode(["data: a\r\n\r\ndata: b\n\ndata: c\r\n\r\n"])).toEqual([
      { event: "message", data: "a" },
      { event: "message", data: "b" },
      { event: "message", data: "c" }
    ])
  })

  it("joins multi-line data with LF", () => {
    expect(decode(["data: line one\ndata: line two\ndata:\ndata:no-space\n\n"])).toEqual([
      { event: "message", data: "line one\nline two\n\nno-space" }
    ])
  })

  it("skips comments and events without data", () => {
    expect(decode([": ping\n\n", ":\n\nevent: lonely\n\n", "data: real\n\n"])).toEqual([{ event: "message", data: "real" }])
  })

  it("strips a leading byte order mark, also when it arrives alone", () => {
    expect(decode(["\uFEFFdata: first\n\n"])).toEqual([{ event: "message", data: "first" }])
    expect(decode(["\uFEFF", "data: first\n\n"])).toEqual([{ event: "message", data: "first" }])
    expect(decode(["data: a\n\n", "\uFEFFdata: b\n\n"])).toEqual([{ event: "message", data: "a" }])
  })

  it("end() flushes an unterminated event", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("data: tail")).toEqual([])
    expect(decoder.end()).toEqual([{ event: "message", data: "tail" }])
    const crlf = makeSseDecoder()
    expect(crlf.feed("event: last\r\ndata: tail\r")).toEqual([])
    expect(crlf.end()).toEqual([{ event: "last", data: "tail" }])
  })

  it("decodes many small events of one large chunk", () => {
    const events = makeSseDecoder().feed("data: x\r\n\r\n".repeat(20_000))
    expect(events).toHaveLength(20_000)
  })

  it("refuses an event at its limit however it is cut, and stays refused", () => {
    const limit = 64 * 1024
    const decoder = makeSseDecoder(limit)
    let fed = 0
    let refusedAt: number | undefined
    const piece = "y".repeat(1000)
    expect(decoder.feed("data: ")).toEqual([])
    while (refusedAt === undefined && fed < 10 * limit) {
      fed += piece.length
      if (decoder.feed(piece) === undefined) refusedAt = fed
    }
    expect(refusedAt).toBeDefined()
    expect(refusedAt!).toBeGreaterThan(limit - 2 * piece.length)
    expect(refusedAt!).toBeLessThanOrEqual(limit + piece.length)
    expect(decoder.feed("\n\ndata: ok\n\n")).toBeUndefined()
    expect(decoder.end()).toEqual([])
  })

  it("counts every data line of one event towards the limit", () => {
    const decoder = makeSseDecoder(100)
    expect(decoder.feed("data: " + "a".repeat(40) + "\n")).toEqual([])
    expect(decoder.feed("data: " + "b".repeat(40) + "\n")).toEqual([])
    expect(decoder.feed("data: " + "c".repeat(40) + "\n")).toBeUndefined()
  })

  it("gives undefined for an event larger than 16 MiB", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("data: " + "x".repeat(8 * 1024 * 1024))).toEqual([])
    expect(decoder.feed("x".repeat(8 * 1024 * 1024 + 16))).toBeUndefined()
  })
})
