/**
 * What the spans of a Messages request's attempts read, in the terms the tracing already speaks (it describes chat
 * attempts): the request's parameters as a chat request without its messages, a native message as the completion
 * facts it carries (its id, the upstream's model, its stop reason, its usage), and a stream's `message_start` and
 * `message_delta` events as chunk facts. Never a prompt, never a completion's text.
 */
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage } from "../OpenAi/Schemas.js"
import { finishReasonFor } from "../Providers/Anthropic/Response.js"
import type { StreamTrace } from "../Tracing/Tracing.js"
import type { EventUsage, MessagesEvent, MessagesRequest } from "./Wire.js"

/** The request's parameters for its attempts' spans (model, max_tokens, temperature, top_p, stream): no messages. */
export const traceRequestOf = (request: MessagesRequest): ChatCompletionRequest => ({
  model: request.model,
  messages: [],
  max_tokens: request.max_tokens,
  ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
  ...(request.top_p === undefined ? {} : { top_p: request.top_p }),
  ...(request.stream === true ? { stream: true } : {})
})

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/** Anthropic's usage in OpenAI's terms (cache reads and writes are prompt tokens), when both sides are known. */
export const chatUsageOf = (usage: EventUsage | undefined): Usage | undefined => {
  if (usage === undefined || !isCount(usage.input_tokens) || !isCount(usage.output_tokens)) return undefined
  const cacheRead = isCount(usage.cache_read_input_tokens) ? usage.cache_read_input_tokens : 0
  const cacheCreation = isCount(usage.cache_creation_input_tokens) ? usage.cache_creation_input_tokens : 0
  const prompt = usage.input_tokens + cacheRead + cacheCreation
  return {
    prompt_tokens: prompt,
    completion_tokens: usage.output_tokens,
    total_tokens: prompt + usage.output_tokens,
    ...(cacheRead > 0 ? { prompt_tokens_details: { cached_tokens: cacheRead } } : {})
  }
}

const textOf = (value: unknown): string => (typeof value === "string" ? value : "")

/** A native message as the completion facts its attempt's span reads. */
export const traceCompletionOf = (message: Readonly<Record<string, unknown>>, usage: EventUsage | undefined): ChatCompletion => {
  const counted = chatUsageOf(usage)
  return {
    id: textOf(message["id"]),
    object: "chat.completion",
    created: 0,
    model: textOf(message["model"]),
    choices: [{ index: 0, message: { role: "assistant", content: null }, finish_reason: finishReasonFor(textOf(message["stop_reason"])), logprobs: null }],
    ...(counted === undefined ? {} : { usage: counted })
  }
}

/** A field of an event's data, read once per stream (message_start, message_delta): never the content's deltas. */
const fieldOf = (data: string, read: (value: Record<string, unknown>) => unknown): unknown => {
  try {
    const value: unknown = JSON.parse(data)
    return typeof value === "object" && value !== null ? read(value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

const objectOf = (value: unknown): Record<string, unknown> => (typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {})

/**
 * A committed Messages stream's trace over the chat stream trace: `message_start` gives the response's id and the
 * upstream's model, `message_delta` its stop reason and usage (cumulative, merged with message_start's).
 */
export const eventTrace = (trace: StreamTrace) => {
  let id = ""
  let model = ""
  let started: EventUsage | undefined
  const chunk = (choices: ChatCompletionChunk["choices"], usage?: Usage): ChatCompletionChunk =>
    usage === undefined ? { id, object: "chat.completion.chunk", created: 0, model, choices } : { id, object: "chat.completion.chunk", created: 0, model, choices, usage }
  return {
    batch: (events: ReadonlyArray<MessagesEvent>): void => {
      for (const event of events) {
        if (event.event === "message_start") {
          started = event.usage
          id = textOf(fieldOf(event.data, (value) => objectOf(value["message"])["id"]))
          model = event.model ?? ""
          trace.batch([chunk([])])
        } else if (event.event === "message_delta") {
          const stop = textOf(fieldOf(event.data, (value) => objectOf(value["delta"])["stop_reason"]))
          const usage = chatUsageOf({ ...started, ...event.usage })
          trace.batch([chunk([{ index: 0, delta: {}, finish_reason: finishReasonFor(stop), logprobs: null }], usage)])
        }
      }
    },
    end: trace.end
  }
}
