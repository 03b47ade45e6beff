/**
 * The wire dialect llm-proxy serves: OpenAI's chat-completions request, completion, chunk and model list.
 *
 * Request schemas keep unknown fields (`onExcessProperty: "preserve"`) so vendor extras and newer OpenAI
 * parameters reach upstreams untouched.
 */
import { Schema } from "effect"

const preserve = { parseOptions: { onExcessProperty: "preserve" } } as const

/** A content part of a user, system, developer, assistant or tool message. */
export const TextPart = Schema.Struct({
  type: Schema.Literal("text"),
  text: Schema.String
}).annotations({ identifier: "TextPart", ...preserve })

export const ImageUrlPart = Schema.Struct({
  type: Schema.Literal("image_url"),
  image_url: Schema.Struct({
    url: Schema.String,
    detail: Schema.optional(Schema.Literal("auto", "low", "high"))
  }).annotations(preserve)
}).annotations({ identifier: "ImageUrlPart", ...preserve })

export const InputAudioPart = Schema.Struct({
  type: Schema.Literal("input_audio"),
  input_audio: Schema.Struct({ data: Schema.String, format: Schema.String })
}).annotations({ identifier: "InputAudioPart", ...preserve })

export const FilePart = Schema.Struct({
  type: Schema.Literal("file"),
  file: Schema.Struct({
    file_data: Schema.optional(Schema.String),
    file_id: Schema.optional(Schema.String),
    filename: Schema.optional(Schema.String)
  })
}).annotations({ identifier: "FilePart", ...preserve })

export const RefusalPart = Schema.Struct({
  type: Schema.Literal("refusal"),
  refusal: Schema.String
}).annotations({ identifier: "RefusalPart", ...preserve })

export const UserContentPart = Schema.Union(TextPart, ImageUrlPart, InputAudioPart, FilePart)
export type UserContentPart = typeof UserContentPart.Type

/**
 * Provider data that rides with a tool call, as Google's OpenAI-compatible API spells it:
 * `{"google": {"thought_signature": "..."}}` (Gemini's signature of the thinking that led to this call).
 */
export const ToolCallExtraContent = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
  identifier: "ToolCallExtraContent"
})

/** A tool call the assistant made, as it appears in a message or a completion. */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("function"),
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String }),
  extra_content: Schema.optional(ToolCallExtraContent)
}).annotations({ identifier: "ToolCall", ...preserve })
export type ToolCall = typeof ToolCall.Type

/**
 * A block of signed thinking, as Anthropic returns it and requires back (unchanged, before the tool calls it led
 * to) when the conversation continues: `thinking` with its `signature`, or `redacted_thinking` with its opaque `data`.
 */
export const ThinkingBlock = Schema.Union(
  Schema.Struct({
    type: Schema.Literal("thinking"),
    thinking: Schema.String,
    signature: Schema.optional(Schema.String)
  }).annotations({ identifier: "ThinkingBlockThinking", ...preserve }),
  Schema.Struct({
    type: Schema.Literal("redacted_thinking"),
    data: Schema.String
  }).annotations({ identifier: "ThinkingBlockRedacted", ...preserve })
).annotations({ identifier: "ThinkingBlock" })
export type ThinkingBlock = typeof ThinkingBlock.Type

/** What the model thought, as text (Anthropic thinking, Gemini thought summaries); never part of `content`. */
const reasoningContent = Schema.optional(Schema.NullOr(Schema.String))
const thinkingBlocks = Schema.optional(Schema.Array(ThinkingBlock))

const optionalName = Schema.optional(Schema.String)

export const SystemMessage = Schema.Struct({
  role: Schema.Literal("system"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  name: optionalName
}).annotations({ identifier: "SystemMessage", ...preserve })

export const DeveloperMessage = Schema.Struct({
  role: Schema.Literal("developer"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  name: optionalName
}).annotations({ identifier: "DeveloperMessage", ...preserve })

export const UserMessage = Schema.Struct({
  role: Schema.Literal("user"),
  content: Schema.Union(Schema.String, Schema.Array(UserContentPart)),
  name: optionalName
}).annotations({ identifier: "UserMessage", ...preserve })

export const AssistantMessage = Schema.Struct({
  role: Schema.Literal("assistant"),
  content: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Array(Schema.Union(TextPart, RefusalPart))))),
  refusal: Schema.optional(Schema.NullOr(Schema.String)),
  name: optionalName,
  tool_calls: Schema.optional(Schema.Array(ToolCall)),
  reasoning_content: reasoningContent,
  thinking_blocks: thinkingBlocks
}).annotations({ identifier: "AssistantMessage", ...preserve })

export const ToolMessage = Schema.Struct({
  role: Schema.Literal("tool"),
  content: Schema.Union(Schema.String, Schema.Array(TextPart)),
  tool_call_id: Schema.String
}).annotations({ identifier: "ToolMessage", ...preserve })

/** Any message of a chat request, told apart by `role`. */
export const ChatMessage = Schema.Union(SystemMessage, DeveloperMessage, UserMessage, AssistantMessage, ToolMessage)
export type ChatMessage = typeof ChatMessage.Type

export const FunctionTool = Schema.Struct({
  type: Schema.Literal("function"),
  function: Schema.Struct({
    name: Schema.String,
    description: Schema.optional(Schema.String),
    parameters: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
    strict: Schema.optional(Schema.NullOr(Schema.Boolean))
  }).annotations(preserve)
}).annotations({ identifier: "FunctionTool", ...preserve })
export type FunctionTool = typeof FunctionTool.Type

export const ToolChoice = Schema.Union(
  Schema.Literal("none", "auto", "required"),
  Schema.Struct({ type: Schema.Literal("function"), function: Schema.Struct({ name: Schema.String }) })
).annotations({ identifier: "ToolChoice" })
export type ToolChoice = typeof ToolChoice.Type

export const ResponseFormat = Schema.Union(
  Schema.Struct({ type: Schema.Literal("text") }),
  Schema.Struct({ type: Schema.Literal("json_object") }),
  Schema.Struct({
    type: Schema.Literal("json_schema"),
    json_schema: Schema.Struct({
      name: Schema.String,
      description: Schema.optional(Schema.String),
      schema: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
      strict: Schema.optional(Schema.NullOr(Schema.Boolean))
    })
  })
).annotations({ identifier: "ResponseFormat" })
export type ResponseFormat = typeof ResponseFormat.Type

const Penalty = Schema.Number.pipe(Schema.between(-2, 2))
const PositiveInt = Schema.Int.pipe(Schema.greaterThanOrEqualTo(1))

/** `POST /v1/chat/completions` body. Unknown fields are kept and forwarded. */
export const ChatCompletionRequest = Schema.Struct({
  model: Schema.String.pipe(Schema.minLength(1)),
  messages: Schema.Array(ChatMessage).pipe(Schema.minItems(1, { message: () => "must contain at least one message" })),
  temperature: Schema.optional(Schema.NullOr(Schema.Number.pipe(Schema.between(0, 2)))),
  top_p: Schema.optional(Schema.NullOr(Schema.Number.pipe(Schema.between(0, 1)))),
  n: Schema.optional(Schema.NullOr(Schema.Int.pipe(Schema.between(1, 128)))),
  stop: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Array(Schema.String).pipe(Schema.maxItems(4))))),
  max_tokens: Schema.optional(Schema.NullOr(PositiveInt)),
  max_completion_tokens: Schema.optional(Schema.NullOr(PositiveInt)),
  presence_penalty: Schema.optional(Schema.NullOr(Penalty)),
  frequency_penalty: Schema.optional(Schema.NullOr(Penalty)),
  logit_bias: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Number }))),
  seed: Schema.optional(Schema.NullOr(Schema.Int)),
  user: Schema.optional(Schema.String),
  tools: Schema.optional(Schema.Array(FunctionTool)),
  tool_choice: Schema.optional(ToolChoice),
  parallel_tool_calls: Schema.optional(Schema.Boolean),
  response_format: Schema.optional(ResponseFormat),
  /**
   * How hard a reasoning model thinks: `none`, `minimal`, `low`, `medium`, `high` (OpenAI also names `xhigh` and
   * `max`). Passed through to OpenAI-compatible upstreams as sent; mapped to Anthropic's and Gemini's own settings
   * (README, "Reasoning models"), which refuse values they have no mapping for.
   */
  reasoning_effort: Schema.optional(Schema.NullOr(Schema.String)),
  logprobs: Schema.optional(Schema.NullOr(Schema.Boolean)),
  top_logprobs: Schema.optional(Schema.NullOr(Schema.Int.pipe(Schema.between(0, 20)))),
  stream: Schema.optional(Schema.NullOr(Schema.Boolean)),
  stream_options: Schema.optional(Schema.NullOr(Schema.Struct({ include_usage: Schema.optional(Schema.Boolean) }).annotations(preserve)))
}).annotations({ identifier: "ChatCompletionRequest", ...preserve })
export type ChatCompletionRequest = typeof ChatCompletionRequest.Type

export const FinishReason = Schema.Literal("stop", "length", "tool_calls", "content_filter", "function_call")
export type FinishReason = typeof FinishReason.Type

/** Token accounting, as OpenAI reports it. */
export const Usage = Schema.Struct({
  prompt_tokens: Schema.Int,
  completion_tokens: Schema.Int,
  total_tokens: Schema.Int,
  prompt_tokens_details: Schema.optional(Schema.Struct({ cached_tokens: Schema.optional(Schema.Int) }).annotations(preserve)),
  completion_tokens_details: Schema.optional(
    Schema.Struct({ reasoning_tokens: Schema.optional(Schema.Int) }).annotations(preserve)
  )
}).annotations({ identifier: "CompletionUsage", ...preserve })
export type Usage = typeof Usage.Type

export const CompletionMessage = Schema.Struct({
  role: Schema.Literal("assistant"),
  content: Schema.NullOr(Schema.String),
  refusal: Schema.optional(Schema.NullOr(Schema.String)),
  tool_calls: Schema.optional(Schema.Array(ToolCall)),
  reasoning_content: reasoningContent,
  thinking_blocks: thinkingBlocks
}).annotations({ identifier: "ChatCompletionResponseMessage", ...preserve })

export const CompletionChoice = Schema.Struct({
  index: Schema.Int,
  message: CompletionMessage,
  finish_reason: Schema.NullOr(FinishReason),
  logprobs: Schema.NullOr(Schema.Unknown)
}).annotations(preserve)

/** `chat.completion`: the answer to a non-streamed request. */
export const ChatCompletion = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(CompletionChoice),
  usage: Schema.optional(Usage),
  system_fingerprint: Schema.optional(Schema.NullOr(Schema.String))
}).annotations({ identifier: "ChatCompletion", ...preserve })
export type ChatCompletion = typeof ChatCompletion.Type

export const ToolCallDelta = Schema.Struct({
  index: Schema.Int,
  id: Schema.optional(Schema.String),
  type: Schema.optional(Schema.Literal("function")),
  function: Schema.optional(
    Schema.Struct({ name: Schema.optional(Schema.String), arguments: Schema.optional(Schema.String) })
  ),
  extra_content: Schema.optional(ToolCallExtraContent)
}).annotations({ identifier: "ToolCallDelta", ...preserve })
export type ToolCallDelta = typeof ToolCallDelta.Type

export const ChunkDelta = Schema.Struct({
  role: Schema.optional(Schema.Literal("assistant")),
  content: Schema.optional(Schema.NullOr(Schema.String)),
  refusal: Schema.optional(Schema.NullOr(Schema.String)),
  tool_calls: Schema.optional(Schema.Array(ToolCallDelta)),
  /** Thinking text, streamed before the answer's content. */
  reasoning_content: reasoningContent,
  /** Each signed thinking block once it is complete (a client that continues the conversation sends them back). */
  thinking_blocks: thinkingBlocks
}).annotations(preserve)

export const ChunkChoice = Schema.Struct({
  index: Schema.Int,
  delta: ChunkDelta,
  finish_reason: Schema.NullOr(FinishReason),
  logprobs: Schema.optional(Schema.NullOr(Schema.Unknown))
}).annotations(preserve)

/** `chat.completion.chunk`: one SSE frame of a streamed completion. */
export const ChatCompletionChunk = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("chat.completion.chunk"),
  created: Schema.Int,
  model: Schema.String,
  choices: Schema.Array(ChunkChoice),
  usage: Schema.optional(Schema.NullOr(Usage)),
  system_fingerprint: Schema.optional(Schema.NullOr(Schema.String))
}).annotations({ identifier: "ChatCompletionChunk", ...preserve })
export type ChatCompletionChunk = typeof ChatCompletionChunk.Type

/** One entry of `GET /v1/models`. */
export const Model = Schema.Struct({
  id: Schema.String,
  object: Schema.Literal("model"),
  created: Schema.Int,
  owned_by: Schema.String
}).annotations({ identifier: "Model" })
export type Model = typeof Model.Type

export const ModelList = Schema.Struct({
  object: Schema.Literal("list"),
  data: Schema.Array(Model)
}).annotations({ identifier: "ListModelsResponse" })
export type ModelList = typeof ModelList.Type

/** OpenAI's error envelope; every non-2xx body has this shape. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    message: Schema.String,
    type: Schema.String,
    param: Schema.NullOr(Schema.String),
    code: Schema.NullOr(Schema.String)
  })
}).annotations({ identifier: "ErrorResponse" })
export type ErrorBody = typeof ErrorBody.Type
