/**
 * Pure translation of an OpenAI chat request into an Anthropic Messages request.
 *
 * `response_format: json_schema` has no universally available Anthropic counterpart, so it becomes a tool named
 * after the schema that the model must call (see Response.ts for the way back). `json_object` becomes a
 * system-prompt instruction.
 *
 * Extended thinking: a native `thinking` object is forwarded as is, else `reasoning_effort` maps to a budget (see
 * `thinkingBudgets`). Signed thinking blocks of an assistant message go back in place, before its tool calls:
 * from its `thinking_blocks`, else from the ids of its tool calls, which carry them (ToolCallCarriage.ts).
 */
import { Either } from "effect"
import type {
  ChatCompletionRequest,
  ChatMessage,
  ThinkingBlock,
  ToolCall,
  UserContentPart
} from "../../OpenAi/Schemas.js"
import { ProviderError } from "../Provider.js"
import { reasoningEffortOf } from "../ReasoningEffort.js"
import type { ReasoningEffort } from "../ReasoningEffort.js"
import { baseOf, uncarry } from "../ToolCallCarriage.js"

/** The provider kind reported in every `ProviderError` of this dialect. */
export const providerName = "anthropic"

export interface AnthropicTextBlock {
  readonly type: "text"
  readonly text: string
}

export type AnthropicSource =
  | { readonly type: "url"; readonly url: string }
  | { readonly type: "base64"; readonly media_type: string; readonly data: string }

export interface AnthropicImageBlock {
  readonly type: "image"
  readonly source: AnthropicSource
}

export interface AnthropicDocumentBlock {
  readonly type: "document"
  readonly source: AnthropicSource
  readonly title?: string
}

export interface AnthropicToolUseBlock {
  readonly type: "tool_use"
  readonly id: string
  readonly name: string
  readonly input: Readonly<Record<string, unknown>>
}

export interface AnthropicToolResultBlock {
  readonly type: "tool_result"
  readonly tool_use_id: string
  readonly content: string | ReadonlyArray<AnthropicTextBlock>
}

export type AnthropicThinkingBlock =
  | { readonly type: "thinking"; readonly thinking: string; readonly signature?: string }
  | { readonly type: "redacted_thinking"; readonly data: string }

export type AnthropicContentBlock =
  | AnthropicThinkingBlock
  | AnthropicTextBlock
  | AnthropicImageBlock
  | AnthropicDocumentBlock
  | AnthropicToolUseBlock
  | AnthropicToolResultBlock

export interface AnthropicMessageParam {
  readonly role: "user" | "assistant"
  readonly content: ReadonlyArray<AnthropicContentBlock>
}

export interface AnthropicTool {
  readonly name: string
  readonly description?: string
  readonly input_schema: Readonly<Record<string, unknown>>
}

export type AnthropicToolChoice =
  | { readonly type: "none" }
  | { readonly type: "auto" | "any"; readonly disable_parallel_tool_use?: boolean }
  | { readonly type: "tool"; readonly name: string; readonly disable_parallel_tool_use?: boolean }

/** The body of `POST /v1/messages`. */
export interface AnthropicRequestBody {
  readonly model: string
  readonly messages: ReadonlyArray<AnthropicMessageParam>
  readonly max_tokens: number
  readonly system?: string
  readonly temperature?: number
  readonly top_p?: number
  readonly top_k?: number
  readonly stop_sequences?: ReadonlyArray<string>
  readonly metadata?: { readonly user_id: string }
  readonly tools?: ReadonlyArray<AnthropicTool>
  readonly tool_choice?: AnthropicToolChoice
  /** Extended thinking: `{type: "enabled", budget_tokens}`, or whatever native object the client sent. */
  readonly thinking?: Readonly<Record<string, unknown>>
  readonly stream?: boolean
}

const invalidRequest = (message: string, param: string): ProviderError =>
  new ProviderError({ reason: "InvalidRequest", message, provider: providerName, param })

const jsonObjectInstruction = "Respond with a single valid JSON object and nothing else."

/** The name of the tool standing in for `response_format: json_schema`, when the request asks for one. */
export const responseFormatToolName = (request: ChatCompletionRequest): string | undefined =>
  request.response_format?.type === "json_schema" ? request.response_format.json_schema.name : undefined

const textOf = (content: string | ReadonlyArray<{ readonly text: string }>): string =>
  typeof content === "string" ? content : content.map((part) => part.text).join("\n")

const textBlocks = (text: string): Array<AnthropicContentBlock> => (text.length > 0 ? [{ type: "text", text }] : [])

const dataUrlPattern = /^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$/s

/** `data:<media>;base64,<data>` → a base64 source; any other URL → a URL source. */
const sourceFromUrl = (url: string, param: string): Either.Either<AnthropicSource, ProviderError> => {
  if (!url.startsWith("data:")) return Either.right({ type: "url", url })
  const match = dataUrlPattern.exec(url)
  return match?.[1] !== undefined && match[2] !== undefined
    ? Either.right({ type: "base64", media_type: match[1], data: match[2] })
    : Either.left(invalidRequest("Only base64 data: URLs are supported by the anthropic upstream", param))
}

const userPart = (part: UserContentPart, param: string): Either.Either<Array<AnthropicContentBlock>, ProviderError> => {
  switch (part.type) {
    case "text":
      return Either.right(textBlocks(part.text))
    case "image_url":
      return Either.map(sourceFromUrl(part.image_url.url, `${param}.image_url.url`), (source) => [
        { type: "image", source }
      ])
    case "file": {
      const data = part.file.file_data
      if (data === undefined) {
        return Either.left(invalidRequest("The anthropic upstream accepts files only as inline file_data", param))
      }
      // OpenAI sends file_data either as a data: URL or as bare base64 (then PDF is the only document type it takes).
      const source = data.startsWith("data:")
        ? sourceFromUrl(data, `${param}.file.file_data`)
        : Either.right<AnthropicSource>({ type: "base64", media_type: "application/pdf", data })
      return Either.map(source, (source) => [
        part.file.filename === undefined
          ? { type: "document", source }
          : { type: "document", source, title: part.file.filename }
      ])
    }
    case "input_audio":
      return Either.left(invalidRequest("The anthropic upstream does not accept audio input", param))
  }
}

const parseArguments = (
  call: ToolCall,
  param: string
): Either.Either<Readonly<Record<string, unknown>>, ProviderError> => {
  const raw = call.function.arguments
  // Some clients send "" for a call without arguments; Anthropic wants an object either way.
  if (raw.trim().length === 0) return Either.right({})
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    return Either.left(invalidRequest(`Tool call ${call.id} has arguments that are not valid JSON`, param))
  }
  return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
    ? Either.right(parsed as Record<string, unknown>)
    : Either.left(invalidRequest(`Tool call ${call.id} has arguments that are not a JSON object`, param))
}

/** One OpenAI message as Anthropic blocks of a user or assistant turn; system messages never get here. */
const blocksOf = (
  message: Exclude<ChatMessage, { readonly role: "system" | "developer" }>,
  param: string
): Either.Either<AnthropicMessageParam, ProviderError> => {
  switch (message.role) {
    case "user":
      if (typeof message.content === "string") {
        return Either.right({ role: "user", content: textBlocks(message.content) })
      }
      return Either.map(
        Either.all(message.content.map((part, i) => userPart(part, `${param}.content[${i}]`))),
        (blocks) => ({ role: "user", content: blocks.flat() })
      )
    case "assistant": {
      const content = message.content ?? []
      const text: Array<AnthropicContentBlock> =
        typeof content === "string"
          ? textBlocks(content)
          : content.flatMap((part) => textBlocks(part.type === "text" ? part.text : part.refusal))
      const explicit = message.thinking_blocks ?? []
      const calls = (message.tool_calls ?? []).map((call, i) =>
        Either.map(parseArguments(call, `${param}.tool_calls[${i}].function.arguments`), (input) => {
          const { base, carried } = uncarry(call.id)
          const toolUse: AnthropicContentBlock = { type: "tool_use", id: base, name: call.function.name, input }
          // Blocks the id carried, unless the message sent its thinking blocks itself.
          const thinking = explicit.length === 0 && carried?.kind === "anthropic" ? carried.thinkingBlocks.map(thinkingBlockOf) : []
          return { thinking, toolUse }
        })
      )
      return Either.map(Either.all(calls), (uses) => {
        // Thinking comes first, as Anthropic sent it: the message's own blocks, or the ones its first call carried;
        // blocks a later call carried (interleaved thinking) go right before that call.
        const [first, ...rest] = uses
        const leading = explicit.length > 0 ? explicit.map(thinkingBlockOf) : (first?.thinking ?? [])
        const blocks: Array<AnthropicContentBlock> = [...leading, ...text]
        if (first !== undefined) blocks.push(first.toolUse)
        for (const use of rest) blocks.push(...use.thinking, use.toolUse)
        return { role: "assistant", content: blocks }
      })
    }
    case "tool":
      return Either.right({
        role: "user",
        content: [
          {
            type: "tool_result",
            tool_use_id: baseOf(message.tool_call_id),
            content:
              typeof message.content === "string"
                ? message.content
                : message.content.map((part): AnthropicTextBlock => ({ type: "text", text: part.text }))
          }
        ]
      })
  }
}

/** A thinking block as Anthropic takes it back: exactly its fields, nothing a client added. */
const thinkingBlockOf = (block: ThinkingBlock): AnthropicThinkingBlock =>
  block.type === "redacted_thinking"
    ? { type: "redacted_thinking", data: block.data }
    : block.signature === undefined
      ? { type: "thinking", thinking: block.thinking }
      : { type: "thinking", thinking: block.thinking, signature: block.signature }

/**
 * Anthropic wants strictly alternating turns, and tool results first within a user turn: consecutive same-role
 * messages are merged into one turn, and turns left without content are dropped.
 */
const alternate = (turns: ReadonlyArray<AnthropicMessageParam>): Array<AnthropicMessageParam> => {
  const merged: Array<{ role: "user" | "assistant"; content: Array<AnthropicContentBlock> }> = []
  for (const turn of turns) {
    if (turn.content.length === 0) continue
    const last = merged[merged.length - 1]
    if (last !== undefined && last.role === turn.role) last.content.push(...turn.content)
    else merged.push({ role: turn.role, content: [...turn.content] })
  }
  return merged.map((turn) =>
    turn.role === "user"
      ? {
          role: "user",
          content: [
            ...turn.content.filter((block) => block.type === "tool_result"),
            ...turn.content.filter((block) => block.type !== "tool_result")
          ]
        }
      : turn
  )
}

const toolChoiceOf = (
  request: ChatCompletionRequest,
  answerTool: string | undefined
): AnthropicToolChoice | undefined => {
  const parallel = request.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {}
  const userTools = (request.tools ?? []).length > 0
  if (answerTool !== undefined) {
    // With tools of its own the model may still call them; otherwise it must answer through the schema tool.
    return userTools && request.tool_choice !== "none"
      ? { type: "any", ...parallel }
      : { type: "tool", name: answerTool, ...parallel }
  }
  if (!userTools) return undefined
  const choice = request.tool_choice
  if (choice === "none") return { type: "none" }
  if (choice === "required") return { type: "any", ...parallel }
  if (typeof choice === "object") return { type: "tool", name: choice.function.name, ...parallel }
  return choice === "auto" || request.parallel_tool_calls === false ? { type: "auto", ...parallel } : undefined
}

const toolsOf = (request: ChatCompletionRequest): Array<AnthropicTool> => {
  const tools: Array<AnthropicTool> = (request.tools ?? []).map((tool) => {
    const input_schema = { type: "object", ...(tool.function.parameters ?? { properties: {} }) }
    return tool.function.description === undefined
      ? { name: tool.function.name, input_schema }
      : { name: tool.function.name, description: tool.function.description, input_schema }
  })
  const format = request.response_format
  if (format?.type === "json_schema") {
    tools.push({
      name: format.json_schema.name,
      description:
        format.json_schema.description ??
        "Give your final answer by calling this tool; its input is the answer, in the required JSON shape.",
      input_schema: { type: "object", ...format.json_schema.schema }
    })
  }
  return tools
}

/**
 * reasoning_effort → `budget_tokens`. 1024 is Anthropic's least; 24576 leaves room for an answer within the
 * 32000-token output of the smallest-output thinking models.
 */
export const thinkingBudgets: Readonly<Record<Exclude<ReasoningEffort, "none">, number>> = {
  minimal: 1024,
  low: 2048,
  medium: 8192,
  high: 16384,
  xhigh: 24576,
  max: 24576
}

const isRecord = (value: unknown): value is Readonly<Record<string, unknown>> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The `thinking` to send: the client's own object as is, else what `reasoning_effort` maps to (none for `none`). */
const thinkingOf = (request: ChatCompletionRequest): Either.Either<Readonly<Record<string, unknown>> | undefined, ProviderError> => {
  const native = (request as Readonly<Record<string, unknown>>)["thinking"]
  if (native !== undefined && native !== null) {
    return isRecord(native) ? Either.right(native) : Either.left(invalidRequest("thinking must be an object", "thinking"))
  }
  return Either.map(reasoningEffortOf(request, providerName), (effort) =>
    effort === undefined || effort === "none" ? undefined : { type: "enabled", budget_tokens: thinkingBudgets[effort] }
  )
}

/**
 * Translates an OpenAI chat request into an Anthropic Messages request body (without `stream`).
 *
 * Fails with a `ProviderError` of reason `InvalidRequest` (with `param` pointing at the culprit) for what Anthropic
 * cannot express: tool-call arguments that are not a JSON object, audio input, files by id, non-base64 data URLs
 * and `n` > 1, an unknown `reasoning_effort`, a `thinking` that is not an object. `logprobs`, penalties, `seed` and
 * `logit_bias` have no Anthropic counterpart and are dropped; of the unknown extra fields `top_k` and `thinking` are
 * forwarded.
 */
export const toAnthropicRequest = (
  request: ChatCompletionRequest,
  options: { readonly defaultMaxTokens: number }
): Either.Either<AnthropicRequestBody, ProviderError> => {
  if (request.n !== undefined && request.n !== null && request.n > 1) {
    return Either.left(invalidRequest("The anthropic upstream returns a single choice; n must be 1", "n"))
  }
  const system: Array<string> = []
  const turns: Array<Either.Either<AnthropicMessageParam, ProviderError>> = []
  request.messages.forEach((message, i) => {
    if (message.role === "system" || message.role === "developer") system.push(textOf(message.content))
    else turns.push(blocksOf(message, `messages[${i}]`))
  })
  if (request.response_format?.type === "json_object") system.push(jsonObjectInstruction)

  return Either.gen(function*() {
    const params = yield* Either.all(turns)
    const thinking = yield* thinkingOf(request)
    const answerTool = responseFormatToolName(request)
    const tools = toolsOf(request)
    const toolChoice = toolChoiceOf(request, answerTool)
    const systemText = system.filter((text) => text.length > 0).join("\n\n")
    const extras: Readonly<Record<string, unknown>> = request
    const stop = request.stop
    const thinks = thinking !== undefined && thinking["type"] !== "disabled"
    // Thinking takes temperature 1 only, top_p from 0.95, and no top_k: other values are left out.
    const temperature = typeof request.temperature === "number" ? Math.min(1, Math.max(0, request.temperature)) : undefined
    const topP = typeof request.top_p === "number" && (!thinks || request.top_p >= 0.95) ? request.top_p : undefined
    const topK = thinks ? undefined : extras["top_k"]
    const body: AnthropicRequestBody = {
      model: request.model,
      messages: alternate(params),
      max_tokens: maxTokensOf(request, options.defaultMaxTokens, thinking),
      ...(systemText.length > 0 ? { system: systemText } : {}),
      // OpenAI's temperature runs 0–2, Anthropic's 0–1.
      ...(temperature !== undefined && (!thinks || temperature === 1) ? { temperature } : {}),
      ...(topP !== undefined ? { top_p: topP } : {}),
      ...(typeof topK === "number" ? { top_k: topK } : {}),
      ...(stop === undefined || stop === null ? {} : { stop_sequences: typeof stop === "string" ? [stop] : stop }),
      ...(request.user !== undefined ? { metadata: { user_id: request.user } } : {}),
      ...(tools.length > 0 ? { tools } : {}),
      ...(toolChoice !== undefined ? { tool_choice: toolChoice } : {}),
      ...(thinking !== undefined ? { thinking } : {})
    }
    return body
  })
}

/**
 * `max_tokens`, which with thinking must exceed `budget_tokens`: the client's limit when it does (it then bounds
 * thinking and answer together, as OpenAI's reasoning models count it), else the budget plus the client's limit
 * (or the default) for the answer.
 */
const maxTokensOf = (
  request: ChatCompletionRequest,
  defaultMaxTokens: number,
  thinking: Readonly<Record<string, unknown>> | undefined
): number => {
  const asked = request.max_completion_tokens ?? request.max_tokens ?? undefined
  const budget = thinking?.["budget_tokens"]
  if (typeof budget !== "number" || !Number.isSafeInteger(budget) || budget <= 0) return asked ?? defaultMaxTokens
  return asked !== undefined && asked > budget ? asked : budget + (asked ?? defaultMaxTokens)
}
