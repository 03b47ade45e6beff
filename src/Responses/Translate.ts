/**
 * Pure translation between the Responses dialect a client speaks and the chat-completions dialect every provider
 * takes, for deployments that do not speak Responses natively (chat-completions upstreams, Anthropic, Gemini, the
 * mock): the request one way (`toChatRequest`), the answer the other (`toResponse`). The stream's way back is
 * StreamTranslate.ts; both build the response object with `responseObject`.
 */
import { Either, Schema } from "effect"
import type { ChatCompletion, ChatCompletionRequest, ChatMessage, FinishReason, FunctionTool, ResponseFormat, ToolCall, ToolChoice, Usage, UserContentPart } from "../OpenAi/Schemas.js"
import { usageOf } from "../OpenAi/Wire.js"
import { ProviderError } from "../Providers/ProviderError.js"
import { InputItem, knownItem } from "./Wire.js"
import type { ContentPart, FunctionToolParam, KnownItem, ResponsesRequest, ResponseUsage, TextFormat, ToolChoiceParam } from "./Wire.js"

/** The provider named in the failures of the translation (the gateway's own). */
export const translationProvider = "llm-proxy"

const cannotTranslate = (message: string, param: string): ProviderError =>
  new ProviderError({ reason: "InvalidRequest", message, provider: translationProvider, param, code: "invalid_request_error" })

/** Random bytes drawn 4 KiB at a time, 24 per id: one call into the system's generator for 170 ids. */
const randomPool = new Uint8Array(4096)
let randomUsed = randomPool.length

/** A fresh id with OpenAI's prefix (`resp`, `msg`, `fc`, `rs`): 48 hexadecimal digits after it. */
export const freshId = (prefix: string): string => {
  if (randomUsed + 24 > randomPool.length) {
    crypto.getRandomValues(randomPool)
    randomUsed = 0
  }
  const hex = Buffer.from(randomPool.buffer, randomUsed, 24).toString("hex")
  randomUsed += 24
  return `${prefix}_${hex}`
}

/** Where a translation gets its item ids (injected: tests give a deterministic one). */
export type IdSource = (prefix: "msg" | "fc" | "rs") => string

/** Everything a translated response says besides the upstream's answer: its id, public model, time, request. */
export interface ResponseContext {
  readonly id: string
  /** The public model name. */
  readonly model: string
  /** Unix seconds. */
  readonly createdAt: number
  readonly request: ResponsesRequest
  readonly ids: IdSource
}

type Parts = Array<UserContentPart>

const unknownKind = (what: string, type: string, param: string): ProviderError =>
  cannotTranslate(`A ${type} ${what} cannot be sent to this model's deployment (it speaks chat completions, not OpenAI's Responses API)`, `${param}.type`)

/** A content part of a user-side message as chat parts. */
const userPart = (part: ContentPart, param: string): Either.Either<Parts, ProviderError> => {
  switch (part.type) {
    case "input_text":
    case "output_text":
      return Either.right([{ type: "text", text: "text" in part ? String(part.text) : "" }])
    case "refusal":
      return Either.right([{ type: "text", text: "refusal" in part ? String(part.refusal) : "" }])
    case "input_image": {
      const url = "image_url" in part ? part.image_url : undefined
      if (typeof url !== "string" || url.length === 0) return Either.left(cannotTranslate("An input_image needs an image_url for this model's deployment (file ids are OpenAI's own)", `${param}.image_url`))
      const detail = "detail" in part ? part.detail : undefined
      return Either.right([{ type: "image_url", image_url: detail === undefined ? { url } : { url, detail } }])
    }
    case "input_file": {
      const data = "file_data" in part ? part.file_data : undefined
      if (typeof data !== "string" || data.length === 0) return Either.left(cannotTranslate("An input_file needs file_data for this model's deployment (file ids and URLs are OpenAI's own)", `${param}.file_data`))
      const filename = "filename" in part ? part.filename : undefined
      return Either.right([{ type: "file", file: typeof filename === "string" ? { file_data: data, filename } : { file_data: data } }])
    }
    default:
      return Either.left(unknownKind("content part", part.type, param))
  }
}

const textOf = (parts: Parts): string | Parts => (parts.every((part) => part.type === "text") ? parts.map((part) => (part.type === "text" ? part.text : "")).join("\n") : parts)

/** An assistant message being built from consecutive items (reasoning, message, function calls). */
interface AssistantDraft {
  texts: Array<string>
  calls: Array<ToolCall>
  thoughts: Array<string>
}

/** The items of a conversation as chat messages: consecutive assistant-side items make one assistant message. */
export const messagesOfItems = (items: ReadonlyArray<InputItem>, paramOf: (index: number) => string): Either.Either<Array<ChatMessage>, ProviderError> => {
  const messages: Array<ChatMessage> = []
  let draft: AssistantDraft | undefined
  const flush = () => {
    if (draft === undefined) return
    const { calls, texts, thoughts } = draft
    draft = undefined
    if (texts.length === 0 && calls.length === 0) return
    messages.push({
      role: "assistant",
      content: texts.length > 0 ? texts.join("") : null,
      ...(calls.length > 0 ? { tool_calls: calls } : {}),
      ...(thoughts.length > 0 ? { reasoning_content: thoughts.join("") } : {})
    })
  }
  const assistant = (): AssistantDraft => (draft ??= { texts: [], calls: [], thoughts: [] })
  for (let i = 0; i < items.length; i++) {
    const given = items[i]!
    const param = paramOf(i)
    const item: KnownItem | undefined = knownItem(given)
    if (item === undefined) return Either.left(unknownKind("item", String((given as { readonly type: string }).type), param))
    switch (item.type) {
      case "function_call":
        // A call continues the assistant turn its text began; a text after calls begins another turn.
        assistant().calls.push({ id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } })
        continue
      case "reasoning": {
        if (draft !== undefined && (draft.texts.length > 0 || draft.calls.length > 0)) flush()
        const text = (item.content ?? []).map((part) => part.text).join("") || (item.summary ?? []).map((part) => part.text).join("\n")
        if (text.length > 0) assistant().thoughts.push(text)
        continue
      }
      case "function_call_output": {
        flush()
        if (typeof item.output === "string") {
          messages.push({ role: "tool", tool_call_id: item.call_id, content: item.output })
          continue
        }
        const texts: Array<string> = []
        const images: Parts = []
        for (let j = 0; j < item.output.length; j++) {
          const parts = userPart(item.output[j]!, `${param}.output[${j}]`)
          if (Either.isLeft(parts)) return Either.left(parts.left)
          for (const part of parts.right) part.type === "text" ? texts.push(part.text) : images.push(part)
        }
        messages.push({ role: "tool", tool_call_id: item.call_id, content: texts.join("\n") })
        if (images.length > 0) messages.push({ role: "user", content: images })
        continue
      }
      default: {
        // A message item (its `type` may be left out).
        if (item.role === "assistant") {
          const draftNow = draft !== undefined && draft.calls.length > 0 ? (flush(), assistant()) : assistant()
          if (typeof item.content === "string") draftNow.texts.push(item.content)
          else {
            for (let j = 0; j < item.content.length; j++) {
              const part = item.content[j]!
              if (part.type === "output_text" || part.type === "input_text") draftNow.texts.push("text" in part ? String(part.text) : "")
              else if (part.type === "refusal") draftNow.texts.push("refusal" in part ? String(part.refusal) : "")
              else return Either.left(unknownKind("content part", part.type, `${param}.content[${j}]`))
            }
          }
          continue
        }
        flush()
        if (typeof item.content === "string") {
          messages.push(item.role === "user" ? { role: "user", content: item.content } : { role: item.role, content: item.content })
          continue
        }
        const parts: Parts = []
        for (let j = 0; j < item.content.length; j++) {
          const converted = userPart(item.content[j]!, `${param}.content[${j}]`)
          if (Either.isLeft(converted)) return Either.left(converted.left)
          parts.push(...converted.right)
        }
        const content = textOf(parts)
        if (item.role === "user") messages.push({ role: "user", content })
        else if (typeof content === "string") messages.push({ role: item.role, content })
        else return Either.left(cannotTranslate(`A ${item.role} message takes text parts only`, `${param}.content`))
      }
    }
  }
  flush()
  return Either.right(messages)
}

const decodeItems = Schema.decodeUnknownEither(Schema.Array(InputItem))

/** The request's input as items: a string is one user message. */
export const inputItemsOf = (request: ResponsesRequest): ReadonlyArray<InputItem> =>
  request.input === undefined ? [] : typeof request.input === "string" ? [{ type: "message", role: "user", content: request.input }] : request.input

const toolOf = (tool: FunctionToolParam): FunctionTool => ({
  type: "function",
  function: {
    name: tool.name,
    ...(typeof tool.description === "string" ? { description: tool.description } : {}),
    ...(tool.parameters == null ? {} : { parameters: tool.parameters }),
    ...(tool.strict == null ? {} : { strict: tool.strict })
  }
})

const toolChoiceOf = (choice: ToolChoiceParam): ToolChoice => (typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } })

const responseFormatOf = (format: TextFormat): ResponseFormat => {
  switch (format.type) {
    case "text":
      return { type: "text" }
    case "json_object":
      return { type: "json_object" }
    case "json_schema":
      return {
        type: "json_schema",
        json_schema: {
          name: format.name,
          schema: format.schema,
          ...(format.description === undefined ? {} : { description: format.description }),
          ...(format.strict === undefined ? {} : { strict: format.strict })
        }
      }
  }
}

/** The function tools of a request (the edge has refused any other kind). */
export const functionToolsOf = (request: ResponsesRequest): ReadonlyArray<FunctionToolParam> => (request.tools ?? []) as ReadonlyArray<FunctionToolParam>

/**
 * A Responses request as a chat-completions request for `model` (the deployment's upstream model): instructions as
 * the system message, `history` (what `previous_response_id` stood for) then the input as messages. Fails with
 * `InvalidRequest` naming the item the chat dialect cannot carry.
 */
export const toChatRequest = (request: ResponsesRequest, history: ReadonlyArray<unknown>, model: string): Either.Either<ChatCompletionRequest, ProviderError> =>
  Either.gen(function* () {
    const messages: Array<ChatMessage> = []
    if (typeof request.instructions === "string" && request.instructions.length > 0) messages.push({ role: "system", content: request.instructions })
    const earlier = yield* Either.mapLeft(decodeItems(history), () => cannotTranslate("The stored conversation of previous_response_id cannot be sent to this model's deployment", "previous_response_id"))
    messages.push(...(yield* messagesOfItems(earlier, () => "previous_response_id")))
    messages.push(...(yield* messagesOfItems(inputItemsOf(request), (index) => (typeof request.input === "string" ? "input" : `input[${index}]`))))
    if (messages.every((message) => message.role === "system" || message.role === "developer")) {
      return yield* Either.left(cannotTranslate("input must contain at least one message or item", "input"))
    }
    const tools = functionToolsOf(request).map(toolOf)
    const format = request.text?.format
    const effort = request.reasoning?.effort
    const chat: ChatCompletionRequest = {
      model,
      messages,
      ...(request.max_output_tokens == null ? {} : { max_completion_tokens: request.max_output_tokens }),
      ...(request.temperature == null ? {} : { temperature: request.temperature }),
      ...(request.top_p == null ? {} : { top_p: request.top_p }),
      ...(request.user === undefined ? {} : { user: request.user }),
      ...(tools.length > 0 ? { tools } : {}),
      ...(tools.length > 0 && request.tool_choice !== undefined ? { tool_choice: toolChoiceOf(request.tool_choice) } : {}),
      ...(tools.length > 0 && request.parallel_tool_calls != null ? { parallel_tool_calls: request.parallel_tool_calls } : {}),
      ...(format === undefined || format.type === "text" ? {} : { response_format: responseFormatOf(format) }),
      ...(effort == null ? {} : { reasoning_effort: effort }),
      ...(request.stream === true ? { stream: true } : {})
    }
    return chat
  })

/** OpenAI's chat usage as a response's. */
export const responseUsageOf = (usage: Usage | undefined | null): ResponseUsage | undefined => {
  if (usage === undefined || usage === null) return undefined
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0, cache_write_tokens: 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: usage.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: usage.prompt_tokens + usage.completion_tokens
  }
}

/** A chat finish reason as a response's status and, when cut short, why. */
export const statusOf = (finish: FinishReason | null | undefined): { readonly status: "completed" | "incomplete"; readonly reason: string | undefined } =>
  finish === "length" ? { status: "incomplete", reason: "max_output_tokens" } : finish === "content_filter" ? { status: "incomplete", reason: "content_filter" } : { status: "completed", reason: undefined }

/** The request's function tools as a response echoes them. */
const echoedTools = (request: ResponsesRequest) =>
  functionToolsOf(request).map((tool) => ({
    type: "function",
    name: tool.name,
    description: tool.description ?? null,
    parameters: tool.parameters ?? null,
    strict: tool.strict ?? null
  }))

/**
 * The response object: the answer's status, output and usage, and the request's settings it echoes as OpenAI's
 * does. `error` is set on a failed response.
 */
export const responseObject = (
  ctx: ResponseContext,
  state: {
    readonly status: "in_progress" | "completed" | "incomplete" | "failed"
    readonly output: ReadonlyArray<Readonly<Record<string, unknown>>>
    readonly usage?: ResponseUsage | undefined
    readonly incompleteReason?: string | undefined
    readonly error?: { readonly code: string; readonly message: string } | undefined
  }
): Record<string, unknown> => {
  const request = ctx.request
  return {
    id: ctx.id,
    object: "response",
    created_at: ctx.createdAt,
    status: state.status,
    background: false,
    error: state.error ?? null,
    incomplete_details: state.incompleteReason === undefined ? null : { reason: state.incompleteReason },
    instructions: request.instructions ?? null,
    max_output_tokens: request.max_output_tokens ?? null,
    model: ctx.model,
    output: state.output,
    parallel_tool_calls: request.parallel_tool_calls ?? true,
    previous_response_id: request.previous_response_id ?? null,
    reasoning: { effort: request.reasoning?.effort ?? null, summary: null },
    store: request.store ?? true,
    temperature: request.temperature ?? 1,
    text: { format: request.text?.format ?? { type: "text" } },
    tool_choice: request.tool_choice ?? "auto",
    tools: echoedTools(request),
    top_p: request.top_p ?? 1,
    truncation: "disabled",
    // Absent rather than null, as OpenAI's schema has them (a response in progress has no usage yet).
    ...(state.usage === undefined ? {} : { usage: state.usage }),
    ...(request.user === undefined ? {} : { user: request.user }),
    metadata: request.metadata ?? {}
  }
}

/** A message item of the answer: text as one `output_text` part, a refusal as a `refusal` part. */
export const messageItem = (id: string, status: string, parts: ReadonlyArray<Readonly<Record<string, unknown>>>): Record<string, unknown> => ({
  id,
  type: "message",
  role: "assistant",
  status,
  content: parts
})

export const outputTextPart = (text: string): Record<string, unknown> => ({ type: "output_text", text, annotations: [], logprobs: [] })

export const refusalPart = (refusal: string): Record<string, unknown> => ({ type: "refusal", refusal })

export const reasoningItem = (id: string, text: string): Record<string, unknown> => ({ id, type: "reasoning", summary: [], content: [{ type: "reasoning_text", text }] })

export const functionCallItem = (id: string, callId: string, name: string, args: string, status: string): Record<string, unknown> => ({
  id,
  type: "function_call",
  status,
  arguments: args,
  call_id: callId,
  name
})

/** A chat completion as a response object: reasoning, the message, the function calls, status and usage. */
export const toResponse = (completion: ChatCompletion, ctx: ResponseContext): Record<string, unknown> => {
  const choice = completion.choices[0]
  const message = choice?.message
  const { reason, status } = statusOf(choice?.finish_reason)
  const output: Array<Record<string, unknown>> = []
  if (message !== undefined) {
    if (typeof message.reasoning_content === "string" && message.reasoning_content.length > 0) output.push(reasoningItem(ctx.ids("rs"), message.reasoning_content))
    const parts: Array<Record<string, unknown>> = []
    if (typeof message.content === "string" && message.content.length > 0) parts.push(outputTextPart(message.content))
    if (typeof message.refusal === "string" && message.refusal.length > 0) parts.push(refusalPart(message.refusal))
    if (parts.length > 0) output.push(messageItem(ctx.ids("msg"), status === "incomplete" ? "incomplete" : "completed", parts))
    for (const call of message.tool_calls ?? []) output.push(functionCallItem(ctx.ids("fc"), call.id, call.function.name, call.function.arguments, "completed"))
  }
  return responseObject(ctx, { status, output, usage: responseUsageOf(usageOf(completion.usage)), incompleteReason: reason })
}
