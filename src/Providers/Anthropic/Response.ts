/**
 * Pure translation of an Anthropic Messages response into an OpenAI chat completion. The call of the tool that
 * stands in for `response_format: json_schema` is handed back as the message CONTENT (a JSON string) with
 * finish_reason "stop", never as a tool call.
 */
import { Either, Schema } from "effect"
import type {
  ChatCompletion,
  FinishReason,
  ToolCall,
  Usage } from "../../OpenAi/Schemas.js"
import { usageOf } from "../../OpenAi/Wire.js"
import { ProviderError } from "../Provider.js"
import { malformed } from "../Upstream/Transport.js"

import { providerName } from "./Request.js"

/** Anthropic's token accounting; cache fields are absent or null on older models. */
export const AnthropicUsage = Schema.Struct({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_creation_input_tokens: Schema.optional(Schema.NullOr(Schema.Number)),
  cache_read_input_tokens: Schema.optional(Schema.NullOr(Schema.Number))
})
export type AnthropicUsage = typeof AnthropicUsage.Type

export const AnthropicTextContent = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })
export const AnthropicToolUseContent = Schema.Struct({
  type: Schema.Literal("tool_use"),
  id: Schema.String,
  name: Schema.String,
  input: Schema.Unknown
})
/** Thinking, server tools, citations and whatever comes next: carried, never shown. */
const OtherContent = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((type) => type !== "text" && type !== "tool_use"))
})

/** A non-streamed Messages API response (only the fields the translation reads). */
export const AnthropicMessage = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("message"),
  role: Schema.Literal("assistant"),
  content: Schema.Array(Schema.Union(AnthropicTextContent, AnthropicToolUseContent, OtherContent)),
  stop_reason: Schema.NullOr(Schema.String),
  usage: AnthropicUsage
})
export type AnthropicMessage = typeof AnthropicMessage.Type

const decodeMessage = Schema.decodeUnknownEither(AnthropicMessage)
const isText = Schema.is(AnthropicTextContent)
const isToolUse = Schema.is(AnthropicToolUseContent)

/** Checks an upstream body against the Messages response shape; anything else is `MalformedResponse`. */
export const decodeAnthropicMessage = (body: unknown): Either.Either<AnthropicMessage, ProviderError> =>
  Either.mapLeft(decodeMessage(body), () => malformed(providerName, "a body that is not a Messages API response"))

/** Anthropic's `stop_reason` → OpenAI's `finish_reason`. Unknown reasons read as a normal stop. */
export const finishReasonFor = (stopReason: string | null | undefined): FinishReason => {
  switch (stopReason) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    default:
      return "stop"
  }
}

const isCount = (value: number): boolean => Number.isSafeInteger(value) && value >= 0

/**
 * Anthropic's usage → OpenAI's: cached and cache-creating input both count as prompt tokens. Counts that are not
 * counts (negative, fractional, beyond 2^53, `1e999`) make the usage unknown (`undefined`), never wrong.
 */
export const usageFrom = (usage: AnthropicUsage): Usage | undefined => {
  const cacheRead = usage.cache_read_input_tokens ?? 0
  const cacheCreation = usage.cache_creation_input_tokens ?? 0
  // Each part must be a count: a sum could hide a negative one.
  if (![usage.input_tokens, usage.output_tokens, cacheRead, cacheCreation].every(isCount)) return undefined
  const prompt = usage.input_tokens + cacheRead + cacheCreation
  return usageOf({
    prompt_tokens: prompt,
    completion_tokens: usage.output_tokens,
    total_tokens: prompt + usage.output_tokens,
    prompt_tokens_details: { cached_tokens: cacheRead }
  })
}

/** What a translated response reports besides the upstream's own data. */
export interface CompletionContext {
  readonly id: string
  /** Unix seconds. */
  readonly created: number
  readonly model: string
  /** The tool standing in for `response_format: json_schema` (see `responseFormatToolName`). */
  readonly responseFormatTool?: string | undefined
}

/**
 * Translates a Messages API response into a `chat.completion`: text blocks joined into `content`, `tool_use`
 * blocks as `tool_calls`, thinking and other blocks dropped. A call to the response-format tool becomes the
 * content instead, with finish_reason "stop" unless the model also called real tools.
 */
export const fromAnthropicMessage = (message: AnthropicMessage, ctx: CompletionContext): ChatCompletion => {
  const texts: Array<string> = []
  const toolCalls: Array<ToolCall> = []
  let answer: string | undefined
  for (const block of message.content) {
    if (isText(block)) texts.push(block.text)
    else if (isToolUse(block) && block.name === ctx.responseFormatTool && answer === undefined) {
      answer = JSON.stringify(block.input ?? {})
    } else if (isToolUse(block)) {
      toolCalls.push({
        id: block.id,
        type: "function",
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) }
      })
    }
  }
  const finishReason = finishReasonFor(message.stop_reason)
  const usage = usageFrom(message.usage)
  return {
    id: ctx.id,
    object: "chat.completion",
    created: ctx.created,
    model: ctx.model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          // Any text beside the answer would make the content invalid JSON.
          content: answer ?? (texts.length > 0 ? texts.join("") : null),
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {})
        },
        finish_reason: finishReason === "tool_calls" && toolCalls.length === 0 ? "stop" : finishReason,
        logprobs: null
      }
    ],
    ...(usage === undefined ? {} : { usage })
  }
}
