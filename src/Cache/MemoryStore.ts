/**
 * The response cache in memory: one process's, least recently used first out, bounded by `settings.cache`
 * (`max_entries`, and `max_bytes` of the entries' serialized size). Each entry expires with its ttl, checked on read
 * against the `Timer` (tests drive it with a TestClock). Entries are held as their serialized text — the values of
 * a full cache (a stream's chunks, their choices and deltas) would be a million objects in the old generation for
 * every collection to mark and move, where a string is one object with nothing in it to mark — and read back as
 * Redis's are. (A Buffer per entry, off the heap, adds an ArrayBuffer and a backing store to allocate, account and
 * free on every write, and saved no collection time in the benchmark.)
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
  /** The serialized entry. */
  readonly text: string
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
 * A least-recently-used map of texts, each with its ttl, bounded by `bounds` at every store: the response cache's
 * memory and the stored responses' (src/Responses/Store.ts).
 */
export interface TextLru {
  /** The text under `key`, made the most recently used; `undefined` when absent or expired (then dropped). */
  readonly get: (key: string) => string | undefined
  /** Stores `text` (`bytes` long in UTF-8) under `key` for `ttlMs`, evicting the least recently used past `bounds`. */
  readonly set: (key: string, text: string, bytes: number, ttlMs: number, bounds: CacheBounds) => void
  /** Drops `key`; whether it was held (and not expired). */
  readonly delete: (key: string) => boolean
  readonly size: () => { readonly entries: number; readonly bytes: number }
}

/** A text LRU on `timer`. */
export const makeLru = (timer: TimerService): TextLru => {
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
    return found.text
  }

  const set = (key: string, text: string, size: number, ttlMs: number, bounds: CacheBounds): void => {
    const previous = held.get(key)
    if (previous !== undefined) drop(previous)
    if (size > bounds.maxBytes) return
    const entry: Held = { key, text, bytes: size, expiresAt: timer.now() + ttlMs, older: undefined, newer: undefined }
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

  const getNow = (key: string, maxBytes: number): CacheEntry | undefined => {
    const text = lru.get(key)
    if (text === undefined) return undefined
    const entry = decodeEntry(text, key, maxBytes, true)
    if (entry === undefined) lru.delete(key)
    return entry
  }

  const setNow = (key: string, serialized: SerializedEntry, ttlMs: number, bounds: CacheBounds): void =>
    lru.set(key, serialized.text, serialized.bytes, ttlMs, bounds)

  return {
    kind: "memory",
    get: (key, maxBytes) => Effect.sync(() => getNow(key, maxBytes)),
    set: (key, serialized, ttlMs, bounds) => Effect.sync(() => setNow(key, serialized, ttlMs, bounds)),
    local: { get: getNow, set: setNow },
    size: lru.size
  } satisfies MemoryCacheStoreService
})

export const layer: Layer.Layer<CacheStore> = Layer.effect(CacheStore, make)
