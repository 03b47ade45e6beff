/**
 * Where stored responses live (`store: true`): the response object, the input it answered (its history included) and
 * the key that made it, under the response's id. In the process's memory (the response cache's text LRU, bounded by
 * `settings.responses`) by default, or in Redis (`REDIS_URL`, shared by every replica, each entry expiring with its
 * ttl). What comes back is checked before the core uses it: a bad or oversized entry reads as absent.
 */
import { Context, Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { makeLru } from "../Cache/MemoryStore.js"
import { scopedQuietRedis } from "../Cache/RedisStore.js"
import { ProxyConfig } from "../Config.js"
import { StoreError } from "../Governance/Store.js"
import { isResponseObject } from "../Providers/OpenAiCompatible/Responses.js"
import { Timer } from "../Timer.js"

/** One stored response. */
export interface StoredResponse {
  /** The key id of the caller that made it (the operator's is `operator`): no other caller sees it. */
  readonly owner: string
  readonly response: Readonly<Record<string, unknown>>
  /** The items it answered: the history of its `previous_response_id`, then its own input. */
  readonly input: ReadonlyArray<unknown>
}

/** The bounds of one store call (`settings.responses`). */
export interface ResponsesStoreBounds {
  readonly ttlMs: number
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntryBytes: number
}

/** The stored responses. */
export interface ResponsesStoreService {
  readonly kind: "memory" | "redis"
  /** The response stored under `id`, checked, or `undefined`; fails when the store cannot be reached. */
  readonly get: (id: string, bounds: ResponsesStoreBounds) => Effect.Effect<StoredResponse | undefined, StoreError>
  /** Stores `stored` under its response's id; an entry over `maxEntryBytes` is not stored (`false`). */
  readonly put: (stored: StoredResponse, bounds: ResponsesStoreBounds) => Effect.Effect<boolean, StoreError>
  /** Deletes the response stored under `id`; whether there was one. */
  readonly delete: (id: string) => Effect.Effect<boolean, StoreError>
}

export class ResponsesStore extends Context.Tag("llm-proxy/ResponsesStore")<ResponsesStore, ResponsesStoreService>() {}

const entryFormat = "llm-proxy.response"

/** A stored response as the text the store keeps. */
export const serializeStored = (stored: StoredResponse): { readonly text: string; readonly bytes: number } => {
  const text = JSON.stringify({ format: entryFormat, version: 1, owner: stored.owner, response: stored.response, input: stored.input })
  return { text, bytes: Buffer.byteLength(text) }
}

/** A stored text read back: a stored response with the id asked for, or `undefined`. */
export const decodeStored = (text: string, id: string): StoredResponse | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== "object" || value === null) return undefined
    const entry = value as Readonly<Record<string, unknown>>
    const owner = entry["owner"]
    const response = entry["response"]
    const input = entry["input"]
    if (entry["format"] !== entryFormat || typeof owner !== "string" || !isResponseObject(response) || response["id"] !== id || !Array.isArray(input)) return undefined
    return { owner, response, input }
  } catch {
    return undefined
  }
}

const idOf = (stored: StoredResponse): string => String(stored.response["id"])

/** The memory store: the response cache's LRU of bytes, bounded by `settings.responses`. */
export const makeMemory: Effect.Effect<ResponsesStoreService> = Effect.map(Timer, (timer) => {
  const lru = makeLru(timer)
  return {
    kind: "memory",
    get: (id, bounds) =>
      Effect.sync(() => {
        const text = lru.get(id)
        return text === undefined || Buffer.byteLength(text) > bounds.maxEntryBytes ? undefined : decodeStored(text, id)
      }),
    put: (stored, bounds) =>
      Effect.sync(() => {
        const { bytes, text } = serializeStored(stored)
        if (bytes > bounds.maxEntryBytes) return false
        lru.set(idOf(stored), text, bytes, bounds.ttlMs, bounds)
        return true
      }),
    delete: (id) => Effect.sync(() => lru.delete(id))
  }
})

/** The Redis key of a stored response. */
export const redisKeyOf = (prefix: string, id: string): string => `${encodeURIComponent(prefix)}:response:${encodeURIComponent(id)}`

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/**
 * The Redis store: one key per response, `<prefix>:response:<id>`, written with `SET … PX <ttl>` and read with
 * `GETRANGE` up to the entry bound (an oversized value is never read whole). Its own connection; like the cache it
 * never waits for a Redis that is down.
 */
export const makeRedis = (url: string, prefix = "llmp"): Effect.Effect<ResponsesStoreService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* scopedQuietRedis(url, 1000)
    const call = <A>(what: string, attempt: () => Promise<A>) =>
      Effect.tryPromise({ try: attempt, catch: (cause) => new StoreError({ message: `Redis responses: ${what} failed: ${describe(cause)}`, cause }) })
    return {
      kind: "redis",
      get: (id, bounds) =>
        Effect.map(call("get", () => redis.getrangeBuffer(redisKeyOf(prefix, id), 0, bounds.maxEntryBytes)), (bytes) =>
          bytes.length === 0 || bytes.length > bounds.maxEntryBytes ? undefined : decodeStored(bytes.toString("utf8"), id)
        ),
      put: (stored, bounds) => {
        const { bytes, text } = serializeStored(stored)
        if (bytes > bounds.maxEntryBytes) return Effect.succeed(false)
        return Effect.as(call("set", () => redis.set(redisKeyOf(prefix, idOf(stored)), text, "PX", Math.max(1, Math.round(bounds.ttlMs)))), true)
      },
      delete: (id) => Effect.map(call("delete", () => redis.del(redisKeyOf(prefix, id))), (count) => count > 0)
    } satisfies ResponsesStoreService
  })

/** The memory store as the service. */
export const layerMemory: Layer.Layer<ResponsesStore> = Layer.effect(ResponsesStore, makeMemory)

/** The Redis store on `url` (keys under `prefix`) as the service. */
export const layerRedis = (url: string, prefix?: string): Layer.Layer<ResponsesStore> => Layer.scoped(ResponsesStore, makeRedis(url, prefix))

/** The store `REDIS_URL` names (keys under `REDIS_KEY_PREFIX`), or memory. */
export const layerConfig: Layer.Layer<ResponsesStore, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.map(ProxyConfig, (config) =>
    Option.match(Option.map(config.redisUrl, Redacted.value), { onNone: () => layerMemory, onSome: (url) => layerRedis(url, config.redisKeyPrefix) })
  )
)
