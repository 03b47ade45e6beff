/**
 * Which governance store the gateway runs on: Redis when a URL is configured (exact across replicas), memory
 * otherwise (exact within one process).
 */
import { Effect, Layer, Option, Redacted } from "effect"
import { ProxyConfig } from "../Config.js"
import * as MemoryStore from "./MemoryStore.js"
import * as RedisStore from "./RedisStore.js"
import type { Store } from "./Store.js"

/** The Redis store on `redisUrl` (its keys under `prefix`), or the memory store when there is none. */
export const fromUrl = (redisUrl: Option.Option<string>, prefix?: string): Layer.Layer<Store> =>
  Option.match(redisUrl, {
    onNone: () => MemoryStore.layer,
    onSome: (url) => RedisStore.layer(url, prefix === undefined ? {} : { prefix })
  })

/** The store `REDIS_URL` names, or memory. */
export const layerConfig: Layer.Layer<Store, never, ProxyConfig> = Layer.unwrapEffect(
  Effect.map(ProxyConfig, (config) => fromUrl(Option.map(config.redisUrl, Redacted.value), config.redisKeyPrefix))
)
