/**
 * The common Messages request — text content and scalar settings — recognised without the Schema decoder, as
 * OpenAi/PlainRequest.ts does for chat: the decoder's general machinery was most of what the translation cost a
 * request. It accepts only what `MessagesRequest` decodes to itself (no tools, tool choice, thinking, images or
 * other blocks); anything else, valid or not, is left to the Schema, which also words the 400. A property test holds
 * the two to the same answers.
 */
import { isRecord, settingsHold } from "../OpenAi/PlainRequest.js"
import type { MessagesRequest } from "./Wire.js"


const isUnitNumber = (value: unknown): boolean => typeof value === "number" && value >= 0 && value <= 1
const isIntFrom = (min: number) => (value: unknown): boolean => typeof value === "number" && Number.isSafeInteger(value) && value >= min

/** A text block: `type: "text"` and its text (more fields are kept, as the Schema keeps them). */
const isTextBlock = (value: unknown): boolean => isRecord(value) && value["type"] === "text" && typeof value["text"] === "string"

const isTextContent = (value: unknown): boolean => typeof value === "string" || (Array.isArray(value) && value.every(isTextBlock))

const isPlainMessage = (value: unknown): boolean =>
  isRecord(value) && (value["role"] === "user" || value["role"] === "assistant") && isTextContent(value["content"])

const isMetadata = (value: unknown): boolean => {
  if (!isRecord(value)) return false
  const user = value["user_id"]
  return user === undefined || user === null || typeof user === "string"
}

/** The settings recognised here and their checks, as `MessagesRequest` declares them. */
const settings: ReadonlyMap<string, (value: unknown) => boolean> = new Map(
  Object.entries({
    max_tokens: isIntFrom(1),
    system: isTextContent,
    stop_sequences: (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === "string"),
    temperature: isUnitNumber,
    top_p: isUnitNumber,
    top_k: isIntFrom(0),
    metadata: isMetadata,
    stream: (value: unknown) => typeof value === "boolean"
  })
)

/** Fields of `MessagesRequest` this module does not recognise: such a request goes to the Schema. */
const declaredElsewhere = new Set(["tools", "tool_choice", "thinking"])

/** The request itself when it is a plain Messages request that `MessagesRequest` decodes to itself; else `undefined`. */
export const plainMessagesRequest = (payload: unknown): MessagesRequest | undefined => {
  if (!isRecord(payload)) return undefined
  const model = payload["model"]
  const messages = payload["messages"]
  if (typeof model !== "string" || model.length === 0 || !Array.isArray(messages) || messages.length === 0) return undefined
  if (payload["max_tokens"] === undefined) return undefined
  for (const message of messages) if (!isPlainMessage(message)) return undefined
  return settingsHold(payload, settings, declaredElsewhere) ? (payload as unknown as MessagesRequest) : undefined
}
