/**
 * Pure translation of an Anthropic Messages response into an OpenAI chat completion. The call of the tool that
 * stands in for `response_format: json_schema` is handed back as the message CONTENT (a JSON string) with
 * finish_reason "stop", never as a tool call.
 */
import { Either, Schema } from "effect"
import type {
  ChatCompletion,
  FinishReason,
  ThinkingBlock,
  ToolCall,
  Usage } from "../../OpenAi/Schemas.js"
import { usageOf } from "../../OpenAi/Wire.js"
import { ProviderError } from "../Provider.js"
import { carry } from "../ToolCallCarriage.js"
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
export const AnthropicThinkingContent = Schema.Struct({
  type: Schema.Literal("thinking"),
  thinking: Schema.String,
  signature: Schema.optional(Schema.String)
})
export const AnthropicRedactedThinkingContent = Schema.Struct({ type: Schema.Literal("redacted_thinking"), data: Schema.String })
/** Server tools, citations and whatever comes next: carried, never shown. */
const OtherContent = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((type) => type !== "text" && type !== "tool_use" && type !== "thinking" && type !== "redacted_thinking"))
})

/** A non-streamed Messages API response (only the fields the translation reads). */
export const AnthropicMessage = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("message"),
  role: Schema.Literal("assistant"),
  content: Schema.Array(
    Schema.Union(AnthropicTextContent, AnthropicToolUseContent, AnthropicThinkingContent, AnthropicRedactedThinkingContent, OtherContent)
  ),
  stop_reason: Schema.NullOr(Schema.String),
  usage: AnthropicUsage
})
export type AnthropicMessage = typeof AnthropicMessage.Type

const decodeMessage = Schema.decodeUnknownEither(AnthropicMessage)
const isText = Schema.is(AnthropicTextContent)
const isToolUse = Schema.is(AnthropicToolUseContent)
const isThinking = Schema.is(AnthropicThinkingContent)
const isRedactedThinking = Schema.is(AnthropicRedactedThinkingContent)

/**
 * The id a tool call is given: Anthropic's own, carrying the thinking blocks that came before it (and after the
 * previous call), so that a client that echoes only the id sends them back (see ToolCallCarriage.ts).
 */
export const toolCallIdOf = (id: string, thinkingBefore: ReadonlyArray<ThinkingBlock>): string =>
  thinkingBefore.length === 0 ? id : carry(id, { kind: "anthropic", thinkingBlocks: thinkingBefore })

/** A thinking block exactly as Anthropic wants it back. */
export const thinkingBlockOf = (block: typeof AnthropicThinkingContent.Type | typeof AnthropicRedactedThinkingContent.Type): ThinkingBlock =>
  block.type === "redacted_thinking"
    ? { type: "redacted_thinking", data: block.data }
    : block.signature === undefined
      ? { type: "thinking", thinking: block.thinking }
      : { type: "thinking", thinking: block.thinking, signature: block.signature }

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
 * blocks as `tool_calls`, thinking as `reasoning_content` (its text) and `thinking_blocks` (signed, to send back),
 * other blocks dropped. A call to the response-format tool becomes the content instead, with finish_reason "stop"
 * unless the model also called real tools.
 */
export const fromAnthropicMessage = (message: AnthropicMessage, ctx: CompletionContext): ChatCompletion => {
  const texts: Array<string> = []
  const thoughts: Array<string> = []
  const thinkingBlocks: Array<ThinkingBlock> = []
  /** Thinking blocks not yet carried by a tool call's id. */
  let uncarried: Array<ThinkingBlock> = []
  const toolCalls: Array<ToolCall> = []
  let answer: string | undefined
  for (const block of message.content) {
    if (isText(block)) texts.push(block.text)
    else if (isThinking(block) || isRedactedThinking(block)) {
      const thinking = thinkingBlockOf(block)
      if (thinking.type === "thinking") thoughts.push(thinking.thinking)
      thinkingBlocks.push(thinking)
      uncarried.push(thinking)
    } else if (isToolUse(block) && block.name === ctx.responseFormatTool && answer === undefined) {
      answer = JSON.stringify(block.input ?? {})
    } else if (isToolUse(block)) {
      toolCalls.push({
        id: toolCallIdOf(block.id, uncarried),
        type: "function",
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) }
      })
      uncarried = []
    }
  }
  const reasoning = thoughts.join("")
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
          ...(reasoning.length > 0 ? { reasoning_content: reasoning } : {}),
          ...(thinkingBlocks.length > 0 ? { thinking_blocks: thinkingBlocks } : {}),
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {})
        },
        finish_reason: finishReason === "tool_calls" && toolCalls.length === 0 ? "stop" : finishReason,
        logprobs: null
      }
    ],
    ...(usage === undefined ? {} : { usage })
  }
}
