/**
 * Where cached answers live: in the process's memory (an LRU bounded in entries and bytes, the default) or in Redis
 * (`REDIS_URL`, shared by every replica, each entry expiring with its ttl). The store keeps what it is given and
 * gives back what it has; the core decides what is stored and checks what comes back.
 */
import { Context } from "effect"
import type { Effect } from "effect"
import type { StoreError } from "../Governance/Store.js"
import type { CacheEntry, SerializedEntry } from "./Entry.js"

/** The memory store's bounds (`settings.cache`); Redis keeps entries for their ttl only. */
export interface CacheBounds {
  readonly maxEntries: number
  readonly maxBytes: number
}

/** A response cache store. */
export interface CacheStoreService {
  readonly kind: "memory" | "redis"
  /**
   * The entry stored under `key`, checked (a bad, foreign or oversized one is `undefined`, never served), or
   * `undefined`; fails when the store cannot be reached. `maxBytes` bounds what is read.
   */
  readonly get: (key: string, maxBytes: number) => Effect.Effect<CacheEntry | undefined, StoreError>
  /** Stores `entry` under `key` for `ttlMs`, replacing what was there. */
  readonly set: (key: string, entry: SerializedEntry, ttlMs: number, bounds: CacheBounds) => Effect.Effect<void, StoreError>
  /**
   * The same two operations done at once, for a store in this process that cannot fail (the memory store): the core
   * calls these on every request of a cached model, where an Effect (and, for a write, a fiber) would be most of a
   * miss's cost.
   */
  readonly local?: {
    readonly get: (key: string, maxBytes: number) => CacheEntry | undefined
    readonly set: (key: string, entry: SerializedEntry, ttlMs: number, bounds: CacheBounds) => void
  }
}

export class CacheStore extends Context.Tag("llm-proxy/CacheStore")<CacheStore, CacheStoreService>() {}
