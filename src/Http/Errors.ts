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
 * | MethodNotAllowed (+ Allow)      | 405    | invalid_request_error | method_not_allowed       |
 * | LengthRequired                  | 411    | invalid_request_error | length_required          |
 * | PayloadTooLarge                 | 413    | invalid_request_error | request_too_large        |
 * | ProtocolError (raw socket)      | 400 / 408 / 417 / 431 | invalid_request_error | invalid_http_request / request_timeout / expectation_failed / request_header_fields_too_large |
 * | Forbidden (admin routes)        | 403    | invalid_request_error | insufficient_permissions |
 * | LimitExceeded rpm/tpm/parallel  | 429 + Retry-After | rate_limit_error | rate_limit_exceeded |
 * | LimitExceeded budget            | 429 + Retry-After | insufficient_quota | insufficient_quota   |
 * | LimitsUnavailable               | 503    | server_error          | limits_unavailable       |
 * | NotReady (GET /ready)           | 503    | server_error          | not_ready                |
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
 *
 * The status of each gateway failure is the one its class declares (src/Errors.ts); a provider failure's comes
 * from its reason.
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { ServerResponse } from "node:http"
import {
  Forbidden,
  InternalError,
  NotReady,
  LimitExceeded,
  LimitsUnavailable,
  InvalidRequest,
  LengthRequired,
  MethodNotAllowed,
  ModelNotFound,
  PayloadTooLarge,
  ProtocolError,
  RouteNotFound,
  ShuttingDown,
  Unauthorized
} from "../Errors.js"
import { Schema } from "effect"
import { ErrorBody } from "../OpenAi/Schemas.js"
import { ProviderError as ProviderErrorClass } from "../Providers/Provider.js"
import type { ProviderError } from "../Providers/Provider.js"

/** Every failure the HTTP edge can answer. */
export type GatewayError =
  | InvalidRequest
  | Unauthorized
  | ModelNotFound
  | RouteNotFound
  | MethodNotAllowed
  | ProtocolError
  | Forbidden
  | LimitExceeded
  | LimitsUnavailable
  | NotReady
  | PayloadTooLarge
  | LengthRequired
  | ShuttingDown
  | InternalError
  | ProviderError

/** The endpoints an unknown URL's message names (a test holds it to the Api's routes). */
export const servedEndpoints =
  "POST /v1/chat/completions, POST /v1/embeddings, POST /v1/responses, GET /v1/responses/{id}, DELETE /v1/responses/{id}, POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models, GET /v1/models/{model}, GET /v1/llm/models, GET /health, GET /ready, GET /metrics, GET /admin/keys, GET /admin/usage, GET /openapi.json and GET /docs"

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

/** Each gateway failure's status, as its class declares it. */
const declaredStatus: Readonly<Record<Exclude<GatewayError["_tag"], "ProviderError" | "ProtocolError">, number>> = {
  InvalidRequest: HttpApiSchema.getStatusError(InvalidRequest),
  Unauthorized: HttpApiSchema.getStatusError(Unauthorized),
  ModelNotFound: HttpApiSchema.getStatusError(ModelNotFound),
  RouteNotFound: HttpApiSchema.getStatusError(RouteNotFound),
  MethodNotAllowed: HttpApiSchema.getStatusError(MethodNotAllowed),
  Forbidden: HttpApiSchema.getStatusError(Forbidden),
  LimitExceeded: HttpApiSchema.getStatusError(LimitExceeded),
  LimitsUnavailable: HttpApiSchema.getStatusError(LimitsUnavailable),
  NotReady: HttpApiSchema.getStatusError(NotReady),
  LengthRequired: HttpApiSchema.getStatusError(LengthRequired),
  PayloadTooLarge: HttpApiSchema.getStatusError(PayloadTooLarge),
  ShuttingDown: HttpApiSchema.getStatusError(ShuttingDown),
  InternalError: HttpApiSchema.getStatusError(InternalError)
}

/** Looks a failure up in the table. */
export const describeError = (error: GatewayError): ErrorDescription => {
  switch (error._tag) {
    case "InvalidRequest":
      return {
        status: declaredStatus.InvalidRequest,
        body: envelope(error.message, "invalid_request_error", error.param === null ? "invalid_json" : "invalid_request", error.param),
        headers: {}
      }
    case "Unauthorized":
      return { status: declaredStatus.Unauthorized, body: envelope(error.message, "invalid_request_error", "invalid_api_key"), headers: {} }
    case "ModelNotFound":
      return {
        status: declaredStatus.ModelNotFound,
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
        status: declaredStatus.RouteNotFound,
        body: envelope(
          `Invalid URL (${error.method} ${error.path}). This gateway serves ${servedEndpoints}.`,
          "invalid_request_error",
          "unknown_url"
        ),
        headers: {}
      }
    case "MethodNotAllowed":
      return {
        status: declaredStatus.MethodNotAllowed,
        body: envelope(
          `${error.method} is not allowed on ${error.path}; use ${error.allowed.join(" or ")}.`,
          "invalid_request_error",
          "method_not_allowed"
        ),
        headers: { allow: error.allowed.join(", ") }
      }
    case "Forbidden":
      return {
        status: declaredStatus.Forbidden,
        body: envelope(error.message, "invalid_request_error", "insufficient_permissions"),
        headers: {}
      }
    case "LimitExceeded": {
      const headers = { "retry-after": String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))) }
      if (error.limit === "budget") {
        return {
          status: declaredStatus.LimitExceeded,
          body: envelope(
            `Budget of key '${error.keyId}' exhausted: ${error.value} USD this period. It renews when the period rolls over.`,
            "insufficient_quota",
            "insufficient_quota"
          ),
          headers
        }
      }
      const what =
        error.limit === "rpm"
          ? `${error.value} requests per minute (rpm)`
          : error.limit === "tpm"
            ? `${error.value} tokens per minute (tpm)`
            : `${error.value} requests in flight (max_parallel)`
      return {
        status: declaredStatus.LimitExceeded,
        body: envelope(`Rate limit reached for key '${error.keyId}': ${what}. Retry after the Retry-After delay.`, "rate_limit_error", "rate_limit_exceeded"),
        headers
      }
    }
    case "NotReady":
      return {
        status: declaredStatus.NotReady,
        body: envelope(`Not ready: ${error.reason}`, "server_error", "not_ready"),
        headers: { "retry-after": "1" }
      }
    case "LimitsUnavailable":
      return {
        status: declaredStatus.LimitsUnavailable,
        body: envelope("The gateway cannot check this key's limits right now; retry shortly", "server_error", "limits_unavailable"),
        headers: { "retry-after": "1" }
      }
    case "ProtocolError":
      return {
        status: error.status,
        body: envelope(error.message, "invalid_request_error", error.code),
        headers: { connection: "close" }
      }
    case "LengthRequired":
      return {
        status: declaredStatus.LengthRequired,
        body: envelope("A request body needs a Content-Length header", "invalid_request_error", "length_required"),
        headers: {}
      }
    case "PayloadTooLarge":
      return {
        status: declaredStatus.PayloadTooLarge,
        body: envelope(`Request body exceeds the limit of ${error.limit} bytes`, "invalid_request_error", "request_too_large"),
        headers: { connection: "close" }
      }
    case "ShuttingDown":
      return {
        status: declaredStatus.ShuttingDown,
        body: envelope("The server is shutting down; retry on another instance", "server_error", "server_shutting_down"),
        headers: { connection: "close", "retry-after": "1" }
      }
    case "InternalError":
      return {
        status: declaredStatus.InternalError,
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
export const errorResponse = (
  error: GatewayError,
  extraHeaders?: Readonly<Record<string, string>>
): HttpServerResponse.HttpServerResponse => {
  const { body, headers, status } = describeError(error)
  return HttpServerResponse.text(JSON.stringify(body), {
    status,
    headers: extraHeaders === undefined ? headers : { ...extraHeaders, ...headers },
    contentType: "application/json"
  })
}

/**
 * Writes a failure as OpenAI's envelope straight to a Node response (the hot path, the shutdown 503), unless the
 * response has already begun or the client has gone.
 */
export const writeError = (response: ServerResponse, error: GatewayError, extraHeaders?: Readonly<Record<string, string>>): void => {
  if (response.headersSent || response.destroyed) return
  const { body, headers, status } = describeError(error)
  const json = JSON.stringify(body)
  response.writeHead(status, { ...extraHeaders, ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}

/**
 * A failure on the wire: OpenAI's envelope, at `status`; encoded by the table above, decoded back to the failure by
 * `fromBody` (for typed clients). The HttpApi declares its errors with these, so the OpenAPI document shows the
 * statuses the table answers with.
 */
export const envelopeOf = <A extends GatewayError>(
  is: (value: unknown) => value is A,
  fromBody: (body: ErrorBody) => A,
  status: number,
  description: string
) =>
  Schema.transform(ErrorBody, Schema.declare(is), {
    strict: true,
    decode: fromBody,
    encode: (error) => describeError(error).body
  }).annotations(HttpApiSchema.annotations({ status, description }))

/** The envelope of a gateway failure, at the status its class declares. */
export const declaredEnvelope = <A extends Exclude<GatewayError, ProviderError>>(
  errorClass: Schema.Schema.AnyNoContext & { readonly ast: Schema.Schema.AnyNoContext["ast"] },
  fromBody: (body: ErrorBody) => A,
  description: string
) => envelopeOf(Schema.is(errorClass) as (value: unknown) => value is A, fromBody, HttpApiSchema.getStatusError(errorClass), description)

// A Map, not an object: the code is a peer's text, and `constructor` must not find Object's.
const reasonsByCode: ReadonlyMap<string, ProviderError["reason"]> = new Map(Object.entries({
  content_policy_violation: "ContentPolicy",
  rate_limit_exceeded: "RateLimited",
  insufficient_quota: "QuotaExhausted",
  upstream_authentication_failed: "Authentication",
  upstream_unavailable: "Unavailable",
  upstream_malformed_response: "MalformedResponse",
  upstream_timeout: "Timeout"
} satisfies Record<string, ProviderError["reason"]>))

/** An upstream failure on the wire at one of the statuses its reasons map to. */
export const upstreamEnvelope = (status: number, description: string) =>
  envelopeOf(
    (value: unknown): value is ProviderError => value instanceof ProviderErrorClass,
    (body) =>
      new ProviderErrorClass({
        reason: reasonsByCode.get(body.error.code ?? "") ?? (status === 404 ? "NotFound" : "InvalidRequest"),
        message: body.error.message,
        provider: "upstream",
        status,
        param: body.error.param,
        code: body.error.code
      }),
    status,
    description
  )
