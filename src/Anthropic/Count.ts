/**
 * The texts of a Messages request, for the gateway's own token counting: count_tokens for a deployment that cannot
 * count (an estimate: the gateway's tokenizer is o200k_base, not the model's), and the accounting of an answer
 * whose upstream reported no usage.
 */
import type { PromptTexts } from "../Core/Gate.js"
import { knownBlock } from "./Wire.js"
import type { CountTokensRequest } from "./Wire.js"

/**
 * Tokens counted for an image or a document whatever its size: about what Anthropic counts for a 1.15-megapixel
 * image, its largest before resizing. The gateway does not decode images to measure them.
 */
export const mediaTokens = 1600

const blockTexts = (given: { readonly type: string }, texts: Array<string>): number => {
  const block = knownBlock(given)
  if (block === undefined) return 0
  switch (block.type) {
    case "text":
      texts.push(block.text)
      return 0
    case "thinking":
      texts.push(block.thinking)
      return 0
    case "tool_use":
      texts.push(block.name, JSON.stringify(block.input))
      return 0
    case "tool_result": {
      if (typeof block.content === "string") texts.push(block.content)
      let media = 0
      for (const part of block.content ?? []) {
        if (typeof part === "string") continue
        media += blockTexts(part, texts)
      }
      return media
    }
    case "image":
      return mediaTokens
    case "document": {
      const source = block.source as { readonly type: string; readonly data?: unknown }
      if (source.type === "text" && typeof source.data === "string") {
        texts.push(source.data)
        return 0
      }
      return mediaTokens
    }
    default:
      return 0
  }
}

/**
 * The texts of a request's system prompt, messages and tools, and the fixed tokens around them: 3 a message, 3 to
 * prime the answer (as for chat), and `mediaTokens` per image or document.
 */
export const messagesPromptTexts = (request: CountTokensRequest): PromptTexts => {
  const texts: Array<string> = []
  let overhead = 3 * request.messages.length + 3
  if (typeof request.system === "string") texts.push(request.system)
  else for (const block of request.system ?? []) texts.push(block.text)
  for (const message of request.messages) {
    if (typeof message.content === "string") texts.push(message.content)
    else for (const block of message.content) overhead += blockTexts(block, texts)
  }
  for (const tool of request.tools ?? []) texts.push(JSON.stringify(tool))
  return { texts, overhead }
}
