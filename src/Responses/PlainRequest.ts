/**
 * The common Responses request — a string or text messages as input, scalar settings — recognised without the Schema
 * decoder, as OpenAi/PlainRequest.ts does for chat and Anthropic/PlainRequest.ts for Messages: the decoder's general
 * machinery was the largest single cost of decoding a Responses request. It accepts only what `ResponsesRequest`
 * decodes to the same value (no tools, tool choice, text format, reasoning, function calls, images or files);
 * anything else, valid or not, is left to the Schema, which also words the 400. A property test holds the two to the
 * same answers.
 */
import { isRecord, settingsHold } from "../OpenAi/PlainRequest.js"
import type { ResponsesRequest } from "./Wire.js"

type Check = (value: unknown) => boolean

const isString: Check = (value) => typeof value === "string"
const isBoolean: Check = (value) => typeof value === "boolean"
const orNull = (check: Check): Check => (value) => value === null || check(value)
const numberBetween = (min: number, max: number): Check => (value) => typeof value === "number" && value >= min && value <= max

const roles: ReadonlySet<unknown> = new Set(["user", "assistant", "system", "developer"])
const textPartTypes: ReadonlySet<unknown> = new Set(["input_text", "output_text"])

/** A text part (`input_text`, or an earlier answer's `output_text`); more fields are kept, as the Schema keeps them. */
const isTextPart: Check = (value) => isRecord(value) && textPartTypes.has(value["type"]) && typeof value["text"] === "string"

/** A message item of text: `type` absent or `message`, a role, and a string or text parts as content. */
const isTextMessage: Check = (value) => {
  if (!isRecord(value)) return false
  const type = value["type"]
  const content = value["content"]
  return (
    (type === undefined || type === "message") &&
    roles.has(value["role"]) &&
    (typeof content === "string" || (Array.isArray(content) && content.every(isTextPart)))
  )
}

const isMetadata: Check = (value) => {
  if (value === null) return true
  if (!isRecord(value)) return false
  for (const field in value) if (typeof value[field] !== "string") return false
  return true
}

/** The fields recognised here (besides `model`) and their checks, as `ResponsesRequest` declares them. */
const settings: ReadonlyMap<string, Check> = new Map(
  Object.entries({
    input: (value: unknown) => typeof value === "string" || (Array.isArray(value) && value.every(isTextMessage)),
    instructions: orNull(isString),
    max_output_tokens: orNull((value) => typeof value === "number" && Number.isSafeInteger(value) && value >= 1),
    temperature: orNull(numberBetween(0, 2)),
    top_p: orNull(numberBetween(0, 1)),
    parallel_tool_calls: orNull(isBoolean),
    metadata: isMetadata,
    store: orNull(isBoolean),
    stream: orNull(isBoolean),
    previous_response_id: orNull((value) => typeof value === "string" && value.length >= 1 && value.length <= 256),
    user: isString
  })
)

/** Fields of `ResponsesRequest` this module does not recognise: such a request goes to the Schema. */
const declaredElsewhere: ReadonlySet<string> = new Set(["tools", "tool_choice", "text", "reasoning"])

/** The request itself when it is a plain Responses request that `ResponsesRequest` decodes to the same value; else `undefined`. */
export const plainResponsesRequest = (payload: unknown): ResponsesRequest | undefined => {
  if (!isRecord(payload)) return undefined
  const model = payload["model"]
  if (typeof model !== "string" || model.length === 0) return undefined
  return settingsHold(payload, settings, declaredElsewhere) ? (payload as unknown as ResponsesRequest) : undefined
}
