/**
 * The second wire dialect llm-proxy serves: Anthropic's Messages API (`POST /v1/messages`,
 * `POST /v1/messages/count_tokens`), the ingress side. What a client sends is checked loosely, as
 * src/OpenAi/Schemas.ts checks chat requests: the fields the gateway reads must have the right shape (a 400 names
 * the first that does not), every other field is kept, so a native Anthropic deployment receives the body as the
 * client wrote it (cache_control, citations, server tools, fields newer than this code).
 *
 * Provider-side code (the gateway calling Anthropic on behalf of an OpenAI client) lives in src/Providers/Anthropic.
 */
import { Schema } from "effect"

const preserve = { parseOptions: { onExcessProperty: "preserve" } } as const

const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** `{type: "base64", media_type, data}`, `{type: "url", url}`, `{type: "text", data}` or a newer source kind. */
export const MessagesSource = Schema.Union(
  Schema.Struct({ type: Schema.Literal("base64"), media_type: Schema.String, data: Schema.String }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("url"), url: Schema.String }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("text"), media_type: Schema.optional(Schema.String), data: Schema.String }).annotations(preserve),
  Schema.Struct({
    type: Schema.String.pipe(Schema.filter((type) => type !== "base64" && type !== "url" && type !== "text", { message: () => "an unknown source type" }))
  }).annotations(preserve)
).annotations({ identifier: "MessagesSource" })
export type MessagesSource = typeof MessagesSource.Type

/** A text block (request or answer). */
export const TextBlock = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }).annotations({ identifier: "MessagesTextBlock", ...preserve })

export const ImageBlock = Schema.Struct({ type: Schema.Literal("image"), source: MessagesSource }).annotations({ identifier: "MessagesImageBlock", ...preserve })

export const DocumentBlock = Schema.Struct({
  type: Schema.Literal("document"),
  source: Schema.Union(MessagesSource, Schema.Struct({ type: Schema.Literal("content"), content: Schema.Unknown }).annotations(preserve)),
  title: Schema.optional(Schema.NullOr(Schema.String))
}).annotations({ identifier: "MessagesDocumentBlock", ...preserve })

export const ToolUseBlock = Schema.Struct({
  type: Schema.Literal("tool_use"),
  id: Schema.String,
  name: Schema.String,
  input: JsonObject
}).annotations({ identifier: "MessagesToolUseBlock", ...preserve })

/** A tool's result: a string, or blocks (text, image…). */
export const ToolResultBlock = Schema.Struct({
  type: Schema.Literal("tool_result"),
  tool_use_id: Schema.String,
  content: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.Union(TextBlock, ImageBlock, DocumentBlock, Schema.Struct({ type: Schema.String }).annotations(preserve))))),
  is_error: Schema.optional(Schema.Boolean)
}).annotations({ identifier: "MessagesToolResultBlock", ...preserve })

/** Signed thinking, sent back unchanged (a native deployment checks the signature). */
export const ThinkingBlock = Schema.Struct({
  type: Schema.Literal("thinking"),
  thinking: Schema.String,
  signature: Schema.optional(Schema.String)
}).annotations({ identifier: "MessagesThinkingBlock", ...preserve })

export const RedactedThinkingBlock = Schema.Struct({ type: Schema.Literal("redacted_thinking"), data: Schema.String }).annotations({
  identifier: "MessagesRedactedThinkingBlock",
  ...preserve
})

const knownBlockTypes = new Set(["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"])

/** Server tool uses and results, search results, container uploads, newer kinds: kept for native deployments. */
export const OtherBlock = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((type) => !knownBlockTypes.has(type), { message: () => "a block of a known type with wrong fields" }))
}).annotations({ identifier: "MessagesOtherBlock", ...preserve })

/** Any content block of a request message. */
export const ContentBlock = Schema.Union(TextBlock, ImageBlock, DocumentBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock, OtherBlock)
export type ContentBlock = typeof ContentBlock.Type

/** A block of one of the kinds the gateway reads. */
export type KnownBlock =
  | typeof TextBlock.Type
  | typeof ImageBlock.Type
  | typeof DocumentBlock.Type
  | typeof ToolUseBlock.Type
  | typeof ToolResultBlock.Type
  | typeof ThinkingBlock.Type
  | typeof RedactedThinkingBlock.Type

/**
 * A checked block as the kind it is, or `undefined` for another kind. Sound because the schema lets a block with a
 * known `type` through only with that kind's fields (`OtherBlock` refuses known types).
 */
export const knownBlock = (block: { readonly type: string }): KnownBlock | undefined =>
  knownBlockTypes.has(block.type) ? (block as KnownBlock) : undefined

/** One turn of the conversation: a string or blocks. */
export const MessageParam = Schema.Struct({
  role: Schema.Literal("user", "assistant"),
  content: Schema.Union(Schema.String, Schema.Array(ContentBlock))
}).annotations({ identifier: "MessageParam", ...preserve })
export type MessageParam = typeof MessageParam.Type

/** A client tool (`input_schema`), or a server tool (`type: "web_search_20250305"`…) that only Anthropic runs. */
export const MessagesTool = Schema.Union(
  Schema.Struct({
    type: Schema.optional(Schema.NullOr(Schema.Literal("custom"))),
    name: Schema.String.pipe(Schema.minLength(1)),
    description: Schema.optional(Schema.String),
    input_schema: JsonObject
  }).annotations({ identifier: "MessagesCustomTool", ...preserve }),
  Schema.Struct({
    type: Schema.String.pipe(Schema.filter((type) => type !== "custom", { message: () => "a custom tool needs an input_schema" })),
    name: Schema.String
  }).annotations({ identifier: "MessagesServerTool", ...preserve })
).annotations({ identifier: "MessagesTool" })
export type MessagesTool = typeof MessagesTool.Type

const disableParallel = Schema.optional(Schema.Boolean)

export const MessagesToolChoice = Schema.Union(
  Schema.Struct({ type: Schema.Literal("auto"), disable_parallel_tool_use: disableParallel }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("any"), disable_parallel_tool_use: disableParallel }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("tool"), name: Schema.String, disable_parallel_tool_use: disableParallel }).annotations(preserve),
  Schema.Struct({ type: Schema.Literal("none") }).annotations(preserve)
).annotations({ identifier: "MessagesToolChoice" })
export type MessagesToolChoice = typeof MessagesToolChoice.Type

/** `{type: "enabled", budget_tokens}`, `{type: "disabled"}`, or another mode (`adaptive`) passed on as is. */
export const MessagesThinking = Schema.Union(
  Schema.Struct({ type: Schema.Literal("enabled"), budget_tokens: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)) }).annotations(preserve),
  Schema.Struct({ type: Schema.String.pipe(Schema.filter((type) => type !== "enabled", { message: () => "enabled thinking needs budget_tokens" })) }).annotations(
    preserve
  )
).annotations({ identifier: "MessagesThinking" })
export type MessagesThinking = typeof MessagesThinking.Type

/** The fields of a Messages request that count_tokens also takes (it has no `max_tokens`). */
const promptFields = {
  model: Schema.String.pipe(Schema.minLength(1)),
  messages: Schema.Array(MessageParam),
  system: Schema.optional(Schema.Union(Schema.String, Schema.Array(TextBlock))),
  tools: Schema.optional(Schema.Array(MessagesTool)),
  tool_choice: Schema.optional(MessagesToolChoice),
  thinking: Schema.optional(MessagesThinking)
}

/** `POST /v1/messages` body. Unknown fields are kept and, to Anthropic deployments, forwarded. */
export const MessagesRequest = Schema.Struct({
  ...promptFields,
  messages: Schema.Array(MessageParam).pipe(Schema.minItems(1, { message: () => "must contain at least one message" })),
  max_tokens: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)),
  stop_sequences: Schema.optional(Schema.Array(Schema.String)),
  temperature: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))),
  top_p: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))),
  top_k: Schema.optional(Schema.Int.pipe(Schema.greaterThanOrEqualTo(0))),
  metadata: Schema.optional(Schema.Struct({ user_id: Schema.optional(Schema.NullOr(Schema.String)) }).annotations(preserve)),
  stream: Schema.optional(Schema.Boolean)
}).annotations({ identifier: "MessagesRequest", ...preserve })
export type MessagesRequest = typeof MessagesRequest.Type

/** `POST /v1/messages/count_tokens` body. */
export const CountTokensRequest = Schema.Struct(promptFields).annotations({ identifier: "CountTokensRequest", ...preserve })
export type CountTokensRequest = typeof CountTokensRequest.Type

/** `POST /v1/messages/count_tokens` answer. */
export const CountTokensResponse = Schema.Struct({ input_tokens: Schema.Int }).annotations({ identifier: "CountTokensResponse" })

/** Anthropic's token accounting on an answer. */
export const MessagesUsage = Schema.Struct({
  input_tokens: Schema.Int,
  output_tokens: Schema.Int,
  cache_creation_input_tokens: Schema.optional(Schema.NullOr(Schema.Int)),
  cache_read_input_tokens: Schema.optional(Schema.NullOr(Schema.Int))
}).annotations({ identifier: "MessagesUsage", ...preserve })
export type MessagesUsage = typeof MessagesUsage.Type

/** A content block of an answer (documentation: answers are relayed, not decoded). */
const ResponseBlock = Schema.Union(TextBlock, ToolUseBlock, ThinkingBlock, RedactedThinkingBlock, OtherBlock)

/** The answer to a non-streamed request. `model` is the public name that served it. */
export const MessagesResponse = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("message"),
  role: Schema.Literal("assistant"),
  model: Schema.String,
  content: Schema.Array(ResponseBlock),
  stop_reason: Schema.NullOr(Schema.String),
  stop_sequence: Schema.NullOr(Schema.String),
  usage: MessagesUsage
}).annotations({ identifier: "Message", ...preserve })
export type MessagesResponse = typeof MessagesResponse.Type

/** Anthropic's error envelope, the body of every non-2xx answer of these endpoints and of an `error` event. */
export const MessagesErrorBody = Schema.Struct({
  type: Schema.Literal("error"),
  error: Schema.Struct({ type: Schema.String, message: Schema.String })
}).annotations({ identifier: "MessagesErrorResponse" })
export type MessagesErrorBody = typeof MessagesErrorBody.Type

/** Token counts as the gateway's accounting reads them off an answer: Anthropic's, all optional. */
export interface EventUsage {
  readonly input_tokens?: number | null | undefined
  readonly output_tokens?: number | null | undefined
  readonly cache_creation_input_tokens?: number | null | undefined
  readonly cache_read_input_tokens?: number | null | undefined
}

/**
 * One event of a Messages stream as the gateway relays it: its name and its data as one line of JSON text (what is
 * written after `data: `), with what the accounting needs read off once: the usage it reports (`message_start`,
 * `message_delta`; cumulative, as Anthropic sends it) and the text it delivers (deltas).
 */
export interface MessagesEvent {
  readonly event: string
  readonly data: string
  readonly usage?: EventUsage
  readonly text?: string
  /** On `message_start`: the model the upstream named (before the public name replaces it), for the attempt's span. */
  readonly model?: string
}

/** The headers of the client's request that go on to a native Anthropic deployment. */
export interface AnthropicHeaders {
  readonly version: string | undefined
  readonly beta: string | undefined
}

/** A Messages request as the edge hands it to the core: checked, the body as sent, and the Anthropic headers. */
export interface MessagesCall {
  /** The checked request (the translation to chat reads it). */
  readonly request: MessagesRequest
  /** The body as the client sent it (parsed JSON): what a native deployment receives, only `model` replaced. */
  readonly body: Readonly<Record<string, unknown>>
  readonly headers: AnthropicHeaders
}

/** A count_tokens request as the edge hands it to the core. */
export interface CountTokensCall {
  readonly request: CountTokensRequest
  readonly body: Readonly<Record<string, unknown>>
  readonly headers: AnthropicHeaders
}

/** What a native deployment is sent: the client's body with the upstream model, and the client's Anthropic headers. */
export interface NativeCall {
  readonly body: Readonly<Record<string, unknown>>
  readonly headers: AnthropicHeaders
}

/** A non-streamed answer as the core hands it to the edge: the message (JSON object) and its usage, checked. */
export interface MessageAnswer {
  readonly message: Readonly<Record<string, unknown>>
  readonly usage: EventUsage | undefined
}
