/**
 * The common chat request — text messages and scalar settings — recognised without the Schema decoder, whose
 * general machinery cost ~14 µs of every request in the profiles. It accepts only what `ChatCompletionRequest`
 * decodes to itself (no field whose decoding drops excess properties, no content parts, tools or tool calls), so
 * that accepting is the same as decoding; anything else, valid or not, is left to the Schema, which also words the
 * 400. A property test holds the two to the same answers.
 */
import type { ChatCompletionRequest } from "./Schemas.js"

type Check = (value: unknown) => boolean

/**
 * A JSON object, without an own `__proto__` key: JSON.parse makes one from `"__proto__": …`, the Schema's decoding
 * leaves it out, so such an object goes to the Schema.
 */
export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !Object.hasOwn(value, "__proto__")

const isString: Check = (value) => typeof value === "string"
const isBoolean: Check = (value) => typeof value === "boolean"
const isInt = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value)
const numberBetween = (min: number, max: number): Check => (value) => typeof value === "number" && value >= min && value <= max
const intBetween = (min: number, max: number): Check => (value) => isInt(value) && value >= min && value <= max
const orNull = (check: Check): Check => (value) => value === null || check(value)

const isStop: Check = (value) =>
  value === null || typeof value === "string" || (Array.isArray(value) && value.length <= 4 && value.every(isString))

const isStreamOptions: Check = (value) => value === null || (isRecord(value) && (value["include_usage"] === undefined || isBoolean(value["include_usage"])))

/**
 * The settings recognised here and their checks, as `ChatCompletionRequest` declares them. A request field the Schema
 * declares but that is missing here (`tools`, `tool_choice`, `response_format`, `logit_bias`) sends the request to
 * the Schema; a field it does not declare is kept as it is, as the Schema keeps it.
 */
const settings: ReadonlyMap<string, Check> = new Map(Object.entries({
  temperature: orNull(numberBetween(0, 2)),
  top_p: orNull(numberBetween(0, 1)),
  n: orNull(intBetween(1, 128)),
  stop: isStop,
  max_tokens: orNull(intBetween(1, Number.MAX_SAFE_INTEGER)),
  max_completion_tokens: orNull(intBetween(1, Number.MAX_SAFE_INTEGER)),
  presence_penalty: orNull(numberBetween(-2, 2)),
  frequency_penalty: orNull(numberBetween(-2, 2)),
  seed: orNull(isInt),
  user: isString,
  parallel_tool_calls: isBoolean,
  reasoning_effort: orNull(isString),
  logprobs: orNull(isBoolean),
  top_logprobs: orNull(intBetween(0, 20)),
  stream: orNull(isBoolean),
  stream_options: isStreamOptions
}))

/** Fields of `ChatCompletionRequest` this module does not recognise: such a request goes to the Schema. */
const declaredElsewhere = new Set(["logit_bias", "tools", "tool_choice", "response_format"])

const optional = (message: Record<string, unknown>, field: string, check: Check): boolean => {
  const value = message[field]
  return value === undefined || check(value)
}

/** A message with text content only (and, for the assistant, no tool calls or thinking blocks). */
const isPlainMessage = (value: unknown): boolean => {
  if (!isRecord(value)) return false
  const content = value["content"]
  switch (value["role"]) {
    case "system":
    case "developer":
    case "user":
      return typeof content === "string" && optional(value, "name", isString)
    case "tool":
      return typeof content === "string" && isString(value["tool_call_id"])
    case "assistant":
      return (
        (content === undefined || content === null || typeof content === "string") &&
        optional(value, "refusal", orNull(isString)) &&
        optional(value, "name", isString) &&
        optional(value, "reasoning_content", orNull(isString)) &&
        value["tool_calls"] === undefined &&
        value["thinking_blocks"] === undefined
      )
    default:
      return false
  }
}

/** The request itself when it is a plain chat request that `ChatCompletionRequest` decodes to itself; else `undefined`. */
export const plainChatRequest = (payload: unknown): ChatCompletionRequest | undefined => {
  if (!isRecord(payload)) return undefined
  const model = payload["model"]
  const messages = payload["messages"]
  if (typeof model !== "string" || model.length === 0 || !Array.isArray(messages) || messages.length === 0) return undefined
  for (const message of messages) if (!isPlainMessage(message)) return undefined
  return settingsHold(payload, settings, declaredElsewhere) ? (payload as unknown as ChatCompletionRequest) : undefined
}

/**
 * Whether every field of a request but `model` and `messages` passes its check in `checks`, none is one the Schema
 * alone declares (`elsewhere`), and any other field is one the Schema keeps as it is. Shared by the chat and the
 * Messages recognisers.
 */
export const settingsHold = (
  payload: Readonly<Record<string, unknown>>,
  checks: ReadonlyMap<string, (value: unknown) => boolean>,
  elsewhere: ReadonlySet<string>
): boolean => {
  for (const field in payload) {
    if (field === "model" || field === "messages") continue
    const check = checks.get(field)
    if (check !== undefined) {
      if (!check(payload[field])) return false
    } else if (elsewhere.has(field)) {
      return false
    }
  }
  return true
}
