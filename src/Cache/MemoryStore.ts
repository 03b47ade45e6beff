/**
 * The response cache in memory: one process's, least recently used first out, bounded by `settings.cache`
 * (`max_entries`, and `max_bytes` of the entries' serialized size). Each entry expires with its ttl, checked on read
 * against the `Timer` (tests drive it with a TestClock). Entries are held as their serialized text — one string
 * each, which the garbage collector never has to trace through, where the values of a full cache (a stream's chunks,
 * their choices and deltas) would be a million objects in the old generation — and read back as Redis's are.
 */
import { Effect, Layer } from "effect"
import { Timer } from "../Timer.js"
import { decodeEntry } from "./Entry.js"
import type { CacheEntry, SerializedEntry } from "./Entry.js"
import { CacheStore } from "./Store.js"
import type { CacheBounds, CacheStoreService } from "./Store.js"

interface Held {
  readonly text: string
  readonly bytes: number
  readonly expiresAt: number
}

/** The memory store, with its size for tests that check its bounds. */
export interface MemoryCacheStoreService extends CacheStoreService {
  readonly size: () => { readonly entries: number; readonly bytes: number }
}

/** A memory store on the current Timer. */
export const make: Effect.Effect<MemoryCacheStoreService> = Effect.map(Timer, (timer) => {
  // A Map iterates in insertion order: a hit re-inserts its entry, so the first one is the least recently used.
  const held = new Map<string, Held>()
  let bytes = 0
  const drop = (key: string, found: Held) => {
    held.delete(key)
    bytes -= found.bytes
  }
  const get = (key: string, maxBytes: number) =>
    Effect.sync((): CacheEntry | undefined => {
      const found = held.get(key)
      if (found === undefined) return undefined
      const entry = found.expiresAt <= timer.now() ? undefined : decodeEntry(found.text, key, maxBytes)
      if (entry === undefined) {
        drop(key, found)
        return undefined
      }
      held.delete(key)
      held.set(key, found)
      return entry
    })
  const set = (key: string, serialized: SerializedEntry, ttlMs: number, bounds: CacheBounds) =>
    Effect.sync(() => {
      const previous = held.get(key)
      if (previous !== undefined) drop(key, previous)
      if (serialized.bytes > bounds.maxBytes) return
      held.set(key, { text: serialized.text, bytes: serialized.bytes, expiresAt: timer.now() + ttlMs })
      bytes += serialized.bytes
      for (const [oldest, found] of held) {
        if (held.size <= bounds.maxEntries && bytes <= bounds.maxBytes) break
        drop(oldest, found)
      }
    })
  return { kind: "memory", get, set, size: () => ({ entries: held.size, bytes }) } satisfies MemoryCacheStoreService
})

export const layer: Layer.Layer<CacheStore> = Layer.effect(CacheStore, make)
