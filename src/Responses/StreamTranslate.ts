/**
 * A chat-completions stream as a Responses event stream, for deployments that do not speak Responses natively:
 * `response.created` and `response.in_progress` with the first chunk; then the output items as they come — a
 * `reasoning` item (reasoning_text deltas), a `message` item (`output_text` and `refusal` parts), a `function_call`
 * item per tool call (arguments deltas) — each added, streamed and done, with `output_index`, `content_index` and
 * `item_id` as OpenAI numbers them; at the end `response.completed` (or `response.incomplete` when the token limit
 * or the content filter cut the answer), carrying the whole response. Every event has its `sequence_number`, from 0.
 *
 * A failure of the upstream after the stream began ends it with `response.failed` (the response so far, its
 * `error` set); the writer then adds the `error` event that the openai SDKs raise as an APIError (src/Http/Responses.ts).
 *
 * Text and reasoning items close when another kind of output begins; function calls stay open until the end, so
 * calls whose deltas interleave (by `index`) are each told right. The state is the items so far (the response
 * object at the end carries them all, as OpenAI's does); ids and the clock are injected.
 */
import type { ChunkSource, Take } from "../Providers/ChunkSource.js"
import type { ChatCompletionChunk, FinishReason, Usage } from "../OpenAi/Schemas.js"
import { usageOf } from "../OpenAi/Wire.js"
import { ProviderError } from "../Providers/ProviderError.js"
import { functionCallItem, messageItem, outputTextPart, reasoningItem, refusalPart, responseObject, responseUsageOf, statusOf, translationProvider } from "./Translate.js"
import type { ResponseContext } from "./Translate.js"
import type { ResponsesEvent, ResponseUsage } from "./Wire.js"

/** Translates the batches of one chat stream; `finish` once it has ended, or `fail` when it broke. */
export interface ResponsesEventTranslator {
  /**
   * The events of one batch of chunks. Past `maxHeldChars` of output held for the final response they end with
   * `response.failed`, and `overflow` names the failure that ends the stream (as an upstream's non-streamed answer
   * past its bound is one).
   */
  readonly step: (chunks: ReadonlyArray<ChatCompletionChunk>) => ReadonlyArray<ResponsesEvent>
  /** Why the stream must end after the last step's events, when the output outgrew what a response may hold. */
  readonly overflow: () => ProviderError | undefined
  /** The closing events: every open item done, then `response.completed` or `response.incomplete`. */
  readonly finish: () => ReadonlyArray<ResponsesEvent>
  /** `response.failed`, with the output so far (open items left as they are); nothing before the stream began. */
  readonly fail: (error: ProviderError) => ReadonlyArray<ResponsesEvent>
}

interface TextPartState {
  readonly kind: "output_text" | "refusal"
  text: string
  /** Its place as its delta events name it, written once. */
  readonly where: string
}

interface MessageState {
  readonly kind: "message"
  readonly id: string
  readonly outputIndex: number
  readonly parts: Array<TextPartState>
}

interface ReasoningState {
  readonly kind: "reasoning"
  readonly id: string
  readonly outputIndex: number
  text: string
}

interface CallState {
  readonly kind: "call"
  readonly id: string
  readonly outputIndex: number
  readonly callId: string
  readonly name: string
  args: string
}

type ItemState = MessageState | ReasoningState | CallState

/** What a response object says besides its status and output. */
interface SnapshotExtra {
  readonly usage?: ResponseUsage | undefined
  readonly incompleteReason?: string | undefined
  readonly error?: { readonly code: string; readonly message: string } | undefined
}

const partObject = (part: TextPartState) => (part.kind === "output_text" ? outputTextPart(part.text) : refusalPart(part.text))

const itemObject = (item: ItemState, status: string): Record<string, unknown> => {
  switch (item.kind) {
    case "message":
      return messageItem(item.id, status, item.parts.map(partObject))
    case "reasoning":
      return reasoningItem(item.id, item.text)
    case "call":
      return functionCallItem(item.id, item.callId, item.name, item.args, status)
  }
}

/**
 * The output a translated stream holds for its final response (OpenAI's carries every item whole): 64 Mi
 * characters, the size of the largest non-streamed upstream answer by default (`UPSTREAM_MAX_RESPONSE_BYTES`).
 */
export const defaultMaxHeldChars = 64 * 1024 * 1024

/**
 * A translator for one stream; `ctx` names the response (id, public model, time, request, item ids). It holds at
 * most `maxHeldChars` characters of output.
 */
export const makeResponsesTranslator = (ctx: ResponseContext, maxHeldChars = defaultMaxHeldChars): ResponsesEventTranslator => {
  let started = false
  let sequence = 0
  const done: Array<{ readonly index: number; readonly item: Record<string, unknown> }> = []
  const items: Array<ItemState> = []
  /** The text or reasoning item deltas go to, when one is open. */
  let open: MessageState | ReasoningState | undefined
  /** Open function calls by the chat stream's tool call index. */
  const calls = new Map<number, CallState>()
  let finishReason: FinishReason | null = null
  let usage: Usage | undefined
  let out: Array<ResponsesEvent> = []
  let heldChars = 0
  let overflow: ProviderError | undefined

  const emit = (type: string, payload: Record<string, unknown>, extra?: { readonly text?: string; readonly response?: Record<string, unknown> }) => {
    const data = JSON.stringify({ type, sequence_number: sequence, ...payload })
    out.push(extra === undefined ? { type, data, sequence } : { type, data, sequence, ...extra })
    sequence++
  }
  /**
   * A delta event, its JSON written by hand: the one event of every chunk (the others come a few per item), so it
   * skips building and stringifying an object. `where` is the item's `"item_id":…,"output_index":…` fields.
   */
  const emitDelta = (type: string, where: string, text: string, tail = "") => {
    out.push({ type, data: `{"type":"${type}","sequence_number":${sequence},${where},"delta":${JSON.stringify(text)}${tail}}`, sequence, text })
    sequence++
  }
  /** An item's place as delta events name it (ids are the gateway's own: plain word characters). */
  const placeOf = (itemId: string, outputIndex: number, contentIndex?: number) =>
    `"item_id":${JSON.stringify(itemId)},"output_index":${outputIndex}${contentIndex === undefined ? "" : `,"content_index":${contentIndex}`}`
  const snapshot = (status: "in_progress" | "completed" | "incomplete" | "failed", extra: SnapshotExtra = {}) =>
    responseObject(ctx, { status, output: [...done].sort((a, b) => a.index - b.index).map((entry) => entry.item), ...extra })
  const start = () => {
    if (started) return
    started = true
    // One response in progress for both events, written once.
    const response = JSON.stringify(snapshot("in_progress"))
    for (const type of ["response.created", "response.in_progress"]) {
      out.push({ type, data: `{"type":"${type}","sequence_number":${sequence},"response":${response}}`, sequence })
      sequence++
    }
  }

  const closeItem = (item: ItemState, status: string) => {
    if (item.kind === "message") {
      item.parts.forEach((part, contentIndex) => {
        const where = { item_id: item.id, output_index: item.outputIndex, content_index: contentIndex }
        if (part.kind === "output_text") emit("response.output_text.done", { ...where, text: part.text, logprobs: [] })
        else emit("response.refusal.done", { ...where, refusal: part.text })
        emit("response.content_part.done", { ...where, part: partObject(part) })
      })
    } else if (item.kind === "reasoning") {
      const where = { item_id: item.id, output_index: item.outputIndex, content_index: 0 }
      emit("response.reasoning_text.done", { ...where, text: item.text })
      emit("response.content_part.done", { ...where, part: { type: "reasoning_text", text: item.text } })
    } else {
      emit("response.function_call_arguments.done", { item_id: item.id, output_index: item.outputIndex, name: item.name, arguments: item.args })
    }
    const object = itemObject(item, status)
    emit("response.output_item.done", { output_index: item.outputIndex, item: object })
    done.push({ index: item.outputIndex, item: object })
  }
  const closeOpen = () => {
    if (open === undefined) return
    const item = open
    open = undefined
    closeItem(item, "completed")
  }

  const reasoning = (text: string) => {
    if (open?.kind !== "reasoning") {
      closeOpen()
      const item: ReasoningState = { kind: "reasoning", id: ctx.ids("rs"), outputIndex: items.length, text: "" }
      items.push(item)
      open = item
      emit("response.output_item.added", { output_index: item.outputIndex, item: { id: item.id, type: "reasoning", summary: [], content: [] } })
      emit("response.content_part.added", { item_id: item.id, output_index: item.outputIndex, content_index: 0, part: { type: "reasoning_text", text: "" } })
    }
    const item = open
    item.text += text
    emitDelta("response.reasoning_text.delta", placeOf(item.id, item.outputIndex, 0), text)
  }

  const message = (kind: TextPartState["kind"], text: string) => {
    if (open?.kind !== "message") {
      closeOpen()
      const item: MessageState = { kind: "message", id: ctx.ids("msg"), outputIndex: items.length, parts: [] }
      items.push(item)
      open = item
      emit("response.output_item.added", { output_index: item.outputIndex, item: messageItem(item.id, "in_progress", []) })
    }
    const item = open
    let part = item.parts[item.parts.length - 1]
    if (part?.kind !== kind) {
      part = { kind, text: "", where: placeOf(item.id, item.outputIndex, item.parts.length) }
      item.parts.push(part)
      emit("response.content_part.added", {
        item_id: item.id,
        output_index: item.outputIndex,
        content_index: item.parts.length - 1,
        part: kind === "output_text" ? outputTextPart("") : refusalPart("")
      })
    }
    part.text += text
    if (kind === "output_text") emitDelta("response.output_text.delta", part.where, text, `,"logprobs":[]`)
    else emitDelta("response.refusal.delta", part.where, text)
  }

  const toolCall = (index: number, id: string | undefined, name: string | undefined, args: string | undefined) => {
    let call = calls.get(index)
    // Some servers number every call 0: a new id at an index is a new call.
    if (call === undefined || (id !== undefined && id !== call.callId)) {
      closeOpen()
      // The call the index named before is over.
      if (call !== undefined) closeItem(call, "completed")
      call = { kind: "call", id: ctx.ids("fc"), outputIndex: items.length, callId: id ?? `call_${ctx.id.slice(5, 29)}_${index}`, name: name ?? "", args: "" }
      items.push(call)
      calls.set(index, call)
      emit("response.output_item.added", { output_index: call.outputIndex, item: functionCallItem(call.id, call.callId, call.name, "", "in_progress") })
    }
    if (args !== undefined && args.length > 0) {
      call.args += args
      emitDelta("response.function_call_arguments.delta", placeOf(call.id, call.outputIndex), args)
    }
  }

  const chunk = (value: ChatCompletionChunk) => {
    if (value.usage !== undefined && value.usage !== null) usage = usageOf(value.usage) ?? usage
    const choice = value.choices.find((candidate) => candidate.index === 0)
    if (choice === undefined) return
    const change = choice.delta
    if (typeof change.reasoning_content === "string" && change.reasoning_content.length > 0) reasoning(change.reasoning_content)
    if (typeof change.content === "string" && change.content.length > 0) message("output_text", change.content)
    if (typeof change.refusal === "string" && change.refusal.length > 0) message("refusal", change.refusal)
    for (const call of change.tool_calls ?? []) toolCall(call.index, call.id, call.function?.name, call.function?.arguments)
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) finishReason = choice.finish_reason
  }

  /** Every item still open closed, in output order. */
  const closeAll = (status: string) => {
    closeOpen()
    for (const call of [...calls.values()].sort((a, b) => a.outputIndex - b.outputIndex)) closeItem(call, status)
    calls.clear()
  }

  /** `response.failed` with the output so far (open items left as they are), added to this call's events. */
  const failed = (error: ProviderError) => {
    const response = snapshot("failed", { usage: responseUsageOf(usage), error: { code: "server_error", message: error.message } })
    emit("response.failed", { response }, { response })
  }

  return {
    step: (chunks) => {
      out = []
      if (chunks.length > 0) start()
      for (const value of chunks) chunk(value)
      for (const event of out) heldChars += event.text?.length ?? 0
      if (heldChars > maxHeldChars && overflow === undefined) {
        overflow = tooLong(maxHeldChars)
        failed(overflow)
      }
      return out
    },
    overflow: () => overflow,
    finish: () => {
      out = []
      start()
      const { reason, status } = statusOf(finishReason)
      closeAll(status === "incomplete" ? "incomplete" : "completed")
      const response = snapshot(status, { usage: responseUsageOf(usage), incompleteReason: reason })
      emit(status === "completed" ? "response.completed" : "response.incomplete", { response }, { response })
      return out
    },
    fail: (error) => {
      out = []
      // Before the first event the failure is the attempt's own: the Router retries it or falls back.
      if (!started) return out
      failed(error)
      return out
    }
  }
}

const tooLong = (maxHeldChars: number) =>
  new ProviderError({
    reason: "MalformedResponse",
    message: `upstream streamed more than ${maxHeldChars} characters of output, more than a response may hold`,
    provider: translationProvider
  })

/**
 * A chat stream's source as a Responses event source: each batch translated as it is taken, the closing events given
 * as one last batch before the end; an upstream failure gives `response.failed` as a last batch, then the failure
 * itself (the writer frames it as the `error` event).
 */
export const translatedResponsesSource = (source: ChunkSource<ChatCompletionChunk>, translator: ResponsesEventTranslator): ChunkSource<ResponsesEvent> => {
  let ended: Take<ResponsesEvent> | undefined
  const poll = (): Take<ResponsesEvent> | undefined => {
    if (ended !== undefined) return ended
    const take = source.poll()
    if (take === undefined) return undefined
    if (Array.isArray(take)) {
      const events = translator.step(take as ReadonlyArray<ChatCompletionChunk>)
      const overflow = translator.overflow()
      if (overflow !== undefined) {
        // Its events end with response.failed; the failure follows them.
        ended = overflow
        source.close()
      }
      return events
    }
    ended = take as Exclude<Take<ChatCompletionChunk>, ReadonlyArray<ChatCompletionChunk>>
    if (take === "end") return translator.finish()
    if (!(take instanceof ProviderError)) return ended
    const events = translator.fail(take)
    return events.length > 0 ? events : ended
  }
  return {
    poll,
    onReady: (wake) => (ended !== undefined && wake !== undefined ? wake() : source.onReady(wake)),
    close: source.close,
    ...(source.release === undefined ? {} : { release: source.release })
  }
}
