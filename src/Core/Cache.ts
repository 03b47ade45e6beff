/**
 * The exact response cache, as the chat core uses it (Chat.ts calls it only for a model whose registry entry has
 * `cache:`; for any other model it costs one field read). A request's key is its canonical JSON without the fields
 * that do not change the answer, with the public model and (unless shared) the caller's key id (Cache/Key.ts).
 *
 * - `Cache-Control: no-store` neither reads nor writes (`bypass`); `no-cache` skips the lookup and stores the fresh
 *   answer (`bypass`); otherwise a found entry is a `hit`, else a `miss` whose answer is stored.
 * - Stored: only complete, successful answers. A completion as it was answered; a stream as the chunks it sent,
 *   once it ended with every choice's finish reason — a stream cut short (the client left, the upstream broke off, a
 *   deadline) or grown past `max_entry_bytes` is not stored.
 * - A hit replays what the client asked for: a stream as the stored chunks (or a stored completion split as an
 *   upstream would stream it), a completion as stored (or assembled from stored chunks). It passed the gate like any
 *   request and counts as one, with no tokens and no spend; its body's usage is the original's.
 * - A store that fails is a miss (read) or a lost entry (write): counted, logged at most every 10 s, never a failed
 *   request.
 */
import { Effect, Option, Runtime, Stream } from "effect"
import { cacheKey } from "../Cache/Key.js"
import { completionOfChunks, finishTracker, serializeCompletionJson, serializeEmbeddings, serializeStream } from "../Cache/Entry.js"
import type { CacheEntry, SerializedEntry } from "../Cache/Entry.js"
import * as MemoryCacheStore from "../Cache/MemoryStore.js"
import { CacheStore } from "../Cache/Store.js"
import type { StoreError } from "../Governance/Store.js"
import * as Metrics from "../Metrics.js"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { chunksOfCompletion } from "../OpenAi/Wire.js"
import type { ChunkTextSink } from "../OpenAi/Wire.js"
import { fromItems, pullOf, releaseOf } from "../Providers/ChunkSource.js"
import type { ChunkSource } from "../Providers/ChunkSource.js"
import { ProviderError } from "../Providers/ProviderError.js"
import type { Provider } from "../Providers/Provider.js"
import { ModelRegistry } from "../Router/Registry.js"
import type { Deployment } from "../Router/Registry.js"
import type { CachePolicy, CacheSettings } from "../Router/RegistryFile.js"
import { Timer } from "../Timer.js"
import type { AnswerHeaders, ChatError, Pass } from "./Gate.js"
import type { ChatAnswer } from "./Chat.js"
import type { EmbeddingsAnswer } from "./Embeddings.js"
import { inputCount } from "../OpenAi/Embeddings.js"
import type { EmbeddingRequest } from "../OpenAi/Embeddings.js"

/** What the client's `Cache-Control` asks of the cache. */
export type CacheDirective = "default" | "no-cache" | "no-store"

/** The directive of a request's `Cache-Control` header: `no-store` wins over `no-cache`; anything else is default. */
export const cacheDirectiveOf = (header: string | undefined): CacheDirective => {
  if (header === undefined || header.length === 0) return "default"
  let directive: CacheDirective = "default"
  for (const part of header.toLowerCase().split(",")) {
    const name = part.trim()
    if (name === "no-store") return "no-store"
    if (name === "no-cache") directive = "no-cache"
  }
  return directive
}

/** Logs a cache store failure at most once per this many milliseconds (a store that is down fails every request). */
const logIntervalMs = 10_000

const noUpstream: Effect.Effect<never, ProviderError> = Effect.fail(
  new ProviderError({ reason: "Unavailable", message: "A cached answer has no upstream", provider: "cache" })
)
const cacheProvider: Provider = { complete: () => noUpstream, open: () => noUpstream, embed: () => noUpstream }

/** The deployment a hit names in its headers and metrics: the public model asked for, provider `cache`. */
const cacheDeploymentOf = (name: string): Deployment => ({
  name,
  providerKind: "cache",
  upstreamModel: name,
  weight: 0,
  provider: cacheProvider,
  price: undefined
})

/** Chunks held beyond those whose JSON the writer has given: past this many, the recording serializes them itself. */
const maxUnwritten = 64

/** What a recording kept of a stream read to its end: its chunks' JSON, and whether every choice finished. */
interface Recorded {
  readonly texts: ReadonlyArray<string>
  readonly finished: boolean
}

/**
 * A committed stream's source that keeps the JSON of the chunks it passes, which makes the entry's text, and hands
 * it over once the stream has been read to its end; a failure, a close before the end or more than `maxChars` of
 * JSON drops it. The JSON is the writer's own, given to `sink` as it serializes each chunk (one serialization, not
 * two); a chunk the writer did not serialize whole (the usage it left out) is serialized here. The chunks
 * themselves are held only until then: a recorded stream keeps no more objects alive than any other.
 */
const recordingSource = (
  source: ChunkSource,
  maxChars: number,
  onEnd: (recorded: Recorded | "too_large") => void
): { readonly source: ChunkSource; readonly sink: ChunkTextSink } => {
  /** Chunks passed on whose JSON is not yet in `texts`, from `next` on. */
  let pending: Array<ChatCompletionChunk> = []
  let next = 0
  let texts: Array<string> | undefined = []
  let chars = 0
  let tooLarge = false
  let done = false
  const finish = finishTracker()
  const abandon = () => {
    done = true
    texts = undefined
    pending = []
  }
  const add = (text: string) => {
    if (texts === undefined) return
    chars += text.length + 1
    if (chars <= maxChars) {
      texts.push(text)
      return
    }
    tooLarge = true
    texts = undefined
    pending = []
  }
  /** Serializes the pending chunks before `until` itself; false if one cannot be. */
  const serializeUpTo = (until: number): boolean => {
    while (texts !== undefined && next < until) {
      let text: string
      try {
        text = JSON.stringify(pending[next])
      } catch {
        abandon()
        return false
      }
      next++
      add(text)
    }
    return true
  }
  const sink: ChunkTextSink = {
    wrote: (chunk, json) => {
      if (texts === undefined) return
      const at = pending[next] === chunk ? next : pending.indexOf(chunk, next)
      // Chunks the writer passed over or wrote in part are serialized here.
      if (at < 0 || !serializeUpTo(at)) return
      next++
      add(json)
      if (next === pending.length) {
        pending = []
        next = 0
      }
    }
  }
  const recording: ChunkSource = {
    poll: () => {
      const take = source.poll()
      if (done || take === undefined) return take
      if (Array.isArray(take)) {
        if (texts !== undefined) {
          for (const chunk of take as ReadonlyArray<ChatCompletionChunk>) {
            finish.note(chunk)
            pending.push(chunk)
          }
          if (pending.length - next > maxUnwritten) serializeUpTo(pending.length - maxUnwritten)
        }
      } else if (take === "end") {
        const serialized = serializeUpTo(pending.length)
        const kept = texts
        const large = tooLarge
        abandon()
        if (large) onEnd("too_large")
        else if (serialized && kept !== undefined) onEnd({ texts: kept, finished: finish.finished() })
      } else abandon()
      return take
    },
    onReady: source.onReady,
    close: () => {
      if (!done) abandon()
      source.close()
    },
    release: Effect.suspend(() => {
      if (!done) abandon()
      return releaseOf(source)
    })
  }
  return { source: recording, sink }
}

const timeoutError = (requestMs: number) =>
  new ProviderError({ reason: "Timeout", message: `The upstream did not answer in time (request within ${requestMs} ms)`, provider: "router" })

/** Builds the core's cache over the CacheStore, or a memory store of its own when none is provided. */
export const make = Effect.gen(function* () {
  const provided = yield* Effect.serviceOption(CacheStore)
  const store = Option.isSome(provided) ? provided.value : yield* MemoryCacheStore.make
  const timer = yield* Timer
  const registry = yield* ModelRegistry
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())

  let lastLog = Number.NEGATIVE_INFINITY
  const failed = (operation: "cache_read" | "cache_write", error: StoreError) => {
    Metrics.storeErrors.update(1, operation)
    const now = timer.now()
    if (now - lastLog < logIntervalMs) return Effect.void
    lastLog = now
    return Effect.logWarning("response cache store unavailable; served as a miss").pipe(Effect.annotateLogs({ operation, error: error.message }))
  }

  const headersOf = (base: AnswerHeaders, result: string, age?: number): AnswerHeaders =>
    age === undefined ? { ...base, "x-llm-proxy-cache": result } : { ...base, "x-llm-proxy-cache": result, age: String(age) }

  const withHeaders = <A extends { readonly headers: AnswerHeaders }>(answer: A, headers: AnswerHeaders): A => ({ ...answer, headers })

  const save = (model: string, key: string, serialized: SerializedEntry, policy: CachePolicy, settings: CacheSettings) => {
    if (serialized.bytes > settings.max_entry_bytes) return Metrics.cacheWrites.update(1, model, "too_large")
    Metrics.cacheWrites.update(1, model, "stored")
    const bounds = { maxEntries: settings.max_entries, maxBytes: settings.max_bytes }
    if (store.local !== undefined) return store.local.set(key, serialized, policy.ttl_s * 1000, bounds)
    runFork(store.set(key, serialized, policy.ttl_s * 1000, bounds).pipe(Effect.catchAll((error) => failed("cache_write", error))))
  }

  /** A routed answer, its completion stored or its stream recorded on the way to the client. */
  const storing = (answer: ChatAnswer, model: string, key: string, policy: CachePolicy, settings: CacheSettings): ChatAnswer => {
    if (answer._tag === "Completion") {
      const json = answer.json ?? JSON.stringify(answer.completion)
      save(model, key, serializeCompletionJson(key, timer.now(), json), policy, settings)
      return { ...answer, json }
    }
    const routed = answer.stream
    const { source, sink } = recordingSource(routed.source, settings.max_entry_bytes, (recorded) => {
      if (recorded === "too_large") return Metrics.cacheWrites.update(1, model, "too_large")
      if (!recorded.finished) return Metrics.cacheWrites.update(1, model, "unfinished")
      save(model, key, serializeStream(key, timer.now(), recorded.texts), policy, settings)
    })
    return {
      ...answer,
      sink,
      stream: { ...routed, source, chunks: Stream.repeatEffectChunkOption(pullOf(source)).pipe(Stream.ensuring(releaseOf(source))) }
    }
  }

  /** The answer a hit gives, in the shape the request asks for; none from an entry of another endpoint. */
  const replay = (entry: CacheEntry, request: ChatCompletionRequest, headers: AnswerHeaders): ChatAnswer | undefined => {
    if (entry.kind === "embeddings") return undefined
    const deployment = cacheDeploymentOf(request.model)
    if (request.stream !== true) {
      const served = { deployment, attempts: 0 }
      if (entry.kind === "stream") return { _tag: "Completion", completion: completionOfChunks(entry.chunks), served, headers }
      const json = entry.completionJson
      if (json === undefined) return { _tag: "Completion", completion: entry.completion, served, headers }
      // The transports write `json`; the completion is decoded only for a caller that reads it.
      return {
        _tag: "Completion",
        get completion() {
          return entry.completion
        },
        served,
        headers,
        json
      }
    }
    const chunks = entry.kind === "stream" ? entry.chunks : chunksOfCompletion(entry.completion)
    const requestMs = registry.current().settings.timeouts.request_ms
    return {
      _tag: "Stream",
      headers,
      stream: {
        source: fromItems(chunks),
        chunks: Stream.fromIterable(chunks),
        deadline: { at: timer.now() + requestMs, timer, onTimeout: () => timeoutError(requestMs) },
        deployment,
        attempts: 0
      }
    }
  }

  /**
   * Serves a request for a model with `policy`: from the cache (`replay` of the entry under its key), or by `route`
   * (the request routed and accounted like every other), its answer stored by `storing` unless the client said
   * `no-store`.
   */
  const cached = <A extends { readonly headers: AnswerHeaders }>(
    request: { readonly model: string },
    endpoint: "chat" | "embeddings",
    pass: Pass,
    policy: CachePolicy,
    directive: CacheDirective,
    route: () => Effect.Effect<A, ChatError>,
    storing: (answer: A, key: string, settings: CacheSettings) => A,
    replay: (entry: CacheEntry, headers: AnswerHeaders) => A | undefined
  ): Effect.Effect<A, ChatError> => {
    const { record } = pass
    const model = request.model
    const counted = (result: "hit" | "miss" | "bypass") => {
      Metrics.cacheRequests.update(1, model, result)
      if (record !== undefined) record.cache = result
    }
    if (directive === "no-store") {
      counted("bypass")
      return Effect.map(route(), (answer) => withHeaders(answer, headersOf(answer.headers, "bypass")))
    }
    const settings = registry.current().settings.cache
    const key = cacheKey(request, model, policy.shared ? undefined : pass.caller.id, endpoint)
    const routeAndStore = (result: "miss" | "bypass") => {
      counted(result)
      return Effect.map(route(), (answer) => storing(withHeaders(answer, headersOf(answer.headers, result)), key, settings))
    }
    if (directive === "no-cache") return routeAndStore("bypass")
    const found = (entry: CacheEntry | undefined): Effect.Effect<A, ChatError> => {
      const age = entry === undefined ? 0 : Math.max(0, Math.floor((timer.now() - entry.createdAt) / 1000))
      const answer = entry === undefined ? undefined : replay(entry, headersOf(pass.headers, "hit", age))
      if (answer === undefined) return routeAndStore("miss")
      counted("hit")
      if (record !== undefined) {
        record.provider = "cache"
        record.attempts = 0
      }
      pass.finishCached()
      return Effect.succeed(answer)
    }
    if (store.local !== undefined) return found(store.local.get(key, settings.max_entry_bytes))
    return Effect.flatMap(
      Effect.catchAll(store.get(key, settings.max_entry_bytes), (error) => Effect.as(failed("cache_read", error), undefined)),
      found
    )
  }

  /** A chat request for a model with `policy`, from the cache or routed by `route` and stored. */
  const serve = (request: ChatCompletionRequest, pass: Pass, policy: CachePolicy, directive: CacheDirective, route: () => Effect.Effect<ChatAnswer, ChatError>) =>
    cached(
      request,
      "chat",
      pass,
      policy,
      directive,
      route,
      (answer, key, settings) => storing(answer, request.model, key, policy, settings),
      (entry, headers) => replay(entry, request, headers)
    )

  /** An embeddings request for a model with `policy`, from the cache (the same number of vectors) or routed and stored. */
  const serveEmbeddings = (request: EmbeddingRequest, pass: Pass, policy: CachePolicy, directive: CacheDirective, route: () => Effect.Effect<EmbeddingsAnswer, ChatError>) =>
    cached(
      request,
      "embeddings",
      pass,
      policy,
      directive,
      route,
      (answer, key, settings) => {
        save(request.model, key, serializeEmbeddings(key, timer.now(), answer.vectors, answer.usage), policy, settings)
        return answer
      },
      (entry, headers): EmbeddingsAnswer | undefined =>
        entry.kind === "embeddings" && entry.vectors.length === inputCount(request.input)
          ? { vectors: entry.vectors, usage: entry.usage, served: { deployment: cacheDeploymentOf(request.model), attempts: 0 }, headers }
          : undefined
    )

  return { serve, serveEmbeddings }
})

/** The core's cache. */
export type ResponseCache = Effect.Effect.Success<typeof make>
