/**
 * Properties of the response cache's pure parts. Entries read back from a store: whatever bytes sit under a key
 * (random text, hostile JSON, a real entry mutated anywhere), decoding never throws and never yields anything but a
 * finished, spec-valid answer stored under that very key and within the size bound — and every way a hit is replayed
 * (assembled or split) is spec-valid too. Keys: the order of fields and the fields that do not change the answer
 * never change the key; any other change does, as do the model and the tenant.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { completionOfChunks, decodeEntry, isFinished, serializeCompletion, serializeEmbeddings, serializeStream } from "../../src/Cache/Entry.js"
import type { CacheEntry } from "../../src/Cache/Entry.js"
import { cacheKey, canonicalJson, ignoredFields } from "../../src/Cache/Key.js"
import type { ChatCompletion, ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import { chunksOfCompletion, completionOf } from "../../src/OpenAi/Wire.js"
import { jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import { openAiCompletions } from "../support/FuzzFixtures.js"
import { expectClientChunk, expectClientCompletion, fuzzRuns, preview } from "../support/FuzzSpec.js"

const key = "a".repeat(64)

const completions: ReadonlyArray<ChatCompletion> = openAiCompletions.flatMap((raw) => {
  const checked = completionOf(raw)
  return typeof checked === "string" ? [] : [checked]
})

/** Real entries as stored: each recorded completion as a json entry, and as a stream entry of its chunks. */
const validEntries: ReadonlyArray<unknown> = completions.flatMap((completion) => {
  const chunks = chunksOfCompletion(completion)
  return [
    JSON.parse(serializeCompletion(key, 1_700_000_000_000, completion).text),
    JSON.parse(serializeStream(key, 1_700_000_000_000, chunks.map((chunk) => JSON.stringify(chunk))).text)
  ] as ReadonlyArray<unknown>
}).concat([
  // embeddings answers: JSON numbers as an upstream wrote them, and float32 (base64 in the entry)
  JSON.parse(serializeEmbeddings(key, 1_700_000_000_000, [[0.25, -1.5e-7, 3], [1, 2, 0.5]], { prompt_tokens: 4, total_tokens: 4 }).text),
  JSON.parse(serializeEmbeddings(key, 1_700_000_000_000, [Float32Array.from([0.1, -0.2, 1e-30])], { prompt_tokens: 2, total_tokens: 2 }).text)
])

/** What a hit may ever serve from `entry`, for either kind of request, is spec-valid. */
const expectServable = (entry: CacheEntry, text: string, maxBytes: number) => {
  expect(entry.key).toBe(key)
  expect(Buffer.byteLength(text)).toBeLessThanOrEqual(maxBytes)
  if (entry.kind === "json") {
    expect(entry.completion.choices.length).toBeGreaterThan(0)
    // the stored text a hit writes as is: only for the store's own entries, and then exactly the checked completion
    if (entry.completionJson !== undefined) expect(JSON.parse(entry.completionJson)).toEqual(entry.completion)
    expectClientCompletion(entry.completion)
    for (const chunk of chunksOfCompletion(entry.completion)) expectClientChunk(chunk)
  } else if (entry.kind === "embeddings") {
    expect(entry.vectors.length).toBeGreaterThan(0)
    for (const vector of entry.vectors) {
      expect(vector.length).toBe(entry.vectors[0]!.length)
      for (const value of vector) expect(Number.isFinite(Math.fround(value))).toBe(true)
    }
    expect(entry.usage.total_tokens).toBeGreaterThanOrEqual(entry.usage.prompt_tokens)
  } else {
    expect(isFinished(entry.chunks)).toBe(true)
    for (const chunk of entry.chunks) expectClientChunk(chunk)
    expectClientCompletion(completionOfChunks(entry.chunks))
  }
}

const hostileText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  nastyString,
  weirdValue.map(jsonText),
  weirdValue.map((value) => jsonText({ format: "llm-proxy.cache", v: 1, kind: "json", key, created_at: 1, completion: value })),
  weirdValue.map((value) => jsonText({ format: "llm-proxy.cache", v: 1, kind: "stream", key, created_at: 1, chunks: value })),
  fc.tuple(weirdValue, weirdValue).map(([vectors, usage]) => jsonText({ format: "llm-proxy.cache", v: 1, kind: "embeddings", key, created_at: 1, usage, vectors })),
  fc.constantFrom(...validEntries).chain((entry) => mutatedJson(entry, 4)).map(jsonText),
  fc.constantFrom(...validEntries).chain((entry) =>
    fc.nat({ max: 2000 }).map((cut) => {
      const text = JSON.stringify(entry)
      return text.slice(0, Math.min(cut, text.length - 1))
    })
  )
)

describe("cache entries read back from a store", () => {
  it("the recorded answers round-trip as entries of every kind", () => {
    expect(validEntries.length).toBeGreaterThan(0)
    for (const raw of validEntries) {
      const text = JSON.stringify(raw)
      const entry = decodeEntry(text, key, 1 << 20)
      expect(entry, preview(raw)).toBeDefined()
      expectServable(entry!, text, 1 << 20)
      if (entry?.kind === "json") expect(entry.completionJson).toBeUndefined()
      // the memory store's own entry: a JSON hit writes the completion's stored text
      const own = decodeEntry(text, key, 1 << 20, true)
      expectServable(own!, text, 1 << 20)
      expect(own?.createdAt).toBe(entry?.createdAt)
      if (own?.kind === "json" && entry?.kind === "json") {
        // read without parsing: the completion's text as written, decoding (when asked) to what the full check gives
        expect(own.completionJson).toBe(JSON.stringify(entry.completion))
        expect(own.completion).toEqual(entry.completion)
      }
      expect(decodeEntry(text, "b".repeat(64), 1 << 20)).toBeUndefined()
      expect(decodeEntry(text, key, Buffer.byteLength(text) - 1)).toBeUndefined()
    }
  })

  it("an entry's size is its text's UTF-8 length, whatever the completion and the key hold", () => {
    fc.assert(
      fc.property(fc.constantFrom(...completions), fc.string({ unit: "grapheme", maxLength: 40 }), fc.string({ maxLength: 80 }), (completion, content, entryKey) => {
        const withContent = { ...completion, choices: completion.choices.map((choice) => ({ ...choice, message: { ...choice.message, content } })) }
        for (const serialized of [serializeCompletion(entryKey, 1_700_000_000_000, withContent), serializeStream(entryKey, 1, chunksOfCompletion(withContent).map((chunk) => JSON.stringify(chunk)))]) {
          expect(serialized.bytes).toBe(Buffer.byteLength(serialized.text))
        }
      }),
      { numRuns: fuzzRuns }
    )
  })

  it("an embeddings entry gives back the vectors and usage it was made of, exactly", () => {
    const numbers = [[0.1, -0.000123456789, 7], [3.5, 0, -2]]
    const floats = [Float32Array.from([0.1, -0.2, 1e-30]), Float32Array.from([1, 2, 3])]
    for (const vectors of [numbers, floats]) {
      const serialized = serializeEmbeddings(key, 5, vectors, { prompt_tokens: 3, total_tokens: 3 })
      const entry = decodeEntry(serialized.text, key, 1 << 20)
      expect(entry?.kind).toBe("embeddings")
      if (entry?.kind !== "embeddings") return
      expect(entry.vectors.map((vector) => Array.from(vector))).toEqual(vectors.map((vector) => Array.from(vector)))
      expect(entry.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 })
    }
  })

  it("hostile bytes never crash decoding and are never served unless they make a valid, finished entry of that key", () => {
    fc.assert(
      fc.property(hostileText, fc.integer({ min: 16, max: 1 << 20 }), (text, maxBytes) => {
        let entry: CacheEntry | undefined
        expect(() => (entry = decodeEntry(text, key, maxBytes))).not.toThrow()
        if (entry !== undefined) expectServable(entry, text, maxBytes)
      }),
      { numRuns: fuzzRuns * 10 }
    )
  })

  it("assembling any finished chunk sequence gives a spec-valid completion with the concatenated content", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ content: fc.option(nastyString, { nil: undefined }), reasoning: fc.option(fc.string(), { nil: undefined }) }), { maxLength: 20 }),
        fc.constantFrom("stop", "length", "tool_calls", "content_filter"),
        (deltas, finish) => {
          const base = { id: "c", object: "chat.completion.chunk" as const, created: 1, model: "m" }
          const chunks: Array<ChatCompletionChunk> = [
            ...deltas.map((delta) => ({
              ...base,
              choices: [{ index: 0, delta: { ...(delta.content === undefined ? {} : { content: delta.content }), ...(delta.reasoning === undefined ? {} : { reasoning_content: delta.reasoning }) }, finish_reason: null }]
            })),
            { ...base, choices: [{ index: 0, delta: {}, finish_reason: finish as "stop" }] }
          ]
          const completion = completionOfChunks(chunks)
          expectClientCompletion(completion)
          const contents = deltas.flatMap((delta) => (delta.content === undefined ? [] : [delta.content]))
          expect(completion.choices[0]?.message.content).toBe(contents.length === 0 ? null : contents.join(""))
          expect(completion.choices[0]?.finish_reason).toBe(finish)
        }
      ),
      { numRuns: fuzzRuns * 4 }
    )
  })
})

/** A request-like object: messages and settings, and the fields that do not change the answer. */
const request = fc.record(
  {
    model: fc.constantFrom("gpt-4o", "mock"),
    messages: fc.array(fc.record({ role: fc.constantFrom("user", "system", "assistant"), content: fc.string({ maxLength: 30 }) }), { minLength: 1, maxLength: 4 }),
    temperature: fc.double({ min: 0, max: 2, noNaN: true }),
    tools: fc.array(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), { maxLength: 2 }),
    extra: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 })
  },
  { requiredKeys: ["model", "messages"] }
)

/** The same value with the keys of every object in another order. */
const reordered = (value: unknown, seed: number): unknown => {
  if (Array.isArray(value)) return value.map((item, index) => reordered(item, seed + index))
  if (value === null || typeof value !== "object") return value
  const entries = Object.entries(value as Record<string, unknown>)
  const rotated = entries.length === 0 ? entries : [...entries.slice(seed % entries.length), ...entries.slice(0, seed % entries.length)].reverse()
  return Object.fromEntries(rotated.map(([name, item]) => [name, reordered(item, seed + 1)]))
}

/** Every path to a value inside `value` (object fields and array items). */
const pathsOf = (value: unknown, prefix: ReadonlyArray<string | number> = []): ReadonlyArray<ReadonlyArray<string | number>> => {
  if (value === null || typeof value !== "object") return [prefix]
  const children = Array.isArray(value) ? value.map((item, index) => [index, item] as const) : Object.entries(value as Record<string, unknown>)
  return [prefix, ...children.flatMap(([name, item]) => pathsOf(item, [...prefix, name]))]
}

const setAt = (root: unknown, path: ReadonlyArray<string | number>, next: unknown): unknown => {
  if (path.length === 0) return next
  const [head, ...rest] = path
  if (Array.isArray(root)) return root.map((item, index) => (index === head ? setAt(item, rest, next) : item))
  const record = root as Record<string, unknown>
  return { ...record, [head!]: setAt(record[head!], rest, next) }
}

describe("cache keys", () => {
  it("field order and the fields that do not change the answer never change the key", () => {
    fc.assert(
      fc.property(
        request,
        fc.nat(),
        fc.dictionary(fc.constantFrom(...ignoredFields), fc.jsonValue({ maxDepth: 2 })),
        (body, seed, ignored) => {
          const expected = cacheKey(body, body.model, "team-a")
          expect(cacheKey(reordered({ ...body, ...ignored }, seed) as object, body.model, "team-a")).toBe(expected)
          expect(cacheKey(JSON.parse(JSON.stringify(body)), body.model, "team-a")).toBe(expected)
        }
      ),
      { numRuns: fuzzRuns * 4 }
    )
  })

  it("any other change — a value anywhere, a field added, the model, the tenant, the endpoint — changes the key", () => {
    fc.assert(
      fc.property(request, fc.nat(), fc.jsonValue({ maxDepth: 2 }), (body, pick, value) => {
        const expected = cacheKey(body, body.model, "team-a")
        const paths = pathsOf(body).filter((path) => path.length > 0 && !(path.length === 1 && ignoredFields.has(String(path[0]))))
        const path = paths[pick % paths.length]!
        const changed = setAt(body, path, value) as object
        if (canonicalJson(changed, ignoredFields) !== canonicalJson(body, ignoredFields)) {
          expect(cacheKey(changed, body.model, "team-a")).not.toBe(expected)
        }
        expect(cacheKey({ ...body, added_field: value }, body.model, "team-a")).not.toBe(expected)
        expect(cacheKey(body, `${body.model}-other`, "team-a")).not.toBe(expected)
        expect(cacheKey(body, body.model, "team-b")).not.toBe(expected)
        expect(cacheKey(body, body.model, undefined)).not.toBe(expected)
        // the same body as an embeddings request is another entry
        expect(cacheKey(body, body.model, "team-a", "embeddings")).not.toBe(expected)
      }),
      { numRuns: fuzzRuns * 4 }
    )
  })
})
