/**
 * Gemini's error bodies: what their `details` add to the shared status table.
 */
import { ProviderError } from "../Provider.js"
import { errorDetailsOf, reasonForStatus } from "../Upstream/Status.js"

/** The provider kind named in every `ProviderError` this dialect raises. */
export const provider = "gemini"

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** What Gemini's error body adds to the shared error table: its status name, the ErrorInfo reason, the RetryInfo delay. */
export interface GeminiErrorDetails {
  /** Google's canonical status (`INVALID_ARGUMENT`, `NOT_FOUND`…): the code clients see. */
  readonly status?: string | undefined
  readonly errorInfoReason?: string | undefined
  readonly retryDelayMs?: number | undefined
}

/** A google.rpc.Code name, e.g. `INVALID_ARGUMENT`; anything else is no code. */
const statusName = /^[A-Z][A-Z_]{1,63}$/

/** ErrorInfo reasons that mean the gateway's credential is wrong, whatever the status (Gemini sends 400). */
const authenticationReasons: ReadonlySet<string> = new Set(["API_KEY_INVALID", "API_KEY_EXPIRED"])

/**
 * Reads `error.status` and `error.details[]` (google.rpc ErrorInfo / RetryInfo) from a Gemini error body, possibly
 * array-wrapped.
 */
export const geminiErrorDetails = (body: unknown): GeminiErrorDetails => {
  const root = Array.isArray(body) ? body[0] : body
  const error = isRecord(root) ? root["error"] : undefined
  const status = isRecord(error) && typeof error["status"] === "string" && statusName.test(error["status"]) ? error["status"] : undefined
  const details = isRecord(error) && Array.isArray(error["details"]) ? error["details"] : []
  let errorInfoReason: string | undefined
  let retryDelayMs: number | undefined
  for (const detail of details) {
    if (!isRecord(detail)) continue
    const type = String(detail["@type"] ?? "")
    if (type.endsWith("google.rpc.ErrorInfo") && typeof detail["reason"] === "string") errorInfoReason = detail["reason"]
    if (type.endsWith("google.rpc.RetryInfo") && typeof detail["retryDelay"] === "string") {
      const seconds = Number.parseFloat(detail["retryDelay"])
      if (Number.isFinite(seconds) && seconds >= 0) retryDelayMs = Math.round(seconds * 1000)
    }
  }
  return { status, errorInfoReason, retryDelayMs }
}

/**
 * Adds what only Gemini's error body tells: an invalid API key is `Authentication`; RetryInfo sets the wait; the
 * code is Google's status name (`INVALID_ARGUMENT`), or null, never the HTTP status Gemini repeats in `error.code`.
 */
export const refineError = (error: ProviderError, details: GeminiErrorDetails): ProviderError =>
  new ProviderError({
    reason:
      details.errorInfoReason !== undefined && authenticationReasons.has(details.errorInfoReason)
        ? "Authentication"
        : error.reason,
    message: error.message,
    provider: error.provider,
    status: error.status,
    retryAfterMs: error.retryAfterMs ?? details.retryDelayMs,
    param: error.param,
    code: details.status ?? null
  })

/** Whether a parsed body (or stream frame) is Gemini's `{error:{code,message,status}}` rather than a response. */
export const isErrorBody = (body: unknown): boolean => {
  const root = Array.isArray(body) ? body[0] : body
  return isRecord(root) && root["error"] !== undefined
}

/**
 * A `ProviderError` for an error body that arrived where a response was expected (a 2xx body or a stream frame);
 * the status comes from `error.code`, else `fallbackStatus`.
 */
export const errorFromBody = (body: unknown, fallbackStatus: number): ProviderError => {
  const details = errorDetailsOf(body)
  const code = Number(details.code)
  const status = Number.isInteger(code) && code >= 400 && code <= 599 ? code : fallbackStatus
  return refineError(
    new ProviderError({
      reason: reasonForStatus(status, details),
      message: details.message !== undefined && details.message.length > 0 ? details.message : `gemini upstream failed with ${status}`,
      provider,
      status,
      param: details.param ?? null,
      code: null
    }),
    geminiErrorDetails(body)
  )
}
