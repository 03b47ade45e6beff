/**
 * What an OpenAI-compatible upstream sends, checked before anything of it reaches a client: a completion or a
 * chunk must have the shape the spec gives it (choices are objects, deltas are objects, finish reasons are the
 * spec's, usage counts are non-negative integers), or it is refused as malformed. Unknown fields pass through.
 * Hand-written rather than a Schema decode: this runs on every chunk of every stream, and a valid chunk (the
 * common case) is returned as it is, without a copy.
 */
import type { ChatCompletion, ChatCompletionChunk, FinishReason, Usage } from "./Schemas.js"

type JsonObject = Record<string, unknown>

const isObject = (value: unknown): value is JsonObject => typeof value === "object" && value !== null && !Array.isArray(value)

const finishReasons: ReadonlySet<string> = new Set(["stop", "length", "tool_calls", "content_filter", "function_call"])

/**
 * A finish reason as the spec allows it. Servers invent their own (`eos`, `end_turn`, `abort`…): a reason that
 * names a length limit is `length`, anything else unknown is `stop`.
 */
export const finishReasonOf = (value: unknown): FinishReason | null | undefined => {
  if (value === null || value === undefined) return value
  if (typeof value !== "string") return undefined
  if (finishReasons.has(value)) return value as FinishReason
  return /length|max_tokens|token_limit/i.test(value) ? "length" : "stop"
}

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0

/**
 * Usage as the spec allows it, or `undefined`: counts that are not non-negative safe integers (`"abc"`, `-1e6`,
 * `1e308`) make the whole usage unknown rather than wrong.
 */
export const usageOf = (value: unknown): Usage | undefined => {
  if (!isObject(value)) return undefined
  const prompt = value["prompt_tokens"]
  const completion = value["completion_tokens"]
  if (!isCount(prompt) || !isCount(completion)) return undefined
  const total = value["total_tokens"]
  const promptDetails = validDetails(value["prompt_tokens_details"])
  const completionDetails = validDetails(value["completion_tokens_details"])
  if (isCount(total) && promptDetails && completionDetails) return value as unknown as Usage
  const fixed: JsonObject = { ...value, total_tokens: isCount(total) ? total : prompt + completion }
  if (!promptDetails) delete fixed["prompt_tokens_details"]
  if (!completionDetails) delete fixed["completion_tokens_details"]
  return fixed as unknown as Usage
}

/** Token details are objects of counts (null where unknown); anything else is dropped. */
const validDetails = (value: unknown): boolean =>
  value === undefined || (isObject(value) && Object.values(value).every((count) => count === null || isCount(count)))

const isOptionalText = (value: unknown): boolean => value === undefined || value === null || typeof value === "string"

const validToolCallDeltas = (value: unknown): boolean =>
  value === undefined ||
  value === null ||
  (Array.isArray(value) &&
    value.every(
      (call) =>
        isObject(call) &&
        isCount(call["index"]) &&
        (call["id"] === undefined || call["id"] === null || typeof call["id"] === "string") &&
        (call["function"] === undefined ||
          (isObject(call["function"]) && isOptionalText(call["function"]["name"]) && isOptionalText(call["function"]["arguments"])))
    ))

const validToolCalls = (value: unknown): boolean =>
  value === undefined ||
  value === null ||
  (Array.isArray(value) &&
    value.every(
      (call) =>
        isObject(call) &&
        typeof call["id"] === "string" &&
        isObject(call["function"]) &&
        typeof call["function"]["name"] === "string" &&
        typeof call["function"]["arguments"] === "string"
    ))

/** Sets `field` of a copy (made once) of `value`. */
const withField = (value: JsonObject, copy: JsonObject | undefined, field: string, fieldValue: unknown): JsonObject => {
  const target = copy ?? { ...value }
  if (fieldValue === undefined) delete target[field]
  else target[field] = fieldValue
  return target
}

/** Checks the fields a completion and a chunk share; returns the fixed copy, the value itself, or what is wrong. */
const checkEnvelope = (value: JsonObject, object: string): JsonObject | string => {
  let copy: JsonObject | undefined
  if (value["object"] !== object) {
    if (value["object"] !== undefined) return `an object of type ${JSON.stringify(String(value["object"]).slice(0, 40))}`
    copy = withField(value, copy, "object", object)
  }
  if (typeof value["id"] !== "string") {
    if (value["id"] !== undefined) return "an id that is not a string"
    copy = withField(value, copy, "id", "chatcmpl-upstream")
  }
  if (!isCount(value["created"])) copy = withField(value, copy, "created", Math.floor(Date.now() / 1000))
  if (typeof value["model"] !== "string") copy = withField(value, copy, "model", "")
  if (!Array.isArray(value["choices"])) return "no choices array"
  if (value["usage"] !== undefined && value["usage"] !== null) {
    const usage = usageOf(value["usage"])
    if (usage !== value["usage"]) copy = withField(value, copy, "usage", usage)
  }
  return copy ?? value
}

/** One choice of a chunk: the value, a fixed copy, or what is wrong. */
const checkChunkChoice = (choice: unknown, position: number): JsonObject | string => {
  if (!isObject(choice)) return "a choice that is not an object"
  let copy: JsonObject | undefined
  if (!isCount(choice["index"])) copy = withField(choice, copy, "index", position)
  const delta = choice["delta"]
  if (delta === undefined || delta === null) copy = withField(choice, copy, "delta", {})
  else if (!isObject(delta)) return "a delta that is not an object"
  else {
    if (!isOptionalText(delta["content"]) || !isOptionalText(delta["refusal"])) return "delta content that is not text"
    if (!validToolCallDeltas(delta["tool_calls"])) return "malformed tool call deltas"
    if (delta["role"] !== undefined && delta["role"] !== "assistant") {
      copy = withField(choice, copy, "delta", { ...delta, role: "assistant" })
    }
    if (delta["reasoning_content"] !== undefined && !isOptionalText(delta["reasoning_content"])) return "reasoning content that is not text"
  }
  const finish = finishReasonOf(choice["finish_reason"])
  if (finish !== choice["finish_reason"] || finish === undefined) copy = withField(choice, copy, "finish_reason", finish ?? null)
  return copy ?? choice
}

/** An upstream stream event as a spec-valid chunk, or what is wrong with it. */
export const chunkOf = (value: unknown): ChatCompletionChunk | string => {
  if (!isObject(value)) return "a stream event that is not an object"
  const checked = checkEnvelope(value, "chat.completion.chunk")
  if (typeof checked === "string") return checked
  const choices = checked["choices"] as ReadonlyArray<unknown>
  let fixedChoices: Array<unknown> | undefined
  for (let index = 0; index < choices.length; index++) {
    const choice = checkChunkChoice(choices[index], index)
    if (typeof choice === "string") return choice
    if (choice !== choices[index]) {
      fixedChoices ??= [...choices]
      fixedChoices[index] = choice
    }
  }
  if (fixedChoices === undefined) return checked as unknown as ChatCompletionChunk
  return { ...checked, choices: fixedChoices } as unknown as ChatCompletionChunk
}

const checkCompletionChoice = (choice: unknown, position: number): JsonObject | string => {
  if (!isObject(choice)) return "a choice that is not an object"
  const message = choice["message"]
  if (!isObject(message)) return "a choice without a message object"
  if (!isOptionalText(message["content"]) || !isOptionalText(message["refusal"])) return "message content that is not text"
  if (!validToolCalls(message["tool_calls"])) return "malformed tool calls"
  if (message["reasoning_content"] !== undefined && !isOptionalText(message["reasoning_content"])) return "reasoning content that is not text"
  let copy: JsonObject | undefined
  if (!isCount(choice["index"])) copy = withField(choice, copy, "index", position)
  if (message["role"] !== "assistant" || message["content"] === undefined) {
    copy = withField(choice, copy, "message", { ...message, role: "assistant", content: message["content"] ?? null })
  }
  const finish = finishReasonOf(choice["finish_reason"])
  if (finish !== choice["finish_reason"] || finish === undefined) copy = withField(choice, copy, "finish_reason", finish ?? null)
  if (choice["logprobs"] === undefined) copy = withField(choice, copy, "logprobs", null)
  return copy ?? choice
}

/** An upstream answer as a spec-valid completion, or what is wrong with it. */
export const completionOf = (value: unknown): ChatCompletion | string => {
  if (!isObject(value)) return "a body that is not a chat.completion"
  const checked = checkEnvelope(value, "chat.completion")
  if (typeof checked === "string") return checked
  const choices = checked["choices"] as ReadonlyArray<unknown>
  let fixedChoices: Array<unknown> | undefined
  for (let index = 0; index < choices.length; index++) {
    const choice = checkCompletionChoice(choices[index], index)
    if (typeof choice === "string") return choice
    if (choice !== choices[index]) {
      fixedChoices ??= [...choices]
      fixedChoices[index] = choice
    }
  }
  if (fixedChoices === undefined) return checked as unknown as ChatCompletion
  return { ...checked, choices: fixedChoices } as unknown as ChatCompletion
}

/**
 * A completion told as the stream a real upstream would have sent: per choice, the role, the content, the tool
 * calls and the finish reason; then usage on its own chunk. For upstreams that answer JSON to a stream request.
 */
export const chunksOfCompletion = (completion: ChatCompletion): ReadonlyArray<ChatCompletionChunk> => {
  const base = { id: completion.id, object: "chat.completion.chunk" as const, created: completion.created, model: completion.model }
  const chunks: Array<ChatCompletionChunk> = []
  for (const choice of completion.choices) {
    const { message } = choice
    const reasoning = (message as { readonly reasoning_content?: unknown }).reasoning_content
    chunks.push({ ...base, choices: [{ index: choice.index, delta: { role: "assistant", content: "" }, finish_reason: null }] })
    if (typeof reasoning === "string" && reasoning.length > 0) {
      chunks.push({ ...base, choices: [{ index: choice.index, delta: { reasoning_content: reasoning } as ChatCompletionChunk["choices"][number]["delta"], finish_reason: null }] })
    }
    if (typeof message.content === "string" && message.content.length > 0) {
      chunks.push({ ...base, choices: [{ index: choice.index, delta: { content: message.content }, finish_reason: null }] })
    }
    if (message.refusal != null && message.refusal.length > 0) {
      chunks.push({ ...base, choices: [{ index: choice.index, delta: { refusal: message.refusal }, finish_reason: null }] })
    }
    const toolCalls = message.tool_calls ?? []
    if (toolCalls.length > 0) {
      chunks.push({
        ...base,
        choices: [
          {
            index: choice.index,
            delta: {
              tool_calls: toolCalls.map((call, index) => ({ index, id: call.id, type: "function" as const, function: { name: call.function.name, arguments: call.function.arguments } }))
            },
            finish_reason: null
          }
        ]
      })
    }
    chunks.push({ ...base, choices: [{ index: choice.index, delta: {}, finish_reason: choice.finish_reason ?? "stop" }] })
  }
  if (completion.usage !== undefined) chunks.push({ ...base, choices: [], usage: completion.usage })
  return chunks
}
