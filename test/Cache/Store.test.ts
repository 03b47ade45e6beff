/**
 * The response cache's stores and the core on a TestClock: the memory LRU stays within its entries and bytes under
 * many distinct entries, least recently used out first; entries expire with their model's ttl (the core, driven by
 * the TestClock, asks the upstream again once it has passed).
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { Effect, Layer, Stream, TestClock } from "effect"
import { serializeCompletion } from "../../src/Cache/Entry.js"
import * as MemoryCacheStore from "../../src/Cache/MemoryStore.js"
import * as ChatCore from "../../src/Core/Chat.js"
import * as MemoryStore from "../../src/Governance/MemoryStore.js"
import * as Tokenizer from "../../src/Governance/Tokenizer.js"
import { operator } from "../../src/Http/Auth.js"
import type { ChatCompletion } from "../../src/OpenAi/Schemas.js"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import * as Router from "../../src/Router/Router.js"
import * as Timer from "../../src/Timer.js"

const completion = (content: string): ChatCompletion => ({
  id: "chatcmpl-x",
  object: "chat.completion",
  created: 1,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, finish_reason: "stop", logprobs: null }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
})

describe("the memory cache store", () => {
  it.effect("many distinct entries: never more than max_entries nor max_bytes, the least recently used out first", () =>
    Effect.gen(function* () {
      const store = yield* MemoryCacheStore.make
      const bounds = { maxEntries: 50, maxBytes: 20_000 }
      const entries = Array.from({ length: 1000 }, (_, index) => serializeCompletion(`k${index}`, 0, completion(`answer ${index} ${"x".repeat(index % 300)}`)))
      for (const [index, entry] of entries.entries()) {
        yield* store.set(`k${index}`, entry, 60_000, bounds)
        // k0 is read after every write: it stays the most recently used, and is never evicted
        if (index > 0) expect(yield* store.get("k0", 1 << 20)).toBeDefined()
        const size = store.size()
        expect(size.entries).toBeLessThanOrEqual(bounds.maxEntries)
        expect(size.bytes).toBeLessThanOrEqual(bounds.maxBytes)
      }
      expect(yield* store.get("k999", 1 << 20)).toBeDefined()
      expect(yield* store.get("k1", 1 << 20)).toBeUndefined()
      // the bytes counted are the entries' serialized size
      const kept = entries.filter((_, index) => index === 0 || index > 900)
      let counted = 0
      for (const entry of kept) if ((yield* store.get(entry.key, 1 << 20)) !== undefined) counted += entry.bytes
      expect(store.size().bytes).toBe(counted)
      // an entry larger than max_bytes is not kept at all, and replaces nothing else
      const huge = serializeCompletion("huge", 0, completion("y".repeat(30_000)))
      yield* store.set("huge", huge, 60_000, bounds)
      expect(yield* store.get("huge", 1 << 20)).toBeUndefined()
      expect(yield* store.get("k0", 1 << 20)).toBeDefined()
    }).pipe(Effect.provide(Timer.layerTest)))

  it.effect("any sequence of stores and reads keeps exactly what a reference LRU keeps", () =>
    Effect.gen(function* () {
      const entries = Array.from({ length: 12 }, (_, index) => serializeCompletion(`k${index}`, 0, completion("x".repeat(index * 40))))
      const bounds = { maxEntries: 5, maxBytes: 2_000 }
      const operations = fc.sample(fc.array(fc.record({ store: fc.boolean(), index: fc.nat({ max: 11 }) }), { minLength: 1, maxLength: 80 }), 60)
      for (const sequence of operations) {
        const store = yield* MemoryCacheStore.make
        // the reference: keys from least to most recently used
        let reference: Array<number> = []
        const referenceBytes = () => reference.reduce((sum, index) => sum + entries[index]!.bytes, 0)
        for (const { index, store: storing } of sequence) {
          if (storing) {
            yield* store.set(`k${index}`, entries[index]!, 60_000, bounds)
            reference = [...reference.filter((other) => other !== index), index]
            while (reference.length > bounds.maxEntries || referenceBytes() > bounds.maxBytes) reference.shift()
          } else {
            const found = yield* store.get(`k${index}`, 1 << 20)
            expect(found !== undefined).toBe(reference.includes(index))
            if (found !== undefined) reference = [...reference.filter((other) => other !== index), index]
          }
          expect(store.size()).toEqual({ entries: reference.length, bytes: referenceBytes() })
        }
      }
    }).pipe(Effect.provide(Timer.layerTest)))

  it.effect("an entry expires with its ttl (TestClock)", () =>
    Effect.gen(function* () {
      const store = yield* MemoryCacheStore.make
      yield* store.set("k", serializeCompletion("k", 0, completion("a")), 5_000, { maxEntries: 10, maxBytes: 1 << 20 })
      yield* TestClock.adjust(4_999)
      expect(yield* store.get("k", 1 << 20)).toBeDefined()
      yield* TestClock.adjust(1)
      expect(yield* store.get("k", 1 << 20)).toBeUndefined()
      expect(store.size().entries).toBe(0)
    }).pipe(Effect.provide(Timer.layerTest)))
})

describe("the core's cache on the TestClock", () => {
  it.scoped("a hit until the model's ttl has passed, then the upstream again; age in whole seconds", () =>
    Effect.gen(function* () {
      let calls = 0
      const provider: StreamProvider = {
        complete: () => Effect.sync(() => completion(`answer ${calls++}`)),
        stream: () => Stream.die("not streamed")
      }
      const core = yield* ChatCore.ChatCore.pipe(
        Effect.provide(
          ChatCore.layer.pipe(
            Layer.provide(Router.layer),
            Layer.provide(Registry.layerStatic([{ name: "m", provider, cache: { ttl_s: 30, shared: false } }])),
            Layer.provide(Layer.merge(MemoryStore.layer, Tokenizer.layer)),
            Layer.provide(Timer.layerTest)
          )
        )
      )
      const ask = Effect.map(core.chat({ model: "m", messages: [{ role: "user", content: "hi" }] }, operator), (answer) => {
        if (answer._tag !== "Completion") throw new Error("a completion was expected")
        return { content: answer.completion.choices[0]?.message.content, headers: answer.headers }
      })
      expect(yield* ask).toMatchObject({ content: "answer 0", headers: { "x-llm-proxy-cache": "miss" } })
      yield* TestClock.adjust(12_500)
      expect(yield* ask).toMatchObject({ content: "answer 0", headers: { "x-llm-proxy-cache": "hit", age: "12" } })
      yield* TestClock.adjust(17_499)
      expect(yield* ask).toMatchObject({ content: "answer 0", headers: { "x-llm-proxy-cache": "hit", age: "29" } })
      yield* TestClock.adjust(1)
      expect(yield* ask).toMatchObject({ content: "answer 1", headers: { "x-llm-proxy-cache": "miss" } })
      expect(calls).toBe(2)
    }))
})
