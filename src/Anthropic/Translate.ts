/**
 * Pure translation between the Messages dialect a client speaks and the chat-completions dialect every provider
 * takes, for deployments that do not speak Messages natively (OpenAI-compatible, Gemini, the mock, a library
 * user's provider): the request one way (`toChatRequest`), the answer the other (`toMessage`). The stream's way
 * back is StreamTranslate.ts. The mirror image of src/Providers/Anthropic/Request.ts and Response.ts.
 */
import { Either } from "effect"
import type {
  ChatCompletion,
  ChatCompletionRequest,
  ChatMessage,
  FinishReason,
  FunctionTool,
  ThinkingBlock as ChatThinkingBlock,
  ToolCall,
  ToolChoice,
  Usage,
  UserContentPart
} from "../OpenAi/Schemas.js"
import { ProviderError } from "../Providers/ProviderError.js"
import { thinkingBudgets } from "../Providers/Anthropic/Request.js"
import type { ReasoningEffort } from "../Providers/ReasoningEffort.js"
import { knownBlock } from "./Wire.js"
import type { ContentBlock, EventUsage, KnownBlock, MessageParam, MessagesRequest, MessagesSource, MessagesThinking, MessagesTool, MessagesToolChoice } from "./Wire.js"

/** The provider named in the failures of the translation (the gateway's own). */
export const translationProvider = "llm-proxy"

const cannotTranslate = (message: string, param: string): ProviderError =>
  new ProviderError({ reason: "InvalidRequest", message, provider: translationProvider, param, code: "invalid_request_error" })

type Parts = Array<UserContentPart>

/** A source as an OpenAI URL: base64 as a `data:` URL, a URL as it is; a text source is no URL. */
const urlOf = (source: MessagesSource, param: string): Either.Either<string, ProviderError> => {
  if (source.type === "base64" && "media_type" in source && "data" in source) {
    return Either.right(`data:${String(source.media_type)};base64,${String(source.data)}`)
  }
  if (source.type === "url" && "url" in source) return Either.right(String(source.url))
  return Either.left(cannotTranslate(`A ${source.type} source cannot be sent to this model's deployment`, `${param}.source`))
}

const unknownKind = (type: string, where: string, param: string): ProviderError =>
  cannotTranslate(
    `A ${type} block cannot be sent in ${where} to this model's deployment (it speaks chat completions, not Anthropic's Messages API)`,
    `${param}.type`
  )

/** A user-side block (text, image, document) as chat content parts. */
const userParts = (given: { readonly type: string }, param: string): Either.Either<Parts, ProviderError> => {
  const block = knownBlock(given)
  if (block === undefined) return Either.left(unknownKind(given.type, "a user turn", param))
  switch (block.type) {
    case "text":
      return Either.right([{ type: "text", text: block.text }])
    case "image":
      return Either.map(urlOf(block.source, param), (url): Parts => [{ type: "image_url", image_url: { url } }])
    case "document": {
      const source = block.source
      if (source.type === "text" && "data" in source) return Either.right([{ type: "text", text: String(source.data) }])
      if (source.type === "base64") {
        return Either.map(urlOf(source, param), (url): Parts => [
          { type: "file", file: block.title == null ? { file_data: url } : { file_data: url, filename: block.title } }
        ])
      }
      return Either.left(cannotTranslate(`A document with a ${source.type} source cannot be sent to this model's deployment`, `${param}.source`))
    }
    default:
      return Either.left(unknownKind(block.type, "a user turn", param))
  }
}

/** A tool result's content as a tool message's text, and the images it held (they go in the user turn after it). */
const toolResultOf = (
  block: Extract<KnownBlock, { readonly type: "tool_result" }>,
  param: string
): Either.Either<{ readonly text: string; readonly images: Parts }, ProviderError> => {
  const prefix = block.is_error === true ? "Error: " : ""
  const content = block.content
  if (content === undefined || typeof content === "string") return Either.right({ text: prefix + (content ?? ""), images: [] })
  const texts: Array<string> = []
  const images: Parts = []
  for (let i = 0; i < content.length; i++) {
    const part = content[i]!
    const parts = userParts(part, `${param}.content[${i}]`)
    if (Either.isLeft(parts)) return Either.left(parts.left)
    for (const converted of parts.right) {
      if (converted.type === "text") texts.push(converted.text)
      else images.push(converted)
    }
  }
  return Either.right({ text: prefix + texts.join("\n"), images })
}

/** One user turn: its tool results as tool messages first (they answer the previous turn's calls), then the rest. */
const userTurn = (content: ReadonlyArray<ContentBlock>, param: string): Either.Either<Array<ChatMessage>, ProviderError> => {
  const tools: Array<ChatMessage> = []
  const parts: Parts = []
  for (let i = 0; i < content.length; i++) {
    const given = content[i]!
    const at = `${param}.content[${i}]`
    const block = knownBlock(given)
    if (block === undefined) return Either.left(unknownKind(given.type, "a user turn", at))
    if (block.type === "tool_result") {
      const result = toolResultOf(block, at)
      if (Either.isLeft(result)) return Either.left(result.left)
      tools.push({ role: "tool", tool_call_id: block.tool_use_id, content: result.right.text })
      parts.push(...result.right.images)
    } else if (block.type === "thinking" || block.type === "redacted_thinking") {
      continue
    } else {
      const converted = userParts(block, at)
      if (Either.isLeft(converted)) return Either.left(converted.left)
      parts.push(...converted.right)
    }
  }
  if (parts.length === 0) return Either.right(tools)
  const onlyText = parts.every((part) => part.type === "text")
  const user: ChatMessage = onlyText
    ? { role: "user", content: parts.map((part) => (part.type === "text" ? part.text : "")).join("\n") }
    : { role: "user", content: parts }
  return Either.right([...tools, user])
}

/** One assistant turn: text as content, tool_use as tool calls, thinking as reasoning and signed blocks. */
const assistantTurn = (content: ReadonlyArray<ContentBlock>, param: string): Either.Either<ChatMessage, ProviderError> => {
  const texts: Array<string> = []
  const calls: Array<ToolCall> = []
  const thoughts: Array<string> = []
  const thinkingBlocks: Array<ChatThinkingBlock> = []
  for (let i = 0; i < content.length; i++) {
    const given = content[i]!
    const block = knownBlock(given)
    if (block === undefined) return Either.left(unknownKind(given.type, "an assistant turn", `${param}.content[${i}]`))
    switch (block.type) {
      case "text":
        texts.push(block.text)
        break
      case "tool_use":
        calls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input) } })
        break
      case "thinking":
        thoughts.push(block.thinking)
        thinkingBlocks.push(block.signature === undefined ? { type: "thinking", thinking: block.thinking } : { type: "thinking", thinking: block.thinking, signature: block.signature })
        break
      case "redacted_thinking":
        thinkingBlocks.push({ type: "redacted_thinking", data: block.data })
        break
      default:
        return Either.left(unknownKind(block.type, "an assistant turn", `${param}.content[${i}]`))
    }
  }
  return Either.right({
    role: "assistant",
    content: texts.length > 0 ? texts.join("") : null,
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
    ...(thoughts.length > 0 ? { reasoning_content: thoughts.join("") } : {}),
    ...(thinkingBlocks.length > 0 ? { thinking_blocks: thinkingBlocks } : {})
  })
}

const turnOf = (message: MessageParam, param: string): Either.Either<ReadonlyArray<ChatMessage>, ProviderError> => {
  if (typeof message.content === "string") {
    return Either.right([message.role === "user" ? { role: "user", content: message.content } : { role: "assistant", content: message.content }])
  }
  return message.role === "user" ? userTurn(message.content, param) : Either.map(assistantTurn(message.content, param), (turn) => [turn])
}

/** Client tools as functions; server tools (web search, code execution…) run only at Anthropic and are left out. */
const toolsOf = (tools: ReadonlyArray<MessagesTool> | undefined): Array<FunctionTool> => {
  const functions: Array<FunctionTool> = []
  for (const tool of tools ?? []) {
    if (!("input_schema" in tool) || (tool.type !== undefined && tool.type !== null && tool.type !== "custom")) continue
    functions.push({
      type: "function",
      function: {
        name: tool.name,
        ...(tool.description === undefined ? {} : { description: tool.description }),
        parameters: tool.input_schema as Record<string, unknown>
      }
    })
  }
  return functions
}

const toolChoiceOf = (choice: MessagesToolChoice): ToolChoice => {
  switch (choice.type) {
    case "auto":
      return "auto"
    case "any":
      return "required"
    case "none":
      return "none"
    case "tool":
      return { type: "function", function: { name: choice.name } }
  }
}

/**
 * `thinking.budget_tokens` → `reasoning_effort`: the strongest effort whose budget (README, "Reasoning models":
 * the table the other direction uses) the client's budget reaches; `low` below it. `disabled` and other modes
 * (`adaptive`) set nothing: the model's own default.
 */
export const effortOfThinking = (thinking: MessagesThinking | undefined): ReasoningEffort | undefined => {
  if (thinking === undefined || thinking.type !== "enabled" || !("budget_tokens" in thinking)) return undefined
  const budget = Number(thinking.budget_tokens)
  const ordered: ReadonlyArray<Exclude<ReasoningEffort, "none" | "minimal" | "max">> = ["xhigh", "high", "medium", "low"]
  return ordered.find((effort) => budget >= thinkingBudgets[effort]) ?? "low"
}

const systemOf = (system: MessagesRequest["system"]): string | undefined => {
  if (system === undefined) return undefined
  const text = typeof system === "string" ? system : system.map((block) => block.text).join("\n")
  return text.length > 0 ? text : undefined
}

/**
 * A Messages request as a chat-completions request for `model` (the deployment's upstream model). Fails with
 * `InvalidRequest` naming the block the chat dialect cannot carry (a URL document, a server tool's block).
 */
export const toChatRequest = (request: MessagesRequest, model: string): Either.Either<ChatCompletionRequest, ProviderError> =>
  Either.gen(function* () {
    const messages: Array<ChatMessage> = []
    const system = systemOf(request.system)
    if (system !== undefined) messages.push({ role: "system", content: system })
    for (let i = 0; i < request.messages.length; i++) messages.push(...(yield* turnOf(request.messages[i]!, `messages[${i}]`)))
    if (messages.length === 0) return yield* Either.left(cannotTranslate("messages must contain at least one message", "messages"))
    const tools = toolsOf(request.tools)
    const choice = request.tool_choice
    const effort = effortOfThinking(request.thinking)
    const user = request.metadata?.user_id
    const chat: ChatCompletionRequest = {
      model,
      messages,
      max_completion_tokens: request.max_tokens,
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      ...(request.top_p === undefined ? {} : { top_p: request.top_p }),
      ...(request.stop_sequences === undefined || request.stop_sequences.length === 0 ? {} : { stop: request.stop_sequences }),
      ...(typeof user === "string" ? { user } : {}),
      ...(tools.length > 0 ? { tools } : {}),
      ...(tools.length > 0 && choice !== undefined ? { tool_choice: toolChoiceOf(choice) } : {}),
      ...(tools.length > 0 && choice !== undefined && "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use === true
        ? { parallel_tool_calls: false }
        : {}),
      ...(effort === undefined ? {} : { reasoning_effort: effort }),
      ...(request.stream === true ? { stream: true } : {})
    }
    // top_k is no OpenAI field: it rides as an extra one, which the providers that know it read.
    return request.top_k === undefined ? chat : ({ ...chat, top_k: request.top_k } as ChatCompletionRequest)
  })

/** OpenAI's finish reason → Anthropic's stop reason (a stop sequence is told apart by `stopSequenceOf`). */
export const stopReasonOf = (finish: FinishReason | null | undefined): string => {
  switch (finish) {
    case "length":
      return "max_tokens"
    case "tool_calls":
    case "function_call":
      return "tool_use"
    case "content_filter":
      return "refusal"
    default:
      return "end_turn"
  }
}

/**
 * The stop sequence that ended an answer, when the upstream says which (vLLM's `stop_reason` on the choice) and it is
 * one the client asked for; OpenAI itself does not say, so its stops read as `end_turn`.
 */
export const stopSequenceOf = (said: unknown, asked: ReadonlyArray<string> | undefined): string | undefined =>
  typeof said === "string" && asked !== undefined && asked.includes(said) ? said : undefined

/** OpenAI's usage → Anthropic's: cached prompt tokens are `cache_read_input_tokens`, not `input_tokens`. */
export const usageOfChat = (usage: Usage | undefined | null): { readonly input_tokens: number; readonly output_tokens: number; readonly cache_read_input_tokens?: number } => {
  if (usage === undefined || usage === null) return { input_tokens: 0, output_tokens: 0 }
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0
  const cachedCount = Number.isSafeInteger(cached) && cached > 0 && cached <= usage.prompt_tokens ? cached : 0
  return cachedCount > 0
    ? { input_tokens: usage.prompt_tokens - cachedCount, output_tokens: usage.completion_tokens, cache_read_input_tokens: cachedCount }
    : { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens }
}

/** A tool call's arguments as Anthropic's `input` object; text that is no JSON object becomes `{}`. */
export const inputOf = (argumentsText: string): Record<string, unknown> => {
  try {
    const parsed: unknown = JSON.parse(argumentsText)
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

/** What a translated answer reports besides the upstream's data. */
export interface MessageContext {
  readonly id: string
  /** The public model name. */
  readonly model: string
  readonly stopSequences: ReadonlyArray<string> | undefined
}

/** A message id from a chat completion's: Anthropic's `msg_` prefix, the upstream's id kept for tracing. */
export const messageIdOf = (completionId: string): string => `msg_${completionId.replace(/[^\w-]/g, "").slice(0, 64) || crypto.randomUUID()}`

/**
 * A chat completion as a Messages `message`: thinking blocks (signed ones as they came, else the reasoning text),
 * the text, the tool calls as `tool_use` blocks, the stop reason and the usage (zeros when the upstream reported
 * none: the gateway counts them for its own accounting).
 */
export const toMessage = (completion: ChatCompletion, ctx: MessageContext): { readonly message: Record<string, unknown>; readonly usage: EventUsage | undefined } => {
  const choice = completion.choices[0]
  const message = choice?.message
  const content: Array<Record<string, unknown>> = []
  if (message !== undefined) {
    const blocks = message.thinking_blocks ?? []
    if (blocks.length > 0) for (const block of blocks) content.push({ ...block })
    else if (typeof message.reasoning_content === "string" && message.reasoning_content.length > 0) {
      content.push({ type: "thinking", thinking: message.reasoning_content, signature: "" })
    }
    const text = (message.content ?? "") + (typeof message.refusal === "string" ? message.refusal : "")
    if (text.length > 0) content.push({ type: "text", text })
    for (const call of message.tool_calls ?? []) {
      content.push({ type: "tool_use", id: call.id, name: call.function.name, input: inputOf(call.function.arguments) })
    }
  }
  // vLLM's extra field, kept by the chat schemas.
  const said = choice === undefined ? undefined : (choice as unknown as Readonly<Record<string, unknown>>)["stop_reason"]
  const stopSequence = choice?.finish_reason === "stop" ? stopSequenceOf(said, ctx.stopSequences) : undefined
  const usage = usageOfChat(completion.usage)
  return {
    message: {
      id: ctx.id,
      type: "message",
      role: "assistant",
      model: ctx.model,
      content,
      stop_reason: stopSequence !== undefined ? "stop_sequence" : stopReasonOf(choice?.finish_reason),
      stop_sequence: stopSequence ?? null,
      usage
    },
    usage: completion.usage === undefined ? undefined : usage
  }
}
