/**
 * The text a stream delivered to its client, kept to count its completion tokens when the upstream reports no usage
 * (a stream cancelled by its client, an upstream that sends none). Bounded: past `maxChars` only the number of
 * further characters is kept and their tokens are estimated — an endless stream must not hold all it relayed.
 */
import { estimatedTokensOfChars } from "../Governance/Tokenizer.js"
import type { ChatCompletionChunk } from "../OpenAi/Schemas.js"

/** Characters kept whole for the tokenizer; past them a stream's text is only measured. */
export const maxCountedChars = 1024 * 1024

export class DeliveredText {
  /** The text kept for the tokenizer, in order. */
  readonly texts: Array<string> = []
  private keptChars = 0
  private measuredChars = 0
  constructor(private readonly maxChars: number = maxCountedChars) {}

  /** Adds one piece of delivered text. */
  add(text: string): void {
    if (text.length === 0) return
    if (this.measuredChars === 0 && this.keptChars + text.length <= this.maxChars) {
      this.texts.push(text)
      this.keptChars += text.length
    } else this.measuredChars += text.length
  }

  /** Adds what one chunk delivered: content, reasoning, refusal, tool-call names and arguments. */
  addChunk(chunk: ChatCompletionChunk): void {
    for (const choice of chunk.choices) {
      const delta = choice.delta as ChatCompletionChunk["choices"][number]["delta"] & { readonly reasoning_content?: unknown }
      if (typeof delta.content === "string") this.add(delta.content)
      if (typeof delta.reasoning_content === "string") this.add(delta.reasoning_content)
      if (typeof delta.refusal === "string") this.add(delta.refusal)
      for (const call of delta.tool_calls ?? []) {
        if (call.function?.name !== undefined) this.add(call.function.name)
        if (call.function?.arguments !== undefined) this.add(call.function.arguments)
      }
    }
  }

  /** The estimated tokens of the text past the bound (0 when it all was kept). */
  get estimatedTokens(): number {
    return estimatedTokensOfChars(this.measuredChars)
  }
}
