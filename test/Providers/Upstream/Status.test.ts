import { describe, expect, it } from "vitest"
import type { ProviderErrorReason } from "../../../src/Providers/Provider.js"
import { parseErrorBody, reasonForStatus, retryAfterMillis } from "../../../src/Providers/Upstream/Status.js"
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
