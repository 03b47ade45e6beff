/**
 * Anthropic's Messages API spoken natively, for clients that speak it too (`POST /v1/messages` of the gateway): the
 * client's body goes upstream as it was sent (only `model` replaced), with the client's `anthropic-version` and
 * `anthropic-beta`, and the answer comes back as Anthropic sent it — the JSON message, or each SSE event with its
 * data untouched. Nothing is translated, so every field (cache_control, signed thinking, server tools, fields newer
 * than this code) survives both ways. What the gateway reads off an answer — usage, the end of a stream, an error
 * event — is read, checked, and never written back.
 */
import { Effect, Either } from "effect"
import type { AnthropicHeaders, EventUsage, MessageAnswer, MessagesEvent, NativeCall } from "../../Anthropic/Wire.js"
import type { ChunkSource } from "../ChunkSource.js"
import { fromItems } from "../ChunkSource.js"
import type { Deadline, MessagesNative } from "../Provider.js"
import { ProviderError } from "../ProviderError.js"
import { eventSource, parseEventData } from "../Upstream/EventSource.js"
import type { EventBatch } from "../Upstream/EventSource.js"
import type { SseEvent } from "../Upstream/SseDecoder.js"
import { discard, malformed, mediaTypeOf, postJson, readJson } from "../Upstream/Transport.js"
import type { Endpoint, RefineError, TransportService } from "../Upstream/Transport.js"
import { providerName } from "./Request.js"
import { errorFromEvent } from "./StreamTranslate.js"

const isObject = (value: unknown): value is Readonly<Record<string, unknown>> => typeof value === "object" && value !== null && !Array.isArray(value)

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** The counts of a usage object that are counts; `undefined` when it has none. */
export const eventUsageOf = (value: unknown): EventUsage | undefined => {
  if (!isObject(value)) return undefined
  const usage: Record<string, number> = {}
  let any = false
  for (const key of ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"] as const) {
    const count = value[key]
    if (isCount(count)) {
      usage[key] = count
      any = true
    }
  }
  return any ? usage : undefined
}

/** `anthropic-version` and `anthropic-beta` as the gateway passes them: plain tokens only, else left out. */
const headerValuePattern = /^[\w.,:\- ]{1,512}$/

/** The upstream headers of one native call: the endpoint's, the client's version (or the default) and betas. */
export const nativeHeaders = (base: Readonly<Record<string, string>>, client: AnthropicHeaders): Readonly<Record<string, string>> => {
  const headers: Record<string, string> = { ...base }
  if (client.version !== undefined && headerValuePattern.test(client.version)) headers["anthropic-version"] = client.version
  if (client.beta !== undefined && headerValuePattern.test(client.beta)) {
    // The deployment's own betas (its registry headers) stay; the client's are added.
    const own = headers["anthropic-beta"]
    headers["anthropic-beta"] = own === undefined ? client.beta : [...new Set([...own.split(","), ...client.beta.split(",")].map((beta) => beta.trim()).filter((beta) => beta.length > 0))].join(",")
  }
  return headers
}

const eventNamePattern = /^[a-z][a-z_]{0,63}$/

/** The data as one line: JSON text with a line break in its whitespace is written again without. */
const oneLine = (data: string, value: unknown): string => (data.includes("\n") || data.includes("\r") ? JSON.stringify(value) : data)

/** What the gateway reads off one upstream event: its usage (message_start, message_delta) and delivered text. */
const relayed = (name: string, data: string, value: Readonly<Record<string, unknown>>): MessagesEvent => {
  const line = oneLine(data, value)
  if (name === "message_start") {
    const message = value["message"]
    const usage = isObject(message) ? eventUsageOf(message["usage"]) : undefined
    const model = isObject(message) && typeof message["model"] === "string" ? message["model"] : undefined
    return { event: name, data: line, ...(usage === undefined ? {} : { usage }), ...(model === undefined ? {} : { model }) }
  }
  if (name === "message_delta") {
    const usage = eventUsageOf(value["usage"])
    return usage === undefined ? { event: name, data: line } : { event: name, data: line, usage }
  }
  const delta = value["delta"]
  if (name === "content_block_delta" && isObject(delta)) {
    const text = delta["text"] ?? delta["thinking"] ?? delta["partial_json"]
    if (typeof text === "string") return { event: name, data: line, text }
  }
  return { event: name, data: line }
}

/**
 * The events of one upstream read, relayed: each event's data must be a JSON object; an `error` event is the
 * failure it names; `message_stop` is the end (what follows is read and dropped). An event whose name is not a
 * plain word is dropped: it could not be written back as one `event:` line.
 */
const decodeEvents = (events: ReadonlyArray<SseEvent>): EventBatch<MessagesEvent> => {
  const items: Array<MessagesEvent> = []
  for (const event of events) {
    const parsed = parseEventData(providerName, event.data)
    if (Either.isLeft(parsed)) return parsed.left
    const value = parsed.right
    if (!isObject(value)) return malformed(providerName, "an SSE event whose data is not a JSON object")
    const name = event.event === "message" && typeof value["type"] === "string" ? value["type"] : event.event
    if (name === "error") return errorFromEvent(value)
    if (!eventNamePattern.test(name)) continue
    items.push(relayed(name, event.data, value))
    if (name === "message_stop") return { items, done: true }
  }
  return { items, done: false }
}

const endedEarly = new ProviderError({ reason: "Unavailable", message: "anthropic upstream stream ended early", provider: providerName })

/** A JSON answer checked to be a Messages `message`, with its usage read off. */
export const messageAnswerOf = (body: unknown): Either.Either<MessageAnswer, ProviderError> => {
  if (!isObject(body) || body["type"] !== "message" || !Array.isArray(body["content"])) {
    return Either.left(malformed(providerName, "a body that is not a Messages API response"))
  }
  return Either.right({ message: body, usage: eventUsageOf(body["usage"]) })
}

/** A message told as the events Anthropic would have streamed: an upstream that answered JSON to `stream: true`. */
export const eventsOfMessage = (message: Readonly<Record<string, unknown>>, usage: EventUsage | undefined): ReadonlyArray<MessagesEvent> => {
  const content = Array.isArray(message["content"]) ? (message["content"] as ReadonlyArray<unknown>) : []
  const start = { type: "message_start", message: { ...message, content: [], stop_reason: null, stop_sequence: null } }
  const events: Array<MessagesEvent> = [relayed("message_start", JSON.stringify(start), start)]
  content.forEach((block, index) => {
    events.push({ event: "content_block_start", data: JSON.stringify({ type: "content_block_start", index, content_block: block }) })
    events.push({ event: "content_block_stop", data: JSON.stringify({ type: "content_block_stop", index }) })
  })
  const delta = { type: "message_delta", delta: { stop_reason: message["stop_reason"] ?? null, stop_sequence: message["stop_sequence"] ?? null }, usage: message["usage"] ?? {} }
  events.push(usage === undefined ? { event: "message_delta", data: JSON.stringify(delta) } : { event: "message_delta", data: JSON.stringify(delta), usage })
  events.push({ event: "message_stop", data: JSON.stringify({ type: "message_stop" }) })
  return events
}

/** Native Messages calls on one Anthropic endpoint (`{base_url}/v1/messages`). */
export const makeNative = (transport: TransportService, endpoint: Endpoint, refine: RefineError): MessagesNative => {
  const endpointFor = (call: NativeCall, path = ""): Endpoint => ({ ...endpoint, url: endpoint.url + path, headers: nativeHeaders(endpoint.headers, call.headers) })

  const create = (call: NativeCall, deadline?: Deadline) =>
    Effect.gen(function* () {
      const response = yield* postJson(transport, endpointFor(call), JSON.stringify(call.body), deadline, refine)
      return yield* Effect.flatMap(readJson(transport, providerName, response, deadline), messageAnswerOf)
    })

  const open = (call: NativeCall, deadline?: Deadline): Effect.Effect<ChunkSource<MessagesEvent>, ProviderError> =>
    Effect.gen(function* () {
      const response = yield* postJson(transport, endpointFor(call), JSON.stringify(call.body), deadline, refine)
      const media = mediaTypeOf(response)
      if (media === "application/json") {
        const answer = yield* Effect.flatMap(readJson(transport, providerName, response, deadline), messageAnswerOf)
        return fromItems(eventsOfMessage(answer.message, answer.usage))
      }
      if (media !== "text/event-stream" && media !== "") {
        discard(response.body)
        return yield* Effect.fail(malformed(providerName, `a ${media.slice(0, 60)} body to a stream request`))
      }
      return eventSource(transport, providerName, response, decodeEvents, () => endedEarly)
    })

  const countTokens = (call: NativeCall, deadline?: Deadline) =>
    Effect.gen(function* () {
      const response = yield* postJson(transport, endpointFor(call, "/count_tokens"), JSON.stringify(call.body), deadline, refine)
      const body = yield* readJson(transport, providerName, response, deadline)
      const count = isObject(body) ? body["input_tokens"] : undefined
      return isCount(count) ? count : yield* Effect.fail(malformed(providerName, "a count_tokens answer without input_tokens"))
    })

  return { create, open, countTokens }
}
