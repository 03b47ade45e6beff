/**
 * The response cache in memory: one process's, least recently used first out, bounded by `settings.cache`
 * (`max_entries`, and `max_bytes` of the entries' serialized size). Each entry expires with its ttl, checked on read
 * against the `Timer` (tests drive it with a TestClock). Entries are held as their serialized bytes, off the
 * JavaScript heap — the values of a full cache (a stream's chunks, their choices and deltas) would be a million
 * objects in the old generation for every collection to mark and move — and read back as Redis's are.
 *
 * The recency order is a doubly linked list beside the Map: a full cache evicts one entry per store in O(1). (A Map's
 * own insertion order, evicted by iterating from its start, costs a walk over the holes its deletions leave until
 * the next rehash: the benchmark's misses on a full cache paid tens of microseconds each.)
 */
import { Effect, Layer } from "effect"
import { Timer } from "../Timer.js"
import type { TimerService } from "../Timer.js"
import { decodeEntry } from "./Entry.js"
import type { CacheEntry, SerializedEntry } from "./Entry.js"
import { CacheStore } from "./Store.js"
import type { CacheBounds, CacheStoreService } from "./Store.js"

interface Held {
  readonly key: string
  /** The serialized entry, off the JavaScript heap: an ArrayBuffer of its own (never a slice of a shared pool). */
  readonly data: Buffer
  readonly bytes: number
  readonly expiresAt: number
  /** Less recently used. */
  older: Held | undefined
  /** More recently used. */
  newer: Held | undefined
}

/** The memory store, with its size for tests that check its bounds. */
export interface MemoryCacheStoreService extends CacheStoreService {
  readonly size: () => { readonly entries: number; readonly bytes: number }
}

/**
 * A least-recently-used map of texts held as bytes, each with its ttl, bounded by `bounds` at every store: the
 * response cache's and the stored responses' (src/Responses/Store.ts) memory.
 */
export interface ByteLru {
  /** The text under `key`, made the most recently used; `undefined` when absent or expired (then dropped). */
  readonly get: (key: string) => string | undefined
  /** Stores `text` (`bytes` long in UTF-8) under `key` for `ttlMs`, evicting the least recently used past `bounds`. */
  readonly set: (key: string, text: string, bytes: number, ttlMs: number, bounds: CacheBounds) => void
  /** Drops `key`; whether it was held (and not expired). */
  readonly delete: (key: string) => boolean
  readonly size: () => { readonly entries: number; readonly bytes: number }
}

/** A byte LRU on `timer`. */
export const makeLru = (timer: TimerService): ByteLru => {
  const held = new Map<string, Held>()
  let oldest: Held | undefined
  let newest: Held | undefined
  let bytes = 0

  const unlink = (entry: Held) => {
    if (entry.older === undefined) oldest = entry.newer
    else entry.older.newer = entry.newer
    if (entry.newer === undefined) newest = entry.older
    else entry.newer.older = entry.older
    entry.older = undefined
    entry.newer = undefined
  }
  const linkNewest = (entry: Held) => {
    entry.older = newest
    entry.newer = undefined
    if (newest === undefined) oldest = entry
    else newest.newer = entry
    newest = entry
  }
  const drop = (entry: Held) => {
    held.delete(entry.key)
    unlink(entry)
    bytes -= entry.bytes
  }

  const get = (key: string): string | undefined => {
    const found = held.get(key)
    if (found === undefined) return undefined
    if (found.expiresAt <= timer.now()) {
      drop(found)
      return undefined
    }
    if (found !== newest) {
      unlink(found)
      linkNewest(found)
    }
    return found.data.toString("utf8")
  }

  const set = (key: string, text: string, size: number, ttlMs: number, bounds: CacheBounds) => {
    const previous = held.get(key)
    if (previous !== undefined) drop(previous)
    if (size > bounds.maxBytes) return
    const data = Buffer.allocUnsafeSlow(size)
    data.write(text, "utf8")
    const entry: Held = { key, data, bytes: size, expiresAt: timer.now() + ttlMs, older: undefined, newer: undefined }
    held.set(key, entry)
    linkNewest(entry)
    bytes += size
    while (oldest !== undefined && (held.size > bounds.maxEntries || bytes > bounds.maxBytes)) drop(oldest)
  }

  const remove = (key: string): boolean => {
    const found = held.get(key)
    if (found === undefined) return false
    drop(found)
    return found.expiresAt > timer.now()
  }

  return { get, set, delete: remove, size: () => ({ entries: held.size, bytes }) }
}

/** A memory store on the current Timer. */
export const make: Effect.Effect<MemoryCacheStoreService> = Effect.map(Timer, (timer) => {
  const lru = makeLru(timer)

  const get = (key: string, maxBytes: number) =>
    Effect.sync((): CacheEntry | undefined => {
      const text = lru.get(key)
      if (text === undefined) return undefined
      const entry = decodeEntry(text, key, maxBytes)
      if (entry === undefined) lru.delete(key)
      return entry
    })

  const set = (key: string, serialized: SerializedEntry, ttlMs: number, bounds: CacheBounds) =>
    Effect.sync(() => lru.set(key, serialized.text, serialized.bytes, ttlMs, bounds))

  return { kind: "memory", get, set, size: lru.size } satisfies MemoryCacheStoreService
})

export const layer: Layer.Layer<CacheStore> = Layer.effect(CacheStore, make)
