/**
 * A cached answer: versioned and self-describing, so that what a store gives back is checked before anything of it
 * is served. A completion (`json`) or the chunks of a stream as they were sent (`stream`), the key it was stored
 * under, and when. Either kind serves either request: a stream entry is assembled into a completion the way a client
 * SDK accumulates one, a completion is split into the chunks a real upstream would send.
 */
import { embeddingUsageOf, toBase64, vectorOf, vectorsProblem } from "../OpenAi/Embeddings.js"
import type { EmbeddingUsage, Vector } from "../OpenAi/Embeddings.js"
import type { ChatCompletion, ChatCompletionChunk, FinishReason, ToolCall, Usage } from "../OpenAi/Schemas.js"
import { chunkOf, completionOf } from "../OpenAi/Wire.js"
import { parseBoundedJson } from "../Providers/Upstream/Transport.js"

/** The format tag every entry carries; anything else under a cache key is not ours. */
export const entryFormat = "llm-proxy.cache"
export const entryVersion = 1

/** A cached answer. `key` is the key it was stored under; `createdAt` epoch milliseconds. */
export type CacheEntry =
  | {
    readonly kind: "json"
    readonly key: string
    readonly createdAt: number
    /** Decoded on first read for an entry with `completionJson`. */
    readonly completion: ChatCompletion
    /**
     * The completion's JSON as stored, for an entry this process wrote itself (the memory store's), whose completion
     * passed the upstream checks before it was serialized: a hit writes it as is.
     */
    readonly completionJson: string | undefined
  }
  | { readonly kind: "stream"; readonly key: string; readonly createdAt: number; readonly chunks: ReadonlyArray<ChatCompletionChunk> }
  | {
    readonly kind: "embeddings"
    readonly key: string
    readonly createdAt: number
    /** In input order, as the upstream gave them: JSON numbers as written, base64 float32 as float32. */
    readonly vectors: ReadonlyArray<Vector>
    readonly usage: EmbeddingUsage
  }

/** An entry's serialized text, the key it is for, and the text's size in bytes (what the memory store's bounds count). */
export interface SerializedEntry {
  readonly key: string
  readonly text: string
  readonly bytes: number
}

const header = (kind: CacheEntry["kind"], key: string, createdAt: number): string =>
  `{"format":"${entryFormat}","v":${entryVersion},"kind":"${kind}","key":${JSON.stringify(key)},"created_at":${createdAt}`

const completionPrefix = (key: string, createdAt: number): string => `${header("json", key, createdAt)},"completion":`

const completionField = `,"completion":`

/**
 * A completion entry this process serialized itself (`serializeCompletionJson` of a completion that passed the
 * upstream checks), read without parsing it: its time from the header, its completion's text as written, and the
 * completion itself decoded only if something asks for it (a stream request, a caller of the core). A JSON hit on
 * the memory store writes the text and never decodes it. Anything else is `undefined`: the caller reads it in full.
 */
const ownCompletionEntry = (text: string, key: string): CacheEntry | undefined => {
  // the header up to its time: a created_at of 0 is written as its last character
  const head = header("json", key, 0).slice(0, -1)
  if (!text.startsWith(head) || !text.endsWith("}")) return undefined
  const fieldAt = text.indexOf(completionField, head.length)
  // at most 16 digits: a safe integer of milliseconds
  if (fieldAt <= head.length || fieldAt - head.length > 16) return undefined
  const digits = text.slice(head.length, fieldAt)
  if (!/^(0|[1-9][0-9]*)$/.test(digits)) return undefined
  const createdAt = Number(digits)
  if (!Number.isSafeInteger(createdAt)) return undefined
  const completionJson = text.slice(fieldAt + completionField.length, -1)
  let decoded: ChatCompletion | undefined
  return {
    kind: "json",
    key,
    createdAt,
    completionJson,
    get completion(): ChatCompletion {
      if (decoded !== undefined) return decoded
      const checked = completionOf(JSON.parse(completionJson))
      // Our own serialization of a checked completion: anything else is a defect, never an answer.
      if (typeof checked === "string") throw new Error(`a cache entry of this process does not decode: ${checked}`)
      decoded = checked
      return checked
    }
  }
}

/** A completion's entry, serialized. */
export const serializeCompletion = (key: string, createdAt: number, completion: ChatCompletion): SerializedEntry =>
  serializeCompletionJson(key, createdAt, JSON.stringify(completion))

/** A completion's entry from the completion's JSON, which the answer writes too: one serialization, not two. */
export const serializeCompletionJson = (key: string, createdAt: number, completionJson: string): SerializedEntry => {
  const prefix = completionPrefix(key, createdAt)
  // Counted by parts: the entry stays a concatenation until it is read, not copied into one string at every miss.
  return { key, text: `${prefix}${completionJson}}`, bytes: Buffer.byteLength(prefix) + Buffer.byteLength(completionJson) + 1 }
}

/**
 * An embeddings answer's entry: each vector as the upstream gave it (numbers as JSON, float32 as base64, so that a
 * hit answers exactly what the miss did), and the usage the answer reported.
 */
export const serializeEmbeddings = (key: string, createdAt: number, vectors: ReadonlyArray<Vector>, usage: EmbeddingUsage): SerializedEntry => {
  const parts = [`${header("embeddings", key, createdAt)},"usage":${JSON.stringify(usage)},"vectors":[`]
  for (let index = 0; index < vectors.length; index++) {
    const vector = vectors[index]!
    const text = vector instanceof Float32Array ? `"${toBase64(vector)}"` : JSON.stringify(vector)
    parts.push(index === 0 ? text : `,${text}`)
  }
  parts.push("]}")
  const text = parts.join("")
  return { key, text, bytes: Buffer.byteLength(text) }
}

/** A stream's entry from the JSON texts of its chunks, as they were sent. One string is made, not several. */
export const serializeStream = (key: string, createdAt: number, chunkTexts: ReadonlyArray<string>): SerializedEntry => {
  const parts = [`${header("stream", key, createdAt)},"chunks":[`]
  for (let index = 0; index < chunkTexts.length; index++) parts.push(index === 0 ? chunkTexts[index]! : `,${chunkTexts[index]!}`)
  parts.push("]}")
  const text = parts.join("")
  return { key, text, bytes: Buffer.byteLength(text) }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * Whether chunks make a finished answer: at least one choice, and every choice that appears ends with a finish
 * reason. A stream cut short never makes an entry.
 */
export const isFinished = (chunks: ReadonlyArray<ChatCompletionChunk>): boolean => {
  const tracker = finishTracker()
  for (const chunk of chunks) tracker.note(chunk)
  return tracker.finished()
}

/** `isFinished` told one chunk at a time, so that a stream being recorded need not keep its chunks. */
export const finishTracker = (): { readonly note: (chunk: ChatCompletionChunk) => void; readonly finished: () => boolean } => {
  const finished = new Map<number, boolean>()
  return {
    note: (chunk) => {
      for (const choice of chunk.choices) {
        if (choice.finish_reason != null) finished.set(choice.index, true)
        else if (!finished.has(choice.index)) finished.set(choice.index, false)
      }
    },
    finished: () => {
      if (finished.size === 0) return false
      for (const done of finished.values()) if (!done) return false
      return true
    }
  }
}

/**
 * The entry in `text`, read back from a store, when it is one: our format and version, stored under `key`, a sane
 * time, and an answer with the spec's shape (the same checks as an upstream's answer) that is finished. Anything
 * else is `undefined`, never served. `maxBytes` bounds what is parsed at all. `written` says the text is one
 * `serializeCompletion` or `serializeStream` made in this process (the memory store's), never another's: a
 * completion's entry is then read without parsing it (`ownCompletionEntry`).
 */
export const decodeEntry = (text: string, key: string, maxBytes: number, written = false): CacheEntry | undefined => {
  // Characters never outnumber bytes; a text longer than the bound in characters is over it in bytes.
  if (text.length > maxBytes || Buffer.byteLength(text) > maxBytes) return undefined
  if (written) {
    const own = ownCompletionEntry(text, key)
    if (own !== undefined) return own
  }
  const value = parseBoundedJson(text)
  if (!isObject(value)) return undefined
  if (value["format"] !== entryFormat || value["v"] !== entryVersion || value["key"] !== key) return undefined
  const createdAt = value["created_at"]
  if (typeof createdAt !== "number" || !Number.isSafeInteger(createdAt) || createdAt < 0) return undefined
  if (value["kind"] === "json") {
    const stored = value["completion"]
    const completion = completionOf(stored)
    if (typeof completion === "string" || completion.choices.length === 0) return undefined
    return { kind: "json", key, createdAt, completion, completionJson: undefined }
  }
  if (value["kind"] === "stream") {
    const raw = value["chunks"]
    if (!Array.isArray(raw) || raw.length === 0) return undefined
    const chunks: Array<ChatCompletionChunk> = []
    for (const item of raw as ReadonlyArray<unknown>) {
      const chunk = chunkOf(item)
      if (typeof chunk === "string") return undefined
      chunks.push(chunk)
    }
    return isFinished(chunks) ? { kind: "stream", key, createdAt, chunks } : undefined
  }
  if (value["kind"] === "embeddings") {
    const raw = value["vectors"]
    const usage = embeddingUsageOf(value["usage"])
    if (!Array.isArray(raw) || raw.length === 0 || usage === undefined) return undefined
    const vectors: Array<Vector> = []
    for (const item of raw as ReadonlyArray<unknown>) {
      const vector = vectorOf(item)
      if (vector === undefined) return undefined
      vectors.push(vector)
    }
    return vectorsProblem(vectors, undefined) === undefined ? { kind: "embeddings", key, createdAt, vectors, usage } : undefined
  }
  return undefined
}

interface ToolCallBuilder {
  id: string
  name: string
  arguments: string
  extra: Record<string, unknown> | undefined
}

interface ChoiceBuilder {
  content: string | undefined
  reasoning: string | undefined
  refusal: string | undefined
  thinking: Array<unknown> | undefined
  toolCalls: Map<number, ToolCallBuilder>
  finishReason: FinishReason | null
  logprobs: Array<unknown> | undefined
}

const appended = (text: string | undefined, more: unknown): string | undefined =>
  typeof more === "string" ? (text ?? "") + more : text

/**
 * The completion a stream's chunks add up to, as OpenAI's SDKs accumulate one: per choice, content, reasoning and
 * refusal concatenated, thinking blocks in order, tool calls merged by index (id and name from their first delta,
 * arguments concatenated), the last finish reason; the usage of the chunk that carried it.
 */
export const completionOfChunks = (chunks: ReadonlyArray<ChatCompletionChunk>): ChatCompletion => {
  const first = chunks[0]
  const choices = new Map<number, ChoiceBuilder>()
  let usage: Usage | undefined
  let fingerprint: string | null | undefined
  for (const chunk of chunks) {
    if (chunk.usage != null) usage = chunk.usage
    if (chunk.system_fingerprint != null) fingerprint = chunk.system_fingerprint
    for (const choice of chunk.choices) {
      let built = choices.get(choice.index)
      if (built === undefined) {
        built = { content: undefined, reasoning: undefined, refusal: undefined, thinking: undefined, toolCalls: new Map(), finishReason: null, logprobs: undefined }
        choices.set(choice.index, built)
      }
      const delta = choice.delta
      built.content = appended(built.content, delta.content)
      built.reasoning = appended(built.reasoning, delta.reasoning_content)
      built.refusal = appended(built.refusal, delta.refusal)
      if (delta.thinking_blocks !== undefined) (built.thinking ??= []).push(...delta.thinking_blocks)
      for (const call of delta.tool_calls ?? []) {
        let tool = built.toolCalls.get(call.index)
        if (tool === undefined) {
          tool = { id: "", name: "", arguments: "", extra: undefined }
          built.toolCalls.set(call.index, tool)
        }
        if (tool.id === "" && call.id !== undefined) tool.id = call.id
        if (tool.name === "" && call.function?.name !== undefined) tool.name = call.function.name
        if (call.function?.arguments !== undefined) tool.arguments += call.function.arguments
        if (call.extra_content !== undefined) tool.extra = { ...tool.extra, ...call.extra_content }
      }
      if (choice.finish_reason != null) built.finishReason = choice.finish_reason
      const logprobs = choice.logprobs
      if (isObject(logprobs) && Array.isArray(logprobs["content"])) (built.logprobs ??= []).push(...(logprobs["content"] as ReadonlyArray<unknown>))
    }
  }
  const completionChoices = [...choices.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, built]) => {
      const toolCalls: Array<ToolCall> = [...built.toolCalls.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, tool]) => ({
          id: tool.id,
          type: "function" as const,
          function: { name: tool.name, arguments: tool.arguments },
          ...(tool.extra === undefined ? {} : { extra_content: tool.extra })
        }))
      return {
        index,
        message: {
          role: "assistant" as const,
          content: built.content ?? null,
          refusal: built.refusal ?? null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          ...(built.reasoning === undefined ? {} : { reasoning_content: built.reasoning }),
          ...(built.thinking === undefined ? {} : { thinking_blocks: built.thinking as ChatCompletion["choices"][number]["message"]["thinking_blocks"] })
        },
        finish_reason: built.finishReason ?? "stop",
        logprobs: built.logprobs === undefined ? null : { content: built.logprobs, refusal: null }
      }
    })
  return {
    id: first?.id ?? "chatcmpl-cache",
    object: "chat.completion",
    created: first?.created ?? 0,
    model: first?.model ?? "",
    choices: completionChoices,
    ...(usage === undefined ? {} : { usage }),
    ...(fingerprint === undefined ? {} : { system_fingerprint: fingerprint })
  }
}
