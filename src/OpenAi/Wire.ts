/**
 * What an OpenAI-compatible upstream sends, checked before anything of it reaches a client: a completion or a
 * chunk must have the shape the spec gives it (choices are objects, deltas are objects, finish reasons are the
 * spec's, usage counts are non-negative integers), or it is refused as malformed. Fields the spec declares but the
 * gateway does not read (logprobs, system_fingerprint, service_tier, moderation, annotations…) are dropped when
 * malformed rather than refused: the answer survives, the decoration does not. Unknown fields pass through.
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
/**
 * Told, in order, the JSON text of each whole chunk a stream writer serialized: the response cache keeps what was
 * sent without serializing every chunk a second time.
 */
export interface ChunkTextSink {
  readonly wrote: (chunk: ChatCompletionChunk, json: string) => void
}

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
  const promptDetails = detailsOf(value["prompt_tokens_details"])
  const completionDetails = detailsOf(value["completion_tokens_details"])
  if (isCount(total) && promptDetails === value["prompt_tokens_details"] && completionDetails === value["completion_tokens_details"]) {
    return value as unknown as Usage
  }
  // A total past 2^53 is no count either.
  if (!isCount(total) && !isCount(prompt + completion)) return undefined
  const fixed: JsonObject = { ...value, total_tokens: isCount(total) ? total : prompt + completion }
  if (promptDetails === undefined) delete fixed["prompt_tokens_details"]
  else fixed["prompt_tokens_details"] = promptDetails
  if (completionDetails === undefined) delete fixed["completion_tokens_details"]
  else fixed["completion_tokens_details"] = completionDetails
  return fixed as unknown as Usage
}

/**
 * Token details are objects of counts: the value itself when every entry is a count, else a copy with only the
 * entries that are (a `null` or garbage count is unknown, not zero); anything but an object is dropped.
 */
const detailsOf = (value: unknown): JsonObject | undefined => {
  if (!isObject(value)) return undefined
  const counts = Object.entries(value).filter(([, count]) => isCount(count))
  return counts.length === Object.keys(value).length ? value : Object.fromEntries(counts)
}

const isOptionalText = (value: unknown): boolean => value === undefined || value === null || typeof value === "string"

/** A copy of `value` without its `null` fields among `fields`, or `value` itself when it has none. */
const withoutNulls = (value: JsonObject, fields: ReadonlyArray<string>): JsonObject => {
  if (!fields.some((field) => value[field] === null)) return value
  const copy = { ...value }
  for (const field of fields) if (copy[field] === null) delete copy[field]
  return copy
}

/** The tool type a call may name: `function`, or none (then it is one). */
const isFunctionType = (value: unknown): boolean => value === undefined || value === null || value === "function"

/**
 * Tool call deltas as the spec allows them (`null` where a field is merely absent is dropped), or what is wrong
 * with them; `undefined` when there are none.
 */
const toolCallDeltasOf = (value: unknown): ReadonlyArray<unknown> | undefined | string => {
  if (value === undefined || value === null) return undefined
  if (!Array.isArray(value)) return "tool call deltas that are not an array"
  let fixed: Array<unknown> | undefined
  for (let index = 0; index < value.length; index++) {
    const call: unknown = value[index]
    if (!isObject(call) || !isCount(call["index"])) return "a tool call delta without an index"
    if (!isOptionalText(call["id"]) || !isFunctionType(call["type"])) return "a tool call delta with a malformed id or type"
    const fn = call["function"]
    if (fn !== undefined && fn !== null && !(isObject(fn) && isOptionalText(fn["name"]) && isOptionalText(fn["arguments"]))) {
      return "a tool call delta with a malformed function"
    }
    let next = withoutNulls(call, ["id", "type", "function"])
    if (isObject(fn)) {
      const fixedFn = withoutNulls(fn, ["name", "arguments"])
      if (fixedFn !== fn) next = { ...next, function: fixedFn }
    }
    if (next !== call) {
      fixed ??= [...value]
      fixed[index] = next
    }
  }
  return fixed ?? value
}

/** Tool calls of a completion message as the spec allows them (a missing `type` is `function`), or what is wrong. */
const toolCallsOf = (value: unknown): ReadonlyArray<unknown> | undefined | string => {
  if (value === undefined || value === null) return undefined
  if (!Array.isArray(value)) return "tool calls that are not an array"
  let fixed: Array<unknown> | undefined
  for (let index = 0; index < value.length; index++) {
    const call: unknown = value[index]
    if (
      !isObject(call) ||
      typeof call["id"] !== "string" ||
      !isFunctionType(call["type"]) ||
      !isObject(call["function"]) ||
      typeof call["function"]["name"] !== "string" ||
      typeof call["function"]["arguments"] !== "string"
    ) {
      return "malformed tool calls"
    }
    if (call["type"] !== "function") {
      fixed ??= [...value]
      fixed[index] = { ...call, type: "function" }
    }
  }
  return fixed ?? value
}

// Fields the spec declares and the gateway never reads: checked so that a malformed one is dropped, not relayed.

const isString = (value: unknown): value is string => typeof value === "string"
const isInteger = (value: unknown): boolean => typeof value === "number" && Number.isSafeInteger(value)
const isFiniteNumber = (value: unknown): boolean => typeof value === "number" && Number.isFinite(value)
const isBoolean = (value: unknown): boolean => typeof value === "boolean"
const arrayOf = (item: (value: unknown) => boolean) => (value: unknown): boolean => Array.isArray(value) && value.every(item)
const nullOr = (check: (value: unknown) => boolean) => (value: unknown): boolean => value === null || check(value)
const mapOf = (item: (value: unknown) => boolean) => (value: unknown): boolean => isObject(value) && Object.values(value).every(item)
const fields = (checks: Readonly<Record<string, (value: unknown) => boolean>>) => (value: unknown): boolean =>
  isObject(value) && Object.entries(checks).every(([field, check]) => check(value[field]))
const optional = (check: (value: unknown) => boolean) => (value: unknown): boolean => value === undefined || check(value)

const isTopLogprob = fields({ token: isString, logprob: isFiniteNumber, bytes: nullOr(arrayOf(isInteger)) })
const isTokenLogprob = (value: unknown): boolean => isTopLogprob(value) && arrayOf(isTopLogprob)((value as JsonObject)["top_logprobs"])
const isLogprobList = (value: unknown): boolean => value === undefined || value === null || arrayOf(isTokenLogprob)(value)

/** A choice's logprobs as the spec allows them (`content` and `refusal` present, null when absent), else `null`. */
const logprobsOf = (value: unknown): unknown => {
  if (!isObject(value) || !isLogprobList(value["content"]) || !isLogprobList(value["refusal"])) return null
  return value["content"] !== undefined && value["refusal"] !== undefined
    ? value
    : { ...value, content: value["content"] ?? null, refusal: value["refusal"] ?? null }
}

const serviceTiers: ReadonlySet<unknown> = new Set(["auto", "default", "flex", "scale", "priority", "fast", null])
const isModerationResult = fields({
  type: (value) => value === "moderation_result",
  model: isString,
  flagged: isBoolean,
  categories: mapOf(isBoolean),
  category_scores: mapOf(isFiniteNumber),
  category_applied_input_types: mapOf(arrayOf((type) => type === "text" || type === "image"))
})
const isModerationOutcome = (value: unknown): boolean =>
  fields({ type: (type) => type === "moderation_results", model: isString, results: arrayOf(isModerationResult) })(value) ||
  fields({ type: (type) => type === "error", code: isString, message: isString })(value)

/** Top-level fields of chunks and completions: what each must be to be kept. */
const envelopeDecorations: Readonly<Record<string, (value: unknown) => boolean>> = {
  system_fingerprint: isString,
  service_tier: (value) => serviceTiers.has(value),
  obfuscation: isString,
  moderation: nullOr(fields({ input: isModerationOutcome, output: isModerationOutcome }))
}
const completionDecorations: Readonly<Record<string, (value: unknown) => boolean>> = {
  ...envelopeDecorations,
  metadata: nullOr(mapOf(isString))
}
const messageDecorations: Readonly<Record<string, (value: unknown) => boolean>> = {
  function_call: fields({ name: isString, arguments: isString }),
  annotations: arrayOf(
    fields({
      type: (type) => type === "url_citation",
      url_citation: fields({ end_index: isInteger, start_index: isInteger, url: isString, title: isString })
    })
  ),
  audio: nullOr(fields({ id: isString, expires_at: isInteger, data: isString, transcript: isString }))
}
const deltaDecorations: Readonly<Record<string, (value: unknown) => boolean>> = {
  function_call: fields({ name: optional(isString), arguments: optional(isString) })
}

/** A copy of `value` (made once, into `copy`) without the decorations that are present and malformed. */
const withoutBadDecorations = (
  value: JsonObject,
  copy: JsonObject | undefined,
  checks: Readonly<Record<string, (value: unknown) => boolean>>
): JsonObject | undefined => {
  let target = copy
  for (const field in checks) {
    if (value[field] !== undefined && !checks[field]!(value[field])) target = withField(value, target, field, undefined)
  }
  return target
}

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
  } else if (value["usage"] === null && object === "chat.completion") {
    // A chunk may say `usage: null`; a completion's usage is an object or absent.
    copy = withField(value, copy, "usage", undefined)
  }
  copy = withoutBadDecorations(value, copy, object === "chat.completion" ? completionDecorations : envelopeDecorations)
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
    const toolCalls = toolCallDeltasOf(delta["tool_calls"])
    if (typeof toolCalls === "string") return toolCalls
    if (delta["reasoning_content"] !== undefined && !isOptionalText(delta["reasoning_content"])) return "reasoning content that is not text"
    let fixedDelta: JsonObject | undefined
    if (delta["role"] !== undefined && delta["role"] !== "assistant") fixedDelta = withField(delta, fixedDelta, "role", "assistant")
    if (toolCalls !== delta["tool_calls"]) fixedDelta = withField(delta, fixedDelta, "tool_calls", toolCalls)
    fixedDelta = withoutBadDecorations(delta, fixedDelta, deltaDecorations)
    if (fixedDelta !== undefined) copy = withField(choice, copy, "delta", fixedDelta)
  }
  if (choice["logprobs"] !== undefined && choice["logprobs"] !== null) {
    const logprobs = logprobsOf(choice["logprobs"])
    if (logprobs !== choice["logprobs"]) copy = withField(choice, copy, "logprobs", logprobs)
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
  const toolCalls = toolCallsOf(message["tool_calls"])
  if (typeof toolCalls === "string") return toolCalls
  if (message["reasoning_content"] !== undefined && !isOptionalText(message["reasoning_content"])) return "reasoning content that is not text"
  let copy: JsonObject | undefined
  if (!isCount(choice["index"])) copy = withField(choice, copy, "index", position)
  let fixedMessage: JsonObject | undefined
  if (message["role"] !== "assistant") fixedMessage = withField(message, fixedMessage, "role", "assistant")
  // The spec requires both, null when there is none.
  if (message["content"] === undefined) fixedMessage = withField(message, fixedMessage, "content", null)
  if (message["refusal"] === undefined) fixedMessage = withField(message, fixedMessage, "refusal", null)
  if (toolCalls !== message["tool_calls"]) fixedMessage = withField(message, fixedMessage, "tool_calls", toolCalls)
  fixedMessage = withoutBadDecorations(message, fixedMessage, messageDecorations)
  if (fixedMessage !== undefined) copy = withField(choice, copy, "message", fixedMessage)
  // A completion always says why it stopped: a reason missing (or null) is a normal stop.
  const finish = finishReasonOf(choice["finish_reason"]) ?? "stop"
  if (finish !== choice["finish_reason"]) copy = withField(choice, copy, "finish_reason", finish)
  const logprobs = choice["logprobs"] === undefined || choice["logprobs"] === null ? null : logprobsOf(choice["logprobs"])
  if (logprobs !== choice["logprobs"]) copy = withField(choice, copy, "logprobs", logprobs)
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
    const reasoning = message.reasoning_content
    chunks.push({ ...base, choices: [{ index: choice.index, delta: { role: "assistant", content: "" }, finish_reason: null }] })
    if (typeof reasoning === "string" && reasoning.length > 0) {
      chunks.push({ ...base, choices: [{ index: choice.index, delta: { reasoning_content: reasoning }, finish_reason: null }] })
    }
    if (message.thinking_blocks !== undefined && message.thinking_blocks.length > 0) {
      chunks.push({ ...base, choices: [{ index: choice.index, delta: { thinking_blocks: message.thinking_blocks }, finish_reason: null }] })
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
              // Whatever rides with a call (e.g. `extra_content`) stays with it.
              tool_calls: toolCalls.map((call, index) => ({ ...call, index, type: "function" as const, function: { name: call.function.name, arguments: call.function.arguments } }))
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
