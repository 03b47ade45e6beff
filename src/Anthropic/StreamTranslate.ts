/**
 * A chat-completions stream as a Messages event stream, for deployments that do not speak Messages natively:
 * `message_start` once (with the first chunk), then one content block at a time — `thinking` (thinking_delta, and a
 * signature_delta when the upstream signed it), `text` (text_delta), `tool_use` (input_json_delta) — each closed
 * before the next opens, so indexes run 0, 1, 2… and a thinking delta never lands in a text block; at the end
 * `message_delta` (stop reason, usage) and `message_stop`. The mirror image of src/Providers/Anthropic/StreamTranslate.ts.
 *
 * The state is a few counters and the open block: nothing is buffered, whatever the stream's length.
 */
import type { ChunkSource, Take } from "../Providers/ChunkSource.js"
import type { ChatCompletionChunk, FinishReason, Usage } from "../OpenAi/Schemas.js"
import { ProviderError } from "../Providers/ProviderError.js"
import { usageOf } from "../OpenAi/Wire.js"
import { stopReasonOf, stopSequenceOf, translationProvider, usageOfChat } from "./Translate.js"
import type { MessageContext } from "./Translate.js"
import type { MessagesEvent } from "./Wire.js"

type BlockKind = "text" | "thinking" | "tool"

/** Translates the batches of one chat stream; `finish` once it has ended. */
export interface EventTranslator {
  /** The events of one batch of chunks, or the failure of a stream no Messages stream can tell. */
  readonly step: (chunks: ReadonlyArray<ChatCompletionChunk>) => ReadonlyArray<MessagesEvent> | ProviderError
  /** The closing events: the open block's stop, `message_delta`, `message_stop` (and `message_start` if none was). */
  readonly finish: () => ReadonlyArray<MessagesEvent>
}

const malformedToolCalls = new ProviderError({
  reason: "MalformedResponse",
  message: "upstream sent a tool call's arguments after another block began; a Messages stream cannot tell it",
  provider: translationProvider
})

/** A translator for one stream; `ctx` names the message (id, public model, the stop sequences asked for). */
export const makeEventTranslator = (ctx: MessageContext): EventTranslator => {
  let started = false
  let open: BlockKind | undefined
  let index = -1
  let toolIndex = -1
  let toolId: string | undefined
  let finishReason: FinishReason | null = null
  let said: unknown
  let usage: Usage | undefined
  let out: Array<MessagesEvent> = []

  const emit = (event: string, payload: unknown, text?: string) => {
    out.push(text === undefined ? { event, data: JSON.stringify(payload) } : { event, data: JSON.stringify(payload), text })
  }
  /** `message_start`, once; `upstreamModel` (the first chunk's) rides along for the attempt's span. */
  const start = (upstreamModel?: string) => {
    if (started) return
    started = true
    const payload = {
      type: "message_start",
      message: { id: ctx.id, type: "message", role: "assistant", model: ctx.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } }
    }
    out.push(upstreamModel === undefined ? { event: "message_start", data: JSON.stringify(payload) } : { event: "message_start", data: JSON.stringify(payload), model: upstreamModel })
  }
  const close = () => {
    if (open === undefined) return
    emit("content_block_stop", { type: "content_block_stop", index })
    open = undefined
  }
  const openBlock = (kind: BlockKind, block: Record<string, unknown>) => {
    close()
    index++
    open = kind
    emit("content_block_start", { type: "content_block_start", index, content_block: block })
  }
  const delta = (payload: Record<string, unknown>, text: string) =>
    emit("content_block_delta", { type: "content_block_delta", index, delta: payload }, text)

  const thinking = (text: string) => {
    if (open !== "thinking") openBlock("thinking", { type: "thinking", thinking: "", signature: "" })
    delta({ type: "thinking_delta", thinking: text }, text)
  }
  const text = (value: string) => {
    if (open !== "text") openBlock("text", { type: "text", text: "" })
    delta({ type: "text_delta", text: value }, value)
  }

  const chunk = (value: ChatCompletionChunk): ProviderError | undefined => {
    if (value.usage !== undefined && value.usage !== null) usage = usageOf(value.usage) ?? usage
    const choice = value.choices.find((candidate) => candidate.index === 0)
    if (choice === undefined) return undefined
    const change = choice.delta
    if (typeof change.reasoning_content === "string" && change.reasoning_content.length > 0) thinking(change.reasoning_content)
    for (const block of change.thinking_blocks ?? []) {
      if (block.type === "redacted_thinking") {
        openBlock("thinking", { type: "redacted_thinking", data: block.data })
        close()
        continue
      }
      // A signed block completes the thinking streamed before it; alone, it is streamed whole.
      if (open !== "thinking") thinking(block.thinking)
      if (block.signature !== undefined && block.signature.length > 0) delta({ type: "signature_delta", signature: block.signature }, "")
      close()
    }
    if (typeof change.content === "string" && change.content.length > 0) text(change.content)
    if (typeof change.refusal === "string" && change.refusal.length > 0) text(change.refusal)
    for (const call of change.tool_calls ?? []) {
      // Some servers repeat a call's id on each delta; some number every call 0: a new id is a new call.
      const continues = open === "tool" && call.index === toolIndex && (call.id === undefined || call.id === toolId)
      if (!continues) {
        // A call's first delta names it; a later delta of a call whose block was closed cannot be told.
        if (call.index < toolIndex || (call.id === undefined && call.function?.name === undefined)) return malformedToolCalls
        toolIndex = call.index
        toolId = call.id ?? `toolu_${ctx.id}_${call.index}`
        openBlock("tool", { type: "tool_use", id: toolId, name: call.function?.name ?? "", input: {} })
      }
      const args = call.function?.arguments
      if (args !== undefined && args.length > 0) delta({ type: "input_json_delta", partial_json: args }, args)
    }
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) {
      finishReason = choice.finish_reason
      said = (choice as unknown as Readonly<Record<string, unknown>>)["stop_reason"]
    }
    return undefined
  }

  return {
    step: (chunks) => {
      out = []
      for (const value of chunks) {
        start(value.model)
        const failure = chunk(value)
        if (failure !== undefined) return failure
      }
      return out
    },
    finish: () => {
      out = []
      start()
      close()
      const stopSequence = finishReason === "stop" ? stopSequenceOf(said, ctx.stopSequences) : undefined
      const counts = usageOfChat(usage)
      const payload = {
        type: "message_delta",
        delta: { stop_reason: stopSequence !== undefined ? "stop_sequence" : stopReasonOf(finishReason), stop_sequence: stopSequence ?? null },
        usage: usage === undefined ? { output_tokens: 0 } : counts
      }
      out.push(usage === undefined ? { event: "message_delta", data: JSON.stringify(payload) } : { event: "message_delta", data: JSON.stringify(payload), usage: counts })
      emit("message_stop", { type: "message_stop" })
      return out
    }
  }
}

/**
 * A chat stream's source as a Messages event source: each batch translated as it is taken, the closing events
 * given as one last batch before the end. A failure of the upstream passes as it is (the writer frames it as an
 * `error` event); a stream the translation cannot tell ends with its failure.
 */
export const translatedSource = (source: ChunkSource<ChatCompletionChunk>, translator: EventTranslator): ChunkSource<MessagesEvent> => {
  let ended: Take<MessagesEvent> | undefined
  const poll = (): Take<MessagesEvent> | undefined => {
    if (ended !== undefined) return ended
    const take = source.poll()
    if (take === undefined) return undefined
    if (Array.isArray(take)) {
      const events = translator.step(take as ReadonlyArray<ChatCompletionChunk>)
      if (events instanceof ProviderError) {
        ended = events
        source.close()
      }
      return events
    }
    ended = take as Exclude<Take<ChatCompletionChunk>, ReadonlyArray<ChatCompletionChunk>>
    return take === "end" ? translator.finish() : ended
  }
  return {
    poll,
    onReady: (wake) => (ended !== undefined && wake !== undefined ? wake() : source.onReady(wake)),
    close: source.close,
    ...(source.release === undefined ? {} : { release: source.release })
  }
}
