/**
 * What the edge decides from a request's method and headers alone, shared by the HttpApi middleware and the
 * chat hot path so that both answer a request the same way: its id, what is wrong with its body before a byte
 * of it is read, and how a schema violation is reported.
 */
import { Either, ParseResult, Schema } from "effect"
import { InvalidRequest, LengthRequired, PayloadTooLarge } from "../Errors.js"
import { ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { plainChatRequest } from "../OpenAi/PlainRequest.js"
import { nestsDeeperThan } from "../Providers/Upstream/Transport.js"
import type { RequestRecord } from "../Core/RequestRecord.js"
import type { Served } from "../Router/Router.js"

/** Request headers as Node and the platform both hold them (lower-case names). */
export type RequestHeaders = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/** A header's single value; a repeated header counts as absent, so nobody can smuggle a second one past a check. */
export const headerOf = (headers: RequestHeaders, name: string): string | undefined => {
  const value = headers[name]
  return typeof value === "string" ? value : undefined
}

const requestIdPattern = /^[\w.:-]{1,128}$/

/** The client's `x-request-id` when it is sane, else a fresh one. */
export const requestIdOf = (headers: RequestHeaders): string => {
  const given = headerOf(headers, "x-request-id")
  return given !== undefined && requestIdPattern.test(given) ? given : crypto.randomUUID()
}

const missingHost = new InvalidRequest({ message: "An HTTP/1.1 request needs a Host header.", param: null })

/** HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 clients (some health checkers) may omit it. */
export const hostProblem = (httpVersion: string | undefined, headers: RequestHeaders): InvalidRequest | undefined =>
  httpVersion === "1.1" && headers["host"] === undefined ? missingHost : undefined

const methodsWithBody = new Set(["POST", "PUT", "PATCH"])

const emptyBody = new InvalidRequest({ message: "The request body is empty; send a JSON object.", param: null })

/** Whether the method carries a body the edge checks. */
export const hasBody = (method: string): boolean => methodsWithBody.has(method)

/** What is wrong with a body, judged from the headers alone, before a byte of it is read. */
export const bodyProblem = (
  method: string,
  headers: RequestHeaders,
  maxBodyBytes: number
): InvalidRequest | LengthRequired | PayloadTooLarge | undefined => {
  if (!hasBody(method)) return undefined
  const declared = headers["content-length"]
  if (declared === undefined) return headers["transfer-encoding"] === undefined ? undefined : new LengthRequired()
  const length = Number(declared)
  if (!Number.isSafeInteger(length) || length < 0) return new LengthRequired()
  if (length === 0) return emptyBody
  return length > maxBodyBytes ? new PayloadTooLarge({ limit: maxBodyBytes }) : undefined
}

/** The answer to a body that is not JSON. */
export const unparsableBody = new InvalidRequest({ message: "We could not parse the JSON body of your request.", param: null })

/** One schema violation: where, and what. */
export interface DecodeIssue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

/** `messages.[0].content`, as OpenAI names a failing field. */
const paramOf = (path: ReadonlyArray<PropertyKey>): string | null =>
  path.length === 0 ? null : path.map((key) => (typeof key === "number" ? `[${key}]` : String(key))).join(".")

/** The 400 for a schema violation, naming the first failing field (or `body` when the body itself is wrong). */
export const invalidRequestOf = (issues: ReadonlyArray<DecodeIssue>, summary: string): InvalidRequest => {
  const issue = issues[0]
  const param = issue === undefined ? null : paramOf(issue.path)
  const message = issue === undefined ? summary : `Invalid value for '${param ?? "body"}': ${issue.message}`
  return new InvalidRequest({ message, param: param ?? "body" })
}

/** The deepest nesting a client's JSON body may have; a real request is nowhere near it. */
export const maxRequestDepth = 100

const tooDeep = new InvalidRequest({
  message: `The JSON body nests deeper than ${maxRequestDepth} levels.`,
  param: null
})

/** Parses a JSON body: the value, or the 400 for text that is not JSON or nests absurdly deep. */
export const parseJsonBody = (text: string): Either.Either<unknown, InvalidRequest> => {
  let payload: unknown
  try {
    payload = JSON.parse(text)
  } catch {
    return Either.left(unparsableBody)
  }
  return nestsDeeperThan(text, maxRequestDepth) ? Either.left(tooDeep) : Either.right(payload)
}

const decodeChat = Schema.decodeUnknownEither(ChatCompletionRequest)

/** A schema violation as the 400 that names the first failing field. */
export const invalidRequestOfParseError = (error: ParseResult.ParseError): InvalidRequest =>
  invalidRequestOf(ParseResult.ArrayFormatter.formatErrorSync(error), ParseResult.TreeFormatter.formatErrorSync(error))

/** A chat request's body, parsed and decoded, or the 400 that says what is wrong with it. */
export const decodeChatRequest = (text: string): Either.Either<ChatCompletionRequest, InvalidRequest> =>
  Either.flatMap(parseJsonBody(text), (payload) => {
    const plain = plainChatRequest(payload)
    return plain !== undefined ? Either.right(plain) : Either.mapLeft(decodeChat(payload), invalidRequestOfParseError)
  })

/** A request URL's path, without its query (which may carry what must never be logged). */
export const pathOf = (url: string): string => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/** Response headers that say which deployment served and after how many upstream calls. */
export const routingHeaders = (served: Served): Record<string, string> => ({
  "x-llm-proxy-model": served.deployment.name,
  "x-llm-proxy-provider": String(served.deployment.providerKind),
  "x-llm-proxy-attempts": String(served.attempts)
})

/**
 * An access-log line's annotations: `base` (method, path, status, duration, request id) and what the request did,
 * when it reached the chat core (and its trace id, with tracing on) — never a body, never a secret.
 */
export const accessFields = (record: RequestRecord | undefined, base: Record<string, unknown>): Record<string, unknown> => {
  if (record === undefined || record.model === undefined) return base
  const fields: Record<string, unknown> = { ...base, key: record.keyId, model: record.model, upstreamMs: Math.round(record.upstreamMs) }
  if (record.provider !== undefined) fields["provider"] = record.provider
  if (record.attempts > 0) fields["attempts"] = record.attempts
  if (record.promptTokens !== undefined) fields["promptTokens"] = record.promptTokens
  if (record.completionTokens !== undefined) fields["completionTokens"] = record.completionTokens
  if (record.cache !== undefined) fields["cache"] = record.cache
  if (record.hedgeWinner !== undefined) fields["hedgeWonBy"] = record.hedgeWinner
  if (record.firstByteAt !== undefined) fields["ttftMs"] = Math.round(record.firstByteAt - record.arrivedAt)
  // With tracing on, the line names its trace.
  if (record.span !== undefined) fields["traceId"] = record.span.spanContext().traceId
  return fields
}
