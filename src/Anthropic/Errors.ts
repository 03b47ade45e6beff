/**
 * Every gateway failure in Anthropic's envelope `{"type":"error","error":{"type","message"}}`, for the Messages
 * endpoints (their 401 included). The status is the one the gateway's table (src/Http/Errors.ts) gives the failure,
 * except an upstream's own 529 (overloaded), which passes as 529; the error type follows the status as Anthropic's
 * API pairs them:
 *
 * | status | type                  | gateway failures                                                    |
 * |--------|-----------------------|---------------------------------------------------------------------|
 * | 400    | invalid_request_error | schema violation, bad JSON, an upstream's 400/422, content policy    |
 * | 401    | authentication_error  | missing or wrong gateway key                                        |
 * | 402    | billing_error         | an upstream's 402                                                   |
 * | 403    | permission_error      | a key that may not use the route                                    |
 * | 404    | not_found_error       | unknown model (or not the key's), unknown route                     |
 * | 405, 411 | invalid_request_error | wrong method, a body without Content-Length                       |
 * | 413    | request_too_large     | body over MAX_BODY_BYTES, an upstream's 413                         |
 * | 429    | rate_limit_error      | a key's rpm/tpm/max_parallel/budget, an upstream's 429 after retries |
 * | 500    | api_error             | a bug (the request id is in the message)                            |
 * | 502    | api_error             | upstream failed, refused the gateway's credentials, answered malformed data |
 * | 503    | overloaded_error      | upstream unavailable (503), draining, governance store unreachable  |
 * | 504    | timeout_error         | upstream did not answer within the deadline                         |
 * | 529    | overloaded_error      | an Anthropic upstream's 529                                         |
 *
 * An Anthropic upstream's own error type passes as it is (an `overloaded_error` event mid-stream stays one), except
 * its authentication and permission errors (the gateway's credentials: `api_error`). The Anthropic SDKs retry 408,
 * 409, 429 and every 5xx, as they do against Anthropic itself.
 */
import { describeError } from "../Http/Errors.js"
import type { GatewayError } from "../Http/Errors.js"
import type { MessagesErrorBody } from "./Wire.js"

/** What the table says about one failure, in Anthropic's envelope. */
export interface MessagesErrorDescription {
  readonly status: number
  readonly body: MessagesErrorBody
  readonly headers: Readonly<Record<string, string>>
}

/** Anthropic's error type for a status. */
export const errorTypeOf = (status: number): string => {
  switch (status) {
    case 401:
      return "authentication_error"
    case 402:
      return "billing_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 413:
      return "request_too_large"
    case 429:
      return "rate_limit_error"
    case 503:
    case 529:
      return "overloaded_error"
    case 504:
      return "timeout_error"
    default:
      return status >= 500 ? "api_error" : "invalid_request_error"
  }
}

/**
 * The error types an Anthropic upstream's own failure keeps (its `code`): they describe the request or the upstream's
 * state. Its authentication and permission errors do not pass: they are about the gateway's credentials, not the
 * client's, and read as `api_error` (502).
 */
const upstreamTypes: ReadonlySet<string> = new Set([
  "invalid_request_error",
  "not_found_error",
  "request_too_large",
  "rate_limit_error",
  "api_error",
  "overloaded_error",
  "timeout_error",
  "billing_error"
])

/** Looks a failure up in the gateway's table and writes it in Anthropic's envelope. */
export const describeMessagesError = (error: GatewayError): MessagesErrorDescription => {
  const { body, headers, status: tableStatus } = describeError(error)
  const status = error._tag === "ProviderError" && error.reason === "Unavailable" && error.status === 529 ? 529 : tableStatus
  const upstreamType =
    error._tag === "ProviderError" && error.provider === "anthropic" && error.reason !== "Authentication" && typeof error.code === "string" && upstreamTypes.has(error.code)
      ? error.code
      : undefined
  const param = body.error.param
  // The OpenAI envelope's `param` has no place here: a schema violation's message names the field already.
  const message = error._tag === "ProviderError" && param !== null && !body.error.message.includes(param) ? `${body.error.message} (${param})` : body.error.message
  return { status, headers, body: { type: "error", error: { type: upstreamType ?? errorTypeOf(status), message } } }
}
