/**
 * The one table from an upstream's HTTP answer to a `ProviderError` reason, and the reading of what an error
 * answer says about itself (its body's message, type, code and param; its `Retry-After`).
 */
import { ProviderError } from "../ProviderError.js"
import type { ProviderErrorReason } from "../ProviderError.js"

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
export interface UpstreamErrorDetails {
  readonly message?: string | undefined
  readonly type?: string | undefined
  readonly code?: string | undefined
  readonly param?: string | undefined
}

/** Longest message taken from an upstream error; the rest is of no use to a client. */
const maxMessageChars = 2000

const stringField = (value: unknown): string | undefined =>
  typeof value === "string"
    ? value.slice(0, maxMessageChars)
    : typeof value === "number" && Number.isFinite(value)
      ? String(value)
      : undefined

/** Reads message/type/code/param out of a parsed error body (see `parseErrorBody`). */
export const errorDetailsOf = (parsed: unknown): UpstreamErrorDetails => {
  const root = Array.isArray(parsed) ? parsed[0] : parsed
  if (typeof root !== "object" || root === null) return {}
  const error = "error" in root ? (root as { error: unknown }).error : root
  if (typeof error === "string") return { message: error.slice(0, maxMessageChars) }
  if (typeof error !== "object" || error === null) return {}
  const fields = error as Record<string, unknown>
  return {
    message: stringField(fields["message"]),
    type: stringField(fields["type"]) ?? stringField(fields["status"]),
    code: stringField(fields["code"]),
    param: stringField(fields["param"])
  }
}

/**
 * Pulls message/type/code/param out of OpenAI's `{error:{...}}`, Anthropic's `{type:"error",error:{type,message}}`
 * and Gemini's `{error:{code,message,status}}` (sometimes wrapped in an array).
 */
export const parseErrorBody = (text: string): UpstreamErrorDetails => {
  try {
    return errorDetailsOf(JSON.parse(text))
  } catch {
    return {}
  }
}

const contentPolicyMarkers = /content[_ ]?(policy|filter|management)|safety|moderation/i
const quotaMarkers = /insufficient_quota|quota|billing|credit/i

/**
 * The one table from an upstream HTTP status (and its body's hints) to a reason. A redirect or any other answer
 * that is neither success nor error is the upstream misbehaving: not retried, but worth a fallback.
 */
export const reasonForStatus = (status: number, details: UpstreamErrorDetails): ProviderErrorReason => {
  const hint = `${details.type ?? ""} ${details.code ?? ""}`
  if (status < 400) return "MalformedResponse"
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

/** What the client is told about an upstream error answer: the upstream's own message, or what it sent. */
export const clientVisibleMessage = (provider: string, status: number, contentType: string, details: UpstreamErrorDetails): string => {
  if (status < 400) return `${provider} upstream answered ${status} instead of a result (redirects are not followed)`
  if (details.message !== undefined && details.message.length > 0) return details.message
  const kind = contentType.split(";")[0]?.trim() || "an empty"
  return `${provider} upstream answered ${status} with ${kind.slice(0, 100)} body`
}

/**
 * An error an OpenAI-dialect upstream sent inside a 200 (an `{"error":{...}}` stream payload, as OpenAI and vLLM
 * send, or a Responses `error` event): its reason read from a numeric `code` when it has one, else a 500's.
 */
export const inStreamError = (provider: string, payload: unknown): ProviderError => {
  const details = errorDetailsOf(payload)
  const status = typeof details.code === "string" && /^\d{3}$/.test(details.code) ? Number(details.code) : 500
  return new ProviderError({
    reason: reasonForStatus(status, details),
    message: details.message ?? "the upstream stream reported an error",
    provider,
    code: details.code ?? null
  })
}
