/**
 * The edge of Anthropic's Messages endpoints, shared by both transports (the node:http fast path and the HttpApi
 * handler): the paths, the decoding of a request into what the core takes, the SSE framing of Messages events, and
 * failures in Anthropic's envelope. Everything else — admission, routing, accounting — is the core's.
 */
import { plainMessagesRequest } from "../Anthropic/PlainRequest.js"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Either, Schema } from "effect"
import type { ServerResponse } from "node:http"
import { describeMessagesError } from "../Anthropic/Errors.js"
import { CountTokensRequest, MessagesRequest } from "../Anthropic/Wire.js"
import type { AnthropicHeaders, CountTokensCall, MessagesCall, MessagesEvent } from "../Anthropic/Wire.js"
import { InvalidRequest } from "../Errors.js"
import type { CountAnswer } from "../Core/Messages.js"
import { headerOf, invalidRequestOfParseError, parseJsonBody, routingHeaders } from "./Edge.js"
import type { RequestHeaders } from "./Edge.js"
import { errorResponse } from "./Errors.js"
import type { GatewayError } from "./Errors.js"
import type { Framing } from "./Sse.js"

/** `POST /v1/messages`. */
export const messagesPath = "/v1/messages"
/** `POST /v1/messages/count_tokens`. */
export const countTokensPath = "/v1/messages/count_tokens"

/** Whether a path (without its query) is one of the Messages endpoints, whose failures are in Anthropic's envelope. */
export const isMessagesPath = (path: string): boolean => path === messagesPath || path.startsWith(`${messagesPath}/`)

/**
 * The headers naming a request's id: `x-request-id` everywhere, and on the Messages endpoints also `request-id`, the
 * header Anthropic's API sends and its SDKs surface (`_request_id`, and in their error messages).
 */
export const requestIdHeaders = (path: string, requestId: string): Readonly<Record<string, string>> =>
  isMessagesPath(path) ? { "x-request-id": requestId, "request-id": requestId } : { "x-request-id": requestId }

/** The Anthropic headers a client sent (a repeated header counts as absent). */
export const anthropicHeadersOf = (headers: RequestHeaders): AnthropicHeaders => ({
  version: headerOf(headers, "anthropic-version"),
  beta: headerOf(headers, "anthropic-beta")
})

const notAnObject = new InvalidRequest({ message: "The request body must be a JSON object.", param: "body" })

const decodeMessages = Schema.decodeUnknownEither(MessagesRequest)
const decodeCount = Schema.decodeUnknownEither(CountTokensRequest)

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> => typeof value === "object" && value !== null && !Array.isArray(value)

/** A parsed body checked as a Messages request: what the core takes, or the 400 naming the first bad field. */
export const messagesCallOf = (body: unknown, headers: RequestHeaders): Either.Either<MessagesCall, InvalidRequest> => {
  if (!isRecord(body)) return Either.left(notAnObject)
  const plain = plainMessagesRequest(body)
  if (plain !== undefined) return Either.right({ request: plain, body, headers: anthropicHeadersOf(headers) })
  return Either.map(Either.mapLeft(decodeMessages(body), invalidRequestOfParseError), (request) => ({ request, body, headers: anthropicHeadersOf(headers) }))
}

/** A parsed body checked as a count_tokens request. */
export const countTokensCallOf = (body: unknown, headers: RequestHeaders): Either.Either<CountTokensCall, InvalidRequest> => {
  if (!isRecord(body)) return Either.left(notAnObject)
  return Either.map(Either.mapLeft(decodeCount(body), invalidRequestOfParseError), (request) => ({ request, body, headers: anthropicHeadersOf(headers) }))
}

/** A Messages body's text, parsed (bounded nesting) and checked. */
export const decodeMessagesCall = (text: string, headers: RequestHeaders): Either.Either<MessagesCall, InvalidRequest> =>
  Either.flatMap(parseJsonBody(text), (body) => messagesCallOf(body, headers))

/** A count_tokens body's text, parsed and checked. */
export const decodeCountTokensCall = (text: string, headers: RequestHeaders): Either.Either<CountTokensCall, InvalidRequest> =>
  Either.flatMap(parseJsonBody(text), (body) => countTokensCallOf(body, headers))

const encoder = new TextEncoder()

/** The `error` event that ends a stream which failed after it began. */
export const messagesErrorFrame = (error: GatewayError): Uint8Array =>
  encoder.encode(`event: error\ndata: ${JSON.stringify(describeMessagesError(error).body)}\n\n`)

/** Anthropic's keepalive: a `ping` event, which every Anthropic client expects and ignores. */
export const pingFrame = `event: ping\ndata: {"type":"ping"}\n\n`

/** Messages events as SSE: `event: <name>` and `data: <json>` per event; `message_stop` itself ends the stream. */
export const messagesFraming: Framing<MessagesEvent> = {
  frames: (batch) => {
    let text = ""
    for (const event of batch) text += `event: ${event.event}\ndata: ${event.data}\n\n`
    return text
  },
  done: new Uint8Array(0),
  error: messagesErrorFrame,
  keepalive: pingFrame
}

/** A failure as the HTTP response of a Messages endpoint: Anthropic's envelope at the table's status. */
export const messagesErrorResponse = (error: GatewayError, extraHeaders?: Readonly<Record<string, string>>): HttpServerResponse.HttpServerResponse => {
  const { body, headers, status } = describeMessagesError(error)
  return HttpServerResponse.text(JSON.stringify(body), {
    status,
    headers: extraHeaders === undefined ? headers : { ...extraHeaders, ...headers },
    contentType: "application/json"
  })
}

/** A failure's response in the envelope of the path's dialect: Anthropic's on the Messages endpoints, else OpenAI's. */
export const errorResponseAt = (path: string, error: GatewayError, extraHeaders?: Readonly<Record<string, string>>): HttpServerResponse.HttpServerResponse =>
  isMessagesPath(path) ? messagesErrorResponse(error, extraHeaders) : errorResponse(error, extraHeaders)

/** Writes a failure in Anthropic's envelope straight to a Node response, unless it has begun or the client left. */
export const writeMessagesError = (response: ServerResponse, error: GatewayError, extraHeaders?: Readonly<Record<string, string>>): void => {
  if (response.headersSent || response.destroyed) return
  const { body, headers, status } = describeMessagesError(error)
  const json = JSON.stringify(body)
  response.writeHead(status, { ...extraHeaders, ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}

/** The header that says whether a count_tokens answer is the upstream's count or the gateway's estimate. */
export const estimateHeader = "x-llm-proxy-token-count"

/** The headers of a count_tokens answer: who would serve, and whether the count is the gateway's estimate. */
export const countHeaders = (answer: CountAnswer): Record<string, string> => ({
  ...routingHeaders(answer.served),
  [estimateHeader]: answer.estimated ? "estimated" : "upstream"
})
