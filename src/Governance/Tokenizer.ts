/**
 * Counting tokens the upstream did not report (a stream the client cancelled, an upstream that broke off or never
 * sends usage) with a real tokenizer: gpt-tokenizer's o200k_base. Its tables take ~0.8 s to load and ~70 MB, and
 * counting a long answer takes tens of milliseconds, so it runs in a worker thread started on first use and
 * stopped when idle: the event loop never waits for it, and a gateway that never needs it never pays for it.
 */
import { Context, Effect, Layer } from "effect"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import type { ChatCompletionRequest, ChatMessage } from "../OpenAi/Schemas.js"

/** Counts tokens. */
export interface TokenizerService {
  /** The o200k_base token count of each text. */
  readonly count: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<number>, Error>
}

export class Tokenizer extends Context.Tag("llm-proxy/Tokenizer")<Tokenizer, TokenizerService>() {}

/** How long an idle worker is kept before it is stopped (its memory returned). */
const idleMs = 60_000

/**
 * Byte-pair encoding costs the square of a word's length (a 200 000-character run without whitespace took 28 s), so
 * the worker cuts every run of non-whitespace longer than this into pieces of this length before counting. Cut
 * inside a word, a piece's tokens may differ from the whole's by one at each cut: under 2 % of a long run's count.
 */
export const maxCountedRunChars = 256

const workerSource = (modulePath: string) => `
const { parentPort } = require("node:worker_threads")
const loaded = import(${JSON.stringify(modulePath)})
const longRun = /\\S{${maxCountedRunChars + 1},}/g
const countText = (countTokens, text) => {
  let total = 0
  let from = 0
  for (const run of text.matchAll(longRun)) {
    total += countTokens(text.slice(from, run.index))
    const end = run.index + run[0].length
    for (let at = run.index; at < end; at += ${maxCountedRunChars}) total += countTokens(text.slice(at, Math.min(at + ${maxCountedRunChars}, end)))
    from = end
  }
  return total + countTokens(text.slice(from))
}
parentPort.on("message", ({ id, texts }) => {
  loaded.then(
    (tokenizer) => parentPort.postMessage({ id, counts: texts.map((text) => countText(tokenizer.countTokens, text)) }),
    (error) => parentPort.postMessage({ id, error: String(error) })
  )
})
`

/** Characters waiting for the worker at most (default); past them a count is estimated at once. */
export const defaultMaxPendingChars = 8 * 1024 * 1024

/** Tokens estimated from a length in characters, where counting is not affordable: about four characters a token. */
export const estimatedTokensOfChars = (chars: number): number => Math.ceil(chars / 4)

/** The estimate of a text's tokens when the worker is too far behind. */
export const estimatedTokens = (text: string): number => estimatedTokensOfChars(text.length)

/**
 * The worker-backed tokenizer; `close` stops its worker. Its queue is bounded: a count that would take the characters
 * waiting for the worker past `maxPendingChars` is estimated instead (`estimatedTokens`), so a burst of long texts
 * costs neither unbounded memory nor unbounded waits.
 */
export const makeWorkerTokenizer = (
  options: { readonly maxPendingChars?: number } = {}
): TokenizerService & { readonly close: () => Promise<void> } => {
  const maxPendingChars = options.maxPendingChars ?? defaultMaxPendingChars
  let pendingChars = 0
  const modulePath = pathToFileURL(createRequire(import.meta.url).resolve("gpt-tokenizer/encoding/o200k_base")).href
  let worker: Worker | undefined
  let nextId = 0
  let idleTimer: ReturnType<typeof setTimeout> | undefined
  const pending = new Map<number, (outcome: { readonly counts?: ReadonlyArray<number>; readonly error?: string }) => void>()

  const stop = () => {
    const stopping = worker
    worker = undefined
    for (const resolve of pending.values()) resolve({ error: "the tokenizer stopped" })
    pending.clear()
    return stopping === undefined ? Promise.resolve() : stopping.terminate().then(() => undefined)
  }
  const scheduleIdleStop = () => {
    if (idleTimer !== undefined) clearTimeout(idleTimer)
    idleTimer = setTimeout(() => {
      if (pending.size === 0) void stop()
    }, idleMs)
    idleTimer.unref()
  }
  const started = (): Worker => {
    if (worker !== undefined) return worker
    const created = new Worker(workerSource(modulePath), { eval: true })
    created.unref()
    created.on("message", (message: { readonly id: number; readonly counts?: ReadonlyArray<number>; readonly error?: string }) => {
      const resolve = pending.get(message.id)
      pending.delete(message.id)
      resolve?.(message)
      if (pending.size === 0) scheduleIdleStop()
    })
    created.on("error", () => {
      if (worker === created) void stop()
    })
    worker = created
    return created
  }

  const count = (texts: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const chars = texts.reduce((sum, text) => sum + text.length, 0)
      if (pendingChars + chars > maxPendingChars) return Effect.succeed(texts.map(estimatedTokens))
      pendingChars += chars
      // The characters count until the worker has answered, even for a caller that stopped waiting.
      let waiting = true
      return Effect.async<ReadonlyArray<number>, Error>((resume) => {
        const id = nextId++
        pending.set(id, (outcome) => {
          pendingChars -= chars
          if (!waiting) return
          resume(outcome.counts !== undefined ? Effect.succeed(outcome.counts) : Effect.fail(new Error(outcome.error ?? "tokenizer failed")))
        })
        started().postMessage({ id, texts })
        return Effect.sync(() => {
          waiting = false
        })
      })
    })

  return {
    count,
    close: () => {
      if (idleTimer !== undefined) clearTimeout(idleTimer)
      return stop()
    }
  }
}

/** The worker-backed tokenizer, stopped with the layer's scope. */
export const layer: Layer.Layer<Tokenizer> = Layer.scoped(
  Tokenizer,
  Effect.acquireRelease(Effect.sync(makeWorkerTokenizer), (tokenizer) => Effect.promise(tokenizer.close))
)

const messageText = (message: ChatMessage): string => {
  const content = message.content
  if (content === undefined || content === null) return ""
  if (typeof content === "string") return content
  return content.map((part) => ("text" in part ? part.text : "refusal" in part ? part.refusal : "")).join("")
}

/**
 * The texts a prompt is made of, and the fixed tokens of OpenAI's chat format around them (3 per message, 3 to
 * prime the answer): what `countPrompt` adds up.
 */
export const promptTexts = (request: ChatCompletionRequest): { readonly texts: ReadonlyArray<string>; readonly overhead: number } => {
  const texts: Array<string> = []
  for (const message of request.messages) {
    texts.push(messageText(message))
    if (message.role === "assistant") for (const call of message.tool_calls ?? []) texts.push(call.function.name, call.function.arguments)
  }
  for (const tool of request.tools ?? []) texts.push(JSON.stringify(tool.function))
  return { texts, overhead: 3 * request.messages.length + 3 }
}
