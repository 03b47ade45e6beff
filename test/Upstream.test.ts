import { describe, expect, it } from "vitest"
import type { ProviderErrorReason } from "../src/Providers/Provider.js"
import { makeSseDecoder, parseErrorBody, reasonForStatus, retryAfterMillis } from "../src/Providers/Upstream.js"
import type { SseEvent } from "../src/Providers/Upstream.js"

describe("retryAfterMillis", () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0)

  it("reads retry-after-ms first", () => {
    expect(retryAfterMillis({ "retry-after-ms": "1500", "retry-after": "9" }, now)).toBe(1500)
    expect(retryAfterMillis({ "retry-after-ms": "12.5" }, now)).toBe(12.5)
  })

  it("reads retry-after in seconds, fractions included", () => {
    expect(retryAfterMillis({ "retry-after": "2" }, now)).toBe(2000)
    expect(retryAfterMillis({ "retry-after": "0.25" }, now)).toBe(250)
    expect(retryAfterMillis({ "retry-after": "0" }, now)).toBe(0)
  })

  it("falls back to retry-after when retry-after-ms is garbage", () => {
    expect(retryAfterMillis({ "retry-after-ms": "soon", "retry-after": "3" }, now)).toBe(3000)
  })

  it("reads an HTTP date relative to now, never negative", () => {
    expect(retryAfterMillis({ "retry-after": new Date(now + 30_000).toUTCString() }, now)).toBe(30_000)
    expect(retryAfterMillis({ "retry-after": "Wed, 01 Jan 2025 12:01:00 GMT" }, now)).toBe(60_000)
    expect(retryAfterMillis({ "retry-after": new Date(now - 30_000).toUTCString() }, now)).toBe(0)
  })

  it("ignores garbage instead of retrying at once", () => {
    for (const value of ["soon", "", " ", "-1", "1.5.2", "abc 2", "Infinity", "12abc", "NaN"]) {
      expect(retryAfterMillis({ "retry-after": value }, now), JSON.stringify(value)).toBeUndefined()
      expect(retryAfterMillis({ "retry-after-ms": value }, now), JSON.stringify(value)).toBeUndefined()
    }
    expect(retryAfterMillis({}, now)).toBeUndefined()
  })
})

describe("parseErrorBody", () => {
  it("reads OpenAI's envelope", () => {
    const body = JSON.stringify({
      error: { message: "Invalid 'messages'", type: "invalid_request_error", param: "messages", code: "invalid_value" }
    })
    expect(parseErrorBody(body)).toEqual({
      message: "Invalid 'messages'",
      type: "invalid_request_error",
      param: "messages",
      code: "invalid_value"
    })
  })

  it("reads Anthropic's envelope", () => {
    const body = JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
    const details = parseErrorBody(body)
    expect(details.message).toBe("Overloaded")
    expect(details.type).toBe("overloaded_error")
    expect(details.code).toBeUndefined()
  })

  it("reads Gemini's envelope: numeric code as text, status as type", () => {
    const error = { code: 429, message: "Resource has been exhausted", status: "RESOURCE_EXHAUSTED" }
    const expected = { message: "Resource has been exhausted", type: "RESOURCE_EXHAUSTED", code: "429" }
    expect(parseErrorBody(JSON.stringify({ error }))).toEqual(expected)
    expect(parseErrorBody(JSON.stringify([{ error }]))).toEqual(expected)
  })

  it("takes a bare string error as the message", () => {
    expect(parseErrorBody(JSON.stringify({ error: "model overloaded" }))).toEqual({ message: "model overloaded" })
  })

  it("gives nothing for bodies that are not error JSON", () => {
    expect(parseErrorBody("<html><body>502 Bad Gateway</body></html>")).toEqual({})
    expect(parseErrorBody("")).toEqual({})
    expect(parseErrorBody("null")).toEqual({})
    expect(parseErrorBody("42")).toEqual({})
    expect(parseErrorBody(JSON.stringify({ error: 7 }))).toEqual({})
  })
})

describe("reasonForStatus", () => {
  const table: ReadonlyArray<readonly [number, Parameters<typeof reasonForStatus>[1], ProviderErrorReason]> = [
    [400, {}, "InvalidRequest"],
    [400, { code: "content_policy_violation" }, "ContentPolicy"],
    [400, { type: "content_filter" }, "ContentPolicy"],
    [400, { type: "invalid_request_error", code: "context_length_exceeded" }, "InvalidRequest"],
    [401, {}, "Authentication"],
    [403, { type: "PERMISSION_DENIED" }, "Authentication"],
    [402, {}, "QuotaExhausted"],
    [404, {}, "NotFound"],
    [408, {}, "Timeout"],
    [409, {}, "Unavailable"],
    [413, {}, "InvalidRequest"],
    [422, {}, "InvalidRequest"],
    [422, { type: "moderation" }, "ContentPolicy"],
    [429, {}, "RateLimited"],
    [429, { code: "rate_limit_exceeded" }, "RateLimited"],
    [429, { type: "rate_limit_error" }, "RateLimited"],
    [429, { type: "insufficient_quota", code: "insufficient_quota" }, "QuotaExhausted"],
    [429, { code: "billing_hard_limit_reached" }, "QuotaExhausted"],
    [500, {}, "Unavailable"],
    [502, {}, "Unavailable"],
    [503, {}, "Unavailable"],
    [504, {}, "Timeout"],
    [529, { type: "overloaded_error" }, "Unavailable"],
    [418, {}, "InvalidRequest"]
  ]

  it.each(table)("%i %j → %s", (status, details, reason) => {
    expect(reasonForStatus(status, details)).toBe(reason)
  })
})

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

  it("reads a blank-line CRLF split between chunks as one blank line", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("data: a\r\n\r")).toEqual([])
    expect(decoder.feed("\n")).toEqual([{ event: "message", data: "a" }])
    expect(decoder.feed("data: b\r")).toEqual([])
    expect(decoder.feed("\n\r")).toEqual([])
    expect(decoder.feed("\nevent: c\r")).toEqual([{ event: "message", data: "b" }])
    expect(decoder.feed("\ndata: c\r\n\r\n")).toEqual([{ event: "c", data: "c" }])
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

  it("stays linear on a large chunk of many small events", () => {
    const started = performance.now()
    const events = makeSseDecoder().feed("data: x\r\n\r\n".repeat(20_000))
    expect(events).toHaveLength(20_000)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it("gives undefined for an event larger than 16 MiB", () => {
    const decoder = makeSseDecoder()
    expect(decoder.feed("data: " + "x".repeat(8 * 1024 * 1024))).toEqual([])
    expect(decoder.feed("x".repeat(8 * 1024 * 1024 + 16))).toBeUndefined()
  })
})
