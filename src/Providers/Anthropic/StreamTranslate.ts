/**
 * A pure state machine from Anthropic's Messages stream events to OpenAI `chat.completion.chunk`s.
 *
 * Drive it with `Stream.mapAccumEffect(initialState(ctx), step)` (an `Either` is an `Effect`), then call `finish`
 * once the upstream ends: a stream that stops before `message_stop` is a failure, not a short answer.
 *
 * Thinking streams as `reasoning_content`; each thinking (or redacted_thinking) block, once complete with its
 * signature, goes out as `thinking_blocks: [block]`, and the next tool call's id carries the blocks since the
 * previous call (see ToolCallCarriage.ts).
 */
import { Either, Schema } from "effect"
import type { ChatCompletionChunk, FinishReason, ThinkingBlock } from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import type { ProviderErrorReason } from "../Provider.js"
import { malformed } from "../Upstream/Transport.js"
import { providerName } from "./Request.js"
import { AnthropicUsage, finishReasonFor, toolCallIdOf, usageFrom } from "./Response.js"
import type { CompletionContext } from "./Response.js"

/** One decoded SSE event: its name and its parsed JSON data. */
export interface AnthropicStreamEvent {
  readonly event: string
  readonly data: unknown
}

/** What became of each upstream content block, by its index. */
type Block =
  | { readonly kind: "text" }
  | { readonly kind: "tool"; readonly ordinal: number }
  /** The response-format tool: its input is streamed as content. */
  | { readonly kind: "answer" }
  /** Thinking so far: its text and signature, sent as a block when it stops. */
  | { readonly kind: "thinking"; readonly thinking: string; readonly signature: string }
  | { readonly kind: "redacted"; readonly data: string }
  | { readonly kind: "ignored" }

export interface StreamState {
  readonly ctx: CompletionContext
  readonly blocks: Readonly<Record<number, Block>>
  /** How many real tool calls have started; the next one gets this index. */
  readonly toolCalls: number
  /** Completed thinking blocks that no tool call's id carries yet. */
  readonly uncarried: ReadonlyArray<ThinkingBlock>
  readonly usage: AnthropicUsage
  readonly stopped: boolean
}

export type StepResult = Either.Either<readonly [StreamState, ReadonlyArray<ChatCompletionChunk>], ProviderError>

/** The state before the first event; `ctx` supplies the id, created and model every chunk reports. */
export const initialState = (ctx: CompletionContext): StreamState => ({
  ctx,
  blocks: {},
  toolCalls: 0,
  uncarried: [],
  usage: { input_tokens: 0, output_tokens: 0 },
  stopped: false
})

const MessageStart = Schema.Struct({
  message: Schema.Struct({ usage: AnthropicUsage })
})

const ContentBlockStart = Schema.Struct({
  index: Schema.Number,
  content_block: Schema.Struct({
    type: Schema.String,
    text: Schema.optional(Schema.String),
    id: Schema.optional(Schema.String),
    name: Schema.optional(Schema.String),
    thinking: Schema.optional(Schema.String),
    signature: Schema.optional(Schema.String),
    data: Schema.optional(Schema.String)
  })
})

const ContentBlockDelta = Schema.Struct({
  index: Schema.Number,
  delta: Schema.Struct({
    type: Schema.String,
    text: Schema.optional(Schema.String),
    partial_json: Schema.optional(Schema.String),
    thinking: Schema.optional(Schema.String),
    signature: Schema.optional(Schema.String)
  })
})

const ContentBlockStop = Schema.Struct({ index: Schema.Number })

const optionalCount = Schema.optional(Schema.NullOr(Schema.Number))

/** `usage` here is cumulative; input and cache counts appear only when server tools changed them. */
const MessageDelta = Schema.Struct({
  delta: Schema.Struct({ stop_reason: Schema.optional(Schema.NullOr(Schema.String)) }),
  usage: Schema.optional(
    Schema.Struct({
      output_tokens: optionalCount,
      input_tokens: optionalCount,
      cache_creation_input_tokens: optionalCount,
      cache_read_input_tokens: optionalCount
    })
  )
})

const ErrorEvent = Schema.Struct({
  error: Schema.Struct({ type: Schema.String, message: Schema.optional(Schema.String) })
})

// A Map, not an object: the type is the upstream's text, and `constructor` must not find Object's.
const errorReasons: ReadonlyMap<string, ProviderErrorReason> = new Map(Object.entries({
  overloaded_error: "Unavailable",
  api_error: "Unavailable",
  rate_limit_error: "RateLimited",
  invalid_request_error: "InvalidRequest",
  request_too_large: "InvalidRequest",
  authentication_error: "Authentication",
  permission_error: "Authentication",
  not_found_error: "NotFound",
  billing_error: "QuotaExhausted",
  timeout_error: "Timeout"
} satisfies Record<string, ProviderErrorReason>))

/** An `event: error` payload → the `ProviderError` it stands for; unknown error types count as `Unavailable`. */
export const errorFromEvent = (data: unknown): ProviderError => {
  const decoded = Schema.decodeUnknownOption(ErrorEvent)(data)
  const type = decoded._tag === "Some" ? decoded.value.error.type : undefined
  const message = decoded._tag === "Some" ? decoded.value.error.message : undefined
  return new ProviderError({
    reason: (type !== undefined ? errorReasons.get(type) : undefined) ?? "Unavailable",
    message: message !== undefined && message.length > 0 ? message : "anthropic upstream failed mid-stream",
    provider: providerName,
    code: type ?? null
  })
}

const chunk = (
  state: StreamState,
  delta: ChatCompletionChunk["choices"][number]["delta"],
  finishReason: FinishReason | null = null
): ChatCompletionChunk => ({
  id: state.ctx.id,
  object: "chat.completion.chunk",
  created: state.ctx.created,
  model: state.ctx.model,
  choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }]
})

const emit = (state: StreamState, chunks: ReadonlyArray<ChatCompletionChunk> = []): StepResult =>
  Either.right([state, chunks] as const)

const decodeOr = <A, I>(
  schema: Schema.Schema<A, I>,
  event: AnthropicStreamEvent,
  f: (value: A) => StepResult
): StepResult =>
  Either.flatMap(
    Either.mapLeft(Schema.decodeUnknownEither(schema)(event.data), () =>
      malformed(providerName, `a malformed ${event.event} event`)
    ),
    f
  )

const eventName = (event: AnthropicStreamEvent): string => {
  // Anthropic names every event; fall back to the data's own `type` should a proxy in between strip the names.
  if (event.event !== "message") return event.event
  const data = event.data
  return typeof data === "object" && data !== null && "type" in data && typeof data.type === "string"
    ? data.type
    : event.event
}

/**
 * Advances the machine by one upstream event, returning the next state and the chunks to emit, or the
 * `ProviderError` an `event: error` (or a malformed event) stands for. Events after `message_stop` are ignored.
 */
export const step = (state: StreamState, event: AnthropicStreamEvent): StepResult => {
  if (state.stopped) return emit(state)
  switch (eventName(event)) {
    case "message_start":
      return decodeOr(MessageStart, event, ({ message }) =>
        emit({ ...state, usage: message.usage }, [chunk(state, { role: "assistant", content: "" })])
      )

    case "content_block_start":
      return decodeOr(ContentBlockStart, event, ({ index, content_block: block }) => {
        if (block.type === "text") {
          const next = { ...state, blocks: { ...state.blocks, [index]: { kind: "text" } as const } }
          const text = block.text ?? ""
          return emit(next, text.length > 0 ? [chunk(state, { content: text })] : [])
        }
        if (block.type === "thinking") {
          const thinking = block.thinking ?? ""
          const next = { ...state, blocks: { ...state.blocks, [index]: { kind: "thinking", thinking, signature: block.signature ?? "" } as const } }
          return emit(next, thinking.length > 0 ? [chunk(state, { reasoning_content: thinking })] : [])
        }
        if (block.type === "redacted_thinking" && block.data !== undefined) {
          return emit({ ...state, blocks: { ...state.blocks, [index]: { kind: "redacted", data: block.data } as const } })
        }
        if (block.type !== "tool_use") {
          return emit({ ...state, blocks: { ...state.blocks, [index]: { kind: "ignored" } as const } })
        }
        if (block.name !== undefined && block.name === state.ctx.responseFormatTool) {
          return emit({ ...state, blocks: { ...state.blocks, [index]: { kind: "answer" } as const } })
        }
        if (block.id === undefined || block.name === undefined) {
          return Either.left(malformed(providerName, "a tool_use block without id or name"))
        }
        const ordinal = state.toolCalls
        const next: StreamState = {
          ...state,
          toolCalls: ordinal + 1,
          uncarried: [],
          blocks: { ...state.blocks, [index]: { kind: "tool", ordinal } }
        }
        return emit(next, [
          chunk(state, {
            tool_calls: [
              { index: ordinal, id: toolCallIdOf(block.id, state.uncarried), type: "function", function: { name: block.name, arguments: "" } }
            ]
          })
        ])
      })

    case "content_block_delta":
      return decodeOr(ContentBlockDelta, event, ({ index, delta }) => {
        const block = state.blocks[index]
        if (delta.type === "text_delta" && delta.text !== undefined && delta.text.length > 0) {
          return emit(state, [chunk(state, { content: delta.text })])
        }
        if (block?.kind === "thinking" && delta.type === "thinking_delta" && delta.thinking !== undefined) {
          if (delta.thinking.length === 0) return emit(state)
          const next = { ...state, blocks: { ...state.blocks, [index]: { ...block, thinking: block.thinking + delta.thinking } } }
          return emit(next, [chunk(state, { reasoning_content: delta.thinking })])
        }
        if (block?.kind === "thinking" && delta.type === "signature_delta" && delta.signature !== undefined) {
          // The signature comes whole; a later one replaces it, as Anthropic's SDKs read it.
          return emit({ ...state, blocks: { ...state.blocks, [index]: { ...block, signature: delta.signature } } })
        }
        if (delta.type !== "input_json_delta" || delta.partial_json === undefined || delta.partial_json.length === 0) {
          return emit(state)
        }
        if (block?.kind === "tool") {
          return emit(state, [
            chunk(state, { tool_calls: [{ index: block.ordinal, function: { arguments: delta.partial_json } }] })
          ])
        }
        return emit(state, block?.kind === "answer" ? [chunk(state, { content: delta.partial_json })] : [])
      })

    case "content_block_stop":
      return decodeOr(ContentBlockStop, event, ({ index }) => {
        const block = state.blocks[index]
        if (block?.kind !== "thinking" && block?.kind !== "redacted") return emit(state)
        const thinking: ThinkingBlock =
          block.kind === "redacted"
            ? { type: "redacted_thinking", data: block.data }
            : block.signature.length > 0
              ? { type: "thinking", thinking: block.thinking, signature: block.signature }
              : { type: "thinking", thinking: block.thinking }
        const next: StreamState = { ...state, uncarried: [...state.uncarried, thinking], blocks: { ...state.blocks, [index]: { kind: "ignored" } } }
        return emit(next, [chunk(state, { thinking_blocks: [thinking] })])
      })

    case "message_delta":
      return decodeOr(MessageDelta, event, ({ delta, usage }) => {
        const reason = finishReasonFor(delta.stop_reason)
        // The response-format tool alone is an answer, not a tool call.
        const finishReason = reason === "tool_calls" && state.toolCalls === 0 ? "stop" : reason
        const next: StreamState = {
          ...state,
          usage: {
            input_tokens: usage?.input_tokens ?? state.usage.input_tokens,
            output_tokens: usage?.output_tokens ?? state.usage.output_tokens,
            cache_creation_input_tokens: usage?.cache_creation_input_tokens ?? state.usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage?.cache_read_input_tokens ?? state.usage.cache_read_input_tokens
          }
        }
        return emit(next, [chunk(state, {}, finishReason)])
      })

    case "message_stop": {
      // Usage the upstream miscounted is unknown: no usage chunk rather than a wrong one.
      const usage = usageFrom(state.usage)
      return emit(
        { ...state, stopped: true },
        usage === undefined
          ? []
          : [{ id: state.ctx.id, object: "chat.completion.chunk", created: state.ctx.created, model: state.ctx.model, choices: [], usage }]
      )
    }

    case "error":
      return Either.left(errorFromEvent(event.data))

    default:
      // ping, and event types newer than this code.
      return emit(state)
  }
}

/** Call when the upstream body has ended: fails with `Unavailable` unless `message_stop` was seen. */
export const finish = (state: StreamState): StepResult =>
  state.stopped
    ? emit(state)
    : Either.left(
        new ProviderError({
          reason: "Unavailable",
          message: "anthropic upstream stream ended early",
          provider: providerName
        })
      )
