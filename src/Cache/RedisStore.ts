/**
 * The response cache on Redis (ioredis 5), shared by every replica: one key per entry, `<prefix>:cache:<sha256>`,
 * written with `SET … PX <ttl>` (Redis expires it; no other bound) and read with `GETRANGE` up to the entry bound,
 * so that an oversized value is never read whole. Its own connection, apart from the governance store's: a large
 * entry never queues an admission behind it. Like the governance store it never waits for a Redis that is down:
 * commands fail at once (a miss for the core) and the connection comes back by itself.
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { scopedRedis } from "../Governance/RedisStore.js"
import { StoreError } from "../Governance/Store.js"
import { decodeEntry } from "./Entry.js"
import type { SerializedEntry } from "./Entry.js"
import { CacheStore } from "./Store.js"
import type { CacheStoreService } from "./Store.js"

/** Options of the Redis cache store. */
export interface RedisCacheOptions {
  readonly url: string
  /** Begins every key (default `llmp`), as the governance store's do. */
  readonly prefix?: string | undefined
  /** How long one command may take before it fails (default 1000 ms). */
  readonly commandTimeoutMs?: number | undefined
}

/**
 * A connection of its own that never waits for a Redis that is down (commands fail at once, no offline queue) and
 * comes back by itself; its errors are the caller's to count (the governance store logs Redis going and coming).
 * The response cache's and the stored responses'.
 */
export const scopedQuietRedis = (url: string, commandTimeoutMs: number) =>
  Effect.tap(
    scopedRedis(url, {
      connectTimeout: 2000,
      commandTimeout: commandTimeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 200, 1000),
      lazyConnect: false
    }),
    (redis) => redis.on("error", () => {})
  )

/** The Redis key of a cache key. */
export const redisKeyOf = (prefix: string, key: string): string => `${encodeURIComponent(prefix)}:cache:${key}`

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** A Redis cache store, connected in the background; the scope closes the connection. */
export const make = (options: RedisCacheOptions): Effect.Effect<CacheStoreService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const prefix = options.prefix ?? "llmp"
    const redis = yield* scopedQuietRedis(options.url, options.commandTimeoutMs ?? 1000)

    const call = <A>(what: string, attempt: () => Promise<A>) =>
      Effect.tryPromise({
        try: attempt,
        catch: (cause) => new StoreError({ message: `Redis cache: ${what} failed: ${describe(cause)}`, cause })
      })

    const get = (key: string, maxBytes: number) =>
      Effect.map(
        // One byte past the bound tells an oversized entry from one that fits.
        call("get", () => redis.getrangeBuffer(redisKeyOf(prefix, key), 0, maxBytes)),
        (bytes) => (bytes.length === 0 || bytes.length > maxBytes ? undefined : decodeEntry(bytes.toString("utf8"), key, maxBytes))
      )

    const set = (key: string, entry: SerializedEntry, ttlMs: number) =>
      Effect.asVoid(call("set", () => redis.set(redisKeyOf(prefix, key), entry.text, "PX", Math.max(1, Math.round(ttlMs)))))

    return { kind: "redis", get, set } satisfies CacheStoreService
  })

/** The Redis cache store as the `CacheStore` service. */
export const layer = (url: string, options?: Omit<RedisCacheOptions, "url">): Layer.Layer<CacheStore> =>
  Layer.scoped(CacheStore, make({ ...options, url }))
