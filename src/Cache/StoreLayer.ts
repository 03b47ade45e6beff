/**
 * Which store the response cache runs on, by the same choice as governance: Redis when `REDIS_URL` is set (shared by
 * every replica, under `REDIS_KEY_PREFIX`), memory otherwise.
 */
import { Effect, Layer, Option, Redacted } from "effect"
import { ProxyConfig } from "../Config.js"
import * as MemoryStore from "./MemoryStore.js"
import * as RedisStore from "./RedisStore.js"
import type { CacheStore } from "./Store.js"

/** The Redis cache on `redisUrl` (its keys under `prefix`), or the memory cache when there is none. */
export const fromUrl = (redisUrl: Option.Option<string>, prefix?: string): Layer.Layer<CacheStore> =>
  Option.match(redisUrl, {
    onNone: () => MemoryStore.layer,
    onSome: (url) => RedisStore.layer(url, prefix === undefined ? {} : { prefix })
  })

/** The cache store `REDIS_URL` names, or memory. */
export const layerConfig: Layer.Layer<CacheStore, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.map(ProxyConfig, (config) => fromUrl(Option.map(config.redisUrl, Redacted.value), config.redisKeyPrefix))
)
