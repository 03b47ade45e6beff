/**
 * The one table from every gateway failure to an HTTP status and OpenAI's error envelope
 * `{"error":{"message","type","param","code"}}`.
 *
 * | failure                         | status | type                  | code                     |
 * |---------------------------------|--------|-----------------------|--------------------------|
 * | InvalidRequest (schema, JSON)   | 400    | invalid_request_error | invalid_request / invalid_json |
 * | Unauthorized                    | 401    | invalid_request_error | invalid_api_key          |
 * | ModelNotFound                   | 404    | invalid_request_error | model_not_found          |
 * | RouteNotFound                   | 404    | invalid_request_error | unknown_url              |
 * | LengthRequired                  | 411    | invalid_request_error | length_required          |
 * | PayloadTooLarge                 | 413    | invalid_request_error | request_too_large        |
 * | ShuttingDown                    | 503    | server_error          | server_shutting_down     |
 * | InternalError                   | 500    | server_error          | internal_error           |
 * | Provider InvalidRequest         | upstream 4xx (400/413/422) | invalid_request_error | upstream code |
 * | Provider NotFound               | 404    | invalid_request_error | model_not_found / upstream code |
 * | Provider ContentPolicy          | 400    | invalid_request_error | content_policy_violation |
 * | Provider RateLimited            | 429 + Retry-After | rate_limit_error | rate_limit_exceeded |
 * | Provider QuotaExhausted         | 429    | insufficient_quota    | insufficient_quota       |
 * | Provider Authentication         | 502    | upstream_error        | upstream_authentication_failed |
 * | Provider Unavailable            | 503 if upstream said 503, else 502 | upstream_error | upstream_unavailable |
 * | Provider MalformedResponse      | 502    | upstream_error        | upstream_malformed_response |
 * | Provider Timeout                | 504    | timeout_error         | upstream_timeout         |
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { ServerResponse } from "node:http"
import type { ErrorBody } from "../OpenAi/Schemas.js"
import type { ProviderError } from "../Providers/Provider.js"
import type {
  InternalError,
  InvalidRequest,
  LengthRequired,
  ModelNotFound,
  PayloadTooLarge,
  RouteNotFound,
  ShuttingDown,
  Unauthorized
} from "../Errors.js"

/** Every failure the HTTP edge can answer. */
export type GatewayError =
  | InvalidRequest
  | Unauthorized
  | ModelNotFound
  | RouteNotFound
  | PayloadTooLarge
  | LengthRequired
  | ShuttingDown
  | InternalError
  | ProviderError

/** What the table says about one failure. */
export interface ErrorDescription {
  readonly status: number
  readonly body: ErrorBody
  readonly headers: Readonly<Record<string, string>>
}

const envelope = (message: string, type: string, code: string | null, param: string | null = null): ErrorBody => ({
  error: { message, type, param, code }
})

const describeProviderError = (error: ProviderError): ErrorDescription => {
  const upstream = (status: number, type: string, code: string, message = error.message) => ({
    status,
    body: envelope(message, type, code),
    headers: {}
  })
  switch (error.reason) {
    case "InvalidRequest":
      return {
        status: error.status !== undefined && error.status >= 400 && error.status < 500 ? error.status : 400,
        body: envelope(error.message, "invalid_request_error", error.code ?? null, error.param ?? null),
        headers: {}
      }
    case "NotFound":
      return upstream(404, "invalid_request_error", error.code ?? "model_not_found")
    case "ContentPolicy":
      return upstream(400, "invalid_request_error", "content_policy_violation")
    case "RateLimited": {
      const retryAfterSeconds = Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000))
      return {
        status: 429,
        body: envelope(error.message, "rate_limit_error", "rate_limit_exceeded"),
        headers: { "retry-after": String(retryAfterSeconds) }
      }
    }
    case "QuotaExhausted":
      return upstream(429, "insufficient_quota", "insufficient_quota")
    case "Authentication":
      return upstream(
        502,
        "upstream_error",
        "upstream_authentication_failed",
        `The gateway's credentials were refused by the ${error.provider} upstream`
      )
    case "Unavailable":
      return upstream(error.status === 503 ? 503 : 502, "upstream_error", "upstream_unavailable")
    case "MalformedResponse":
      return upstream(502, "upstream_error", "upstream_malformed_response")
    case "Timeout":
      return upstream(504, "timeout_error", "upstream_timeout")
  }
}

/** Looks a failure up in the table. */
export const describeError = (error: GatewayError): ErrorDescription => {
  switch (error._tag) {
    case "InvalidRequest":
      return {
        status: 400,
        body: envelope(error.message, "invalid_request_error", error.param === null ? "invalid_json" : "invalid_request", error.param),
        headers: {}
      }
    case "Unauthorized":
      return { status: 401, body: envelope(error.message, "invalid_request_error", "invalid_api_key"), headers: {} }
    case "ModelNotFound":
      return {
        status: 404,
        body: envelope(
          `The model '${error.model}' does not exist or you do not have access to it.`,
          "invalid_request_error",
          "model_not_found",
          "model"
        ),
        headers: {}
      }
    case "RouteNotFound":
      return {
        status: 404,
        body: envelope(`Invalid URL (${error.method} ${error.path})`, "invalid_request_error", "unknown_url"),
        headers: {}
      }
    case "LengthRequired":
      return {
        status: 411,
        body: envelope("A request body needs a Content-Length header", "invalid_request_error", "length_required"),
        headers: {}
      }
    case "PayloadTooLarge":
      return {
        status: 413,
        body: envelope(`Request body exceeds the limit of ${error.limit} bytes`, "invalid_request_error", "request_too_large"),
        headers: { connection: "close" }
      }
    case "ShuttingDown":
      return {
        status: 503,
        body: envelope("The server is shutting down; retry on another instance", "server_error", "server_shutting_down"),
        headers: { connection: "close", "retry-after": "1" }
      }
    case "InternalError":
      return {
        status: 500,
        body: envelope(
          `The server had an error while processing your request (request id ${error.requestId})`,
          "server_error",
          "internal_error"
        ),
        headers: {}
      }
    case "ProviderError":
      return describeProviderError(error)
  }
}

/** The HTTP response for a failure: its status, its headers and the envelope as JSON. */
export const errorResponse = (error: GatewayError): HttpServerResponse.HttpServerResponse => {
  const { body, headers, status } = describeError(error)
  return HttpServerResponse.text(JSON.stringify(body), { status, headers, contentType: "application/json" })
}

/**
 * Writes a failure as OpenAI's envelope straight to a Node response (the hot path, the shutdown 503), unless the
 * response has already begun or the client has gone.
 */
export const writeError = (response: ServerResponse, error: GatewayError): void => {
  if (response.headersSent || response.destroyed) return
  const { body, headers, status } = describeError(error)
  const json = JSON.stringify(body)
  response.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}
