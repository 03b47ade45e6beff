/**
 * OpenAI's Responses API spoken natively, for a deployment marked `api: responses` (OpenAI itself, or a server that
 * implements `/v1/responses`): the client's body goes to `{base_url}/responses` as sent (only `model` replaced, the
 * history of `previous_response_id` resolved by the gateway), and the answer comes back as the upstream sent it —
 * the JSON response, or each SSE event with its data untouched. What the gateway reads off an answer — id, status,
 * usage, the end of a stream, an error event — is read, checked, and never written back.
 */
import { Effect, Either } from "effect"
import type { ResponseAnswer, ResponsesEvent, ResponsesNativeCall } from "../../Responses/Wire.js"
import { terminalEventTypes } from "../../Responses/Wire.js"
import type { ChunkSource } from "../ChunkSource.js"
import { fromItems } from "../ChunkSource.js"
import type { Deadline, ResponsesNative } from "../Provider.js"
import { ProviderError } from "../ProviderError.js"
import { eventSource, parseEventData } from "../Upstream/EventSource.js"
import type { EventBatch } from "../Upstream/EventSource.js"
import type { SseEvent } from "../Upstream/SseDecoder.js"
import { inStreamError } from "../Upstream/Status.js"
import { discard, malformed, mediaTypeOf, postJson, readJson } from "../Upstream/Transport.js"
import type { Endpoint, TransportService } from "../Upstream/Transport.js"

const provider = "openai"

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> => typeof value === "object" && value !== null && !Array.isArray(value)

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** Whether a value is a response object the gateway can account and store: an id, a status, output items. */
export const isResponseObject = (value: unknown): value is Readonly<Record<string, unknown>> =>
  isObject(value) &&
  typeof value["id"] === "string" &&
  value["id"].length > 0 &&
  value["id"].length <= 256 &&
  typeof value["status"] === "string" &&
  Array.isArray(value["output"])

/** A response's usage as token counts, when both are counts. */
export const responseCountsOf = (response: Readonly<Record<string, unknown>>): { readonly prompt_tokens: number; readonly completion_tokens: number } | undefined => {
  const usage = response["usage"]
  if (!isObject(usage) || !isCount(usage["input_tokens"]) || !isCount(usage["output_tokens"])) return undefined
  return { prompt_tokens: usage["input_tokens"], completion_tokens: usage["output_tokens"] }
}

/** An error event (`{"type":"error","code","message"}`, or with an `error` object) as the failure it names. */
const errorOfEvent = (value: Readonly<Record<string, unknown>>): ProviderError => inStreamError(provider, isObject(value["error"]) ? value : { error: value })

const eventTypePattern = /^[a-z][a-z0-9_.]{0,99}$/

/** The data as one line: JSON text with a line break in its whitespace is written again without. */
const oneLine = (data: string, value: unknown): string => (data.includes("\n") || data.includes("\r") ? JSON.stringify(value) : data)

/** What the gateway reads off one upstream event: its sequence number, delivered text, the final response. */
const relayed = (type: string, data: string, value: Readonly<Record<string, unknown>>): ResponsesEvent | ProviderError => {
  const line = oneLine(data, value)
  const sequence = isCount(value["sequence_number"]) ? value["sequence_number"] : undefined
  const base = sequence === undefined ? { type, data: line } : { type, data: line, sequence }
  if (terminalEventTypes.has(type)) {
    const response = value["response"]
    if (!isResponseObject(response)) return malformed(provider, `a ${type} event without a response object`)
    return { ...base, response }
  }
  const delta = value["delta"]
  return typeof delta === "string" ? { ...base, text: delta } : base
}

/**
 * The decoder of one upstream stream: each event's data must be a JSON object with a plain `type`; an `error` event
 * is the failure it names; a terminal event is the end (what follows is dropped). A stream that stops before one
 * broke off upstream.
 */
const streamDecoder = () => {
  let finished = false
  const decode = (events: ReadonlyArray<SseEvent>): EventBatch<ResponsesEvent> => {
    const items: Array<ResponsesEvent> = []
    for (const event of events) {
      if (event.data.trim() === "[DONE]") return { items, done: true }
      const parsed = parseEventData(provider, event.data)
      if (Either.isLeft(parsed)) return parsed.left
      const value = parsed.right
      if (!isObject(value)) return malformed(provider, "an SSE event whose data is not a JSON object")
      const type = typeof value["type"] === "string" ? value["type"] : event.event
      if (type === "error") return errorOfEvent(value)
      if (!eventTypePattern.test(type)) continue
      const item = relayed(type, event.data, value)
      if (item instanceof ProviderError) return item
      items.push(item)
      if (terminalEventTypes.has(type)) {
        finished = true
        return { items, done: true }
      }
    }
    return { items, done: false }
  }
  return { decode, atEnd: () => (finished ? [] : new ProviderError({ reason: "Unavailable", message: `${provider} upstream stream ended early`, provider })) }
}

/** A JSON answer checked to be a response object. */
export const responseAnswerOf = (body: unknown): Either.Either<ResponseAnswer, ProviderError> => {
  if (isObject(body) && body["error"] !== undefined && body["error"] !== null && body["object"] !== "response") return Either.left(errorOfEvent(body))
  return isResponseObject(body) ? Either.right({ response: body }) : Either.left(malformed(provider, "a body that is not a Responses API response"))
}

/** A response told as its terminal event alone: an upstream that answered JSON to `stream: true`. */
const eventsOfResponse = (response: Readonly<Record<string, unknown>>): ReadonlyArray<ResponsesEvent> => {
  const type = response["status"] === "incomplete" ? "response.incomplete" : response["status"] === "failed" ? "response.failed" : "response.completed"
  const created = { type: "response.created", sequence_number: 0, response: { ...response, status: "in_progress", output: [] } }
  return [
    { type: "response.created", data: JSON.stringify(created), sequence: 0 },
    { type, data: JSON.stringify({ type, sequence_number: 1, response }), sequence: 1, response }
  ]
}

/** Native Responses calls on one OpenAI-compatible endpoint (`{base_url}/responses`). */
export const makeResponsesNative = (transport: TransportService, endpoint: Endpoint): ResponsesNative => {
  const create = (call: ResponsesNativeCall, deadline?: Deadline) =>
    Effect.flatMap(postJson(transport, endpoint, JSON.stringify({ ...call.body, stream: false }), deadline), (response) =>
      Effect.flatMap(readJson(transport, provider, response, deadline), responseAnswerOf)
    )

  const open = (call: ResponsesNativeCall, deadline?: Deadline): Effect.Effect<ChunkSource<ResponsesEvent>, ProviderError> =>
    Effect.flatMap(postJson(transport, { ...endpoint, headers: { ...endpoint.headers, accept: "text/event-stream" } }, JSON.stringify({ ...call.body, stream: true }), deadline), (response) => {
      const media = mediaTypeOf(response)
      if (media === "text/event-stream" || media === "") {
        const { atEnd, decode } = streamDecoder()
        return Effect.succeed(eventSource(transport, provider, response, decode, atEnd))
      }
      if (media === "application/json") {
        return Effect.flatMap(readJson(transport, provider, response, deadline), (body) => Effect.map(responseAnswerOf(body), (answer) => fromItems(eventsOfResponse(answer.response))))
      }
      discard(response.body)
      return Effect.fail(malformed(provider, `a ${media.slice(0, 60)} body to a stream request`))
    })

  return { create, open }
}
