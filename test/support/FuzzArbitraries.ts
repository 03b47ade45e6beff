/**
 * fast-check arbitraries the fuzz suites share: hostile values (wrong types, extreme numbers, nasty strings, deep
 * nesting), mutations of a valid JSON document at any path, and ways to cut a body into pieces.
 */
import fc from "fast-check"

/** Numbers that break naive counting: negative, fractional, beyond 2^53, and what JSON's `1e999` parses to. */
export const extremeNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(1e308, -1e308, -1, -0, 0.5, 1.5, 2 ** 53, 2 ** 53 + 2, -(2 ** 31), 2 ** 32, 1e-320, Infinity, -Infinity, 0, 1),
  fc.double({ noNaN: true }),
  fc.integer()
)

/** Strings that look like something else, break framing, or are not well-formed UTF-16. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    "NaN",
    "Infinity",
    "-1",
    "1e308",
    "null",
    "true",
    "[DONE]",
    "data: [DONE]\n\n",
    "\u0000",
    "\ud800",
    "\udfff\ud800",
    "\r\n\r\n",
    "\r",
    "\u2028\u2029",
    "\ufeff",
    "😀",
    "e\u0301",
    "<script>",
    "assistant",
    "function",
    "stop",
    "chat.completion.chunk",
    "message_stop",
    "__proto__",
    "constructor"
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.string({ maxLength: 40 })
)

/** A string made of one repeated piece, up to `maxChars` long (whitespace alone too: the mock tokenizes it linearly). */
export const hugeString = (maxChars: number): fc.Arbitrary<string> =>
  fc.tuple(fc.constantFrom("x", "é", "😀", "\\", "\"", "a\n", "word ", " ", "\n"), fc.integer({ min: 1, max: maxChars })).map(([piece, size]) =>
    piece.repeat(Math.max(1, Math.floor(size / piece.length)))
  )

/** A value nested `depth` levels deep in arrays or objects. */
export const nested = (depth: number, leaf: unknown = 1, inObjects = false): unknown => {
  let value = leaf
  for (let level = 0; level < depth; level++) value = inObjects ? { a: value } : [value]
  return value
}

/** Any JSON-ish value, with the hostile ones well represented. */
export const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<unknown>(null, true, false, 0, -1, "", [], {}, [null], { "": null }) },
  { weight: 3, arbitrary: extremeNumber },
  { weight: 3, arbitrary: nastyString },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2, max: 300 }).chain((depth) => fc.boolean().map((inObjects) => nested(depth, 1, inObjects))) },
  { weight: 1, arbitrary: hugeString(20_000) }
)

/** Field names from OpenAI's, Anthropic's and Gemini's wire formats: an added field is likelier to mean something. */
export const knownFieldNames: ReadonlyArray<string> = [
  // OpenAI responses
  "id", "object", "created", "model", "choices", "index", "delta", "message", "content", "role", "refusal", "tool_calls",
  "function", "name", "arguments", "type", "finish_reason", "logprobs", "usage", "prompt_tokens", "completion_tokens",
  "total_tokens", "prompt_tokens_details", "completion_tokens_details", "cached_tokens", "reasoning_tokens", "audio_tokens",
  "system_fingerprint", "service_tier", "obfuscation", "moderation", "metadata", "annotations", "audio", "function_call",
  "reasoning_content", "error", "code", "param",
  // OpenAI requests
  "messages", "stream", "stream_options", "include_usage", "temperature", "top_p", "n", "stop", "max_tokens",
  "max_completion_tokens", "tools", "tool_choice", "response_format", "json_schema", "schema", "seed", "user",
  "presence_penalty", "frequency_penalty", "logit_bias", "top_logprobs", "parallel_tool_calls", "tool_call_id", "image_url",
  "url", "detail", "text", "input_audio", "file",
  // Anthropic
  "content_block", "partial_json", "input", "stop_reason", "stop_sequence", "input_tokens", "output_tokens",
  "cache_read_input_tokens", "cache_creation_input_tokens", "text_delta", "input_json_delta", "tool_use",
  // Gemini
  "candidates", "parts", "functionCall", "args", "finishReason", "usageMetadata", "promptTokenCount",
  "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount", "cachedContentTokenCount", "promptFeedback",
  "blockReason", "thought", "details",
  // prototype pollution
  "__proto__", "constructor", "prototype", "toString"
]

const fieldName: fc.Arbitrary<string> = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...knownFieldNames) }, { weight: 1, arbitrary: nastyString })

type Path = ReadonlyArray<string | number>

/** Every path to a value inside `value` (the root included), objects and arrays walked. */
const pathsOf = (value: unknown, prefix: Path = [], out: Array<Path> = [], budget = { left: 400 }): Array<Path> => {
  if (budget.left-- <= 0) return out
  out.push(prefix)
  if (Array.isArray(value)) value.forEach((item, index) => pathsOf(item, [...prefix, index], out, budget))
  else if (typeof value === "object" && value !== null) for (const key of Object.keys(value)) pathsOf((value as Record<string, unknown>)[key], [...prefix, key], out, budget)
  return out
}

const clone = <A>(value: A): A => structuredClone(value)

const getAt = (value: unknown, path: Path): unknown =>
  path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], value)

/** Replaces (or, with `undefined`, removes) the value at `path`; returns the new root. */
const setAt = (root: unknown, path: Path, next: unknown): unknown => {
  if (path.length === 0) return next
  const parent = getAt(root, path.slice(0, -1)) as Record<string | number, unknown> | Array<unknown>
  const key = path[path.length - 1]!
  if (Array.isArray(parent) && typeof key === "number") {
    if (next === undefined) parent.splice(key, 1)
    else parent[key] = next
  } else if (next === undefined) {
    delete (parent as Record<string | number, unknown>)[key]
  } else {
    Object.defineProperty(parent, key, { value: next, enumerable: true, writable: true, configurable: true })
  }
  return root
}

/** One edit of a JSON document. */
type Mutation =
  | { readonly kind: "replace"; readonly at: number; readonly value: unknown }
  | { readonly kind: "remove"; readonly at: number }
  | { readonly kind: "add"; readonly at: number; readonly key: string; readonly value: unknown }
  | { readonly kind: "wrap"; readonly at: number; readonly depth: number; readonly inObjects: boolean }
  | { readonly kind: "null"; readonly at: number }
  | { readonly kind: "stringify"; readonly at: number }
  | { readonly kind: "number"; readonly at: number; readonly value: number }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), value: weirdValue }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), at: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("add" as const), at: fc.nat(), key: fieldName, value: weirdValue }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("wrap" as const), at: fc.nat(), depth: fc.integer({ min: 1, max: 250 }), inObjects: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("null" as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("stringify" as const), at: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("number" as const), at: fc.nat(), value: extremeNumber }) }
)

const applyMutation = (root: unknown, edit: Mutation): unknown => {
  const all = pathsOf(root)
  // A number edit lands on a number when there is one (counts, indexes, timestamps): where extremes do harm.
  const numeric = edit.kind === "number" ? all.filter((path) => typeof getAt(root, path) === "number") : []
  const paths = numeric.length > 0 ? numeric : all
  const path = paths[edit.at % paths.length]!
  const current = getAt(root, path)
  switch (edit.kind) {
    case "replace":
      return setAt(root, path, clone(edit.value))
    case "remove":
      return path.length === 0 ? root : setAt(root, path, undefined)
    case "add":
      if (typeof current === "object" && current !== null && !Array.isArray(current)) {
        return setAt(root, [...path, edit.key], clone(edit.value))
      }
      if (Array.isArray(current)) {
        current.push(clone(edit.value))
        return root
      }
      return setAt(root, path, clone(edit.value))
    case "wrap":
      return setAt(root, path, nested(edit.depth, current, edit.inObjects))
    case "null":
      return setAt(root, path, null)
    case "stringify":
      return setAt(root, path, JSON.stringify(current) ?? "undefined")
    case "number":
      return setAt(root, path, edit.value)
  }
}

/** `base` with one to four random edits anywhere in it: wrong types, nulls, removed and added fields, deep nesting. */
export const mutatedJson = (base: unknown, maxEdits = 4): fc.Arbitrary<unknown> =>
  fc.array(mutation, { minLength: 1, maxLength: maxEdits }).map((edits) => edits.reduce(applyMutation, clone(base)))

/** The cut positions of a `length`-long sequence into pieces (sorted, unique, inside it). */
export const cutsOf = (length: number): fc.Arbitrary<ReadonlyArray<number>> =>
  fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, length - 1) }), { maxLength: Math.min(20, Math.max(0, length - 1)) }).map((cuts) =>
    length <= 1 ? [] : [...cuts].sort((a, b) => a - b)
  )

/** Cuts a string or byte array at the given positions. */
export const cutAt = <A extends { readonly length: number; slice(start?: number, end?: number): A }>(whole: A, cuts: ReadonlyArray<number>): ReadonlyArray<A> => {
  const pieces: Array<A> = []
  let start = 0
  for (const cut of cuts) {
    if (cut <= start || cut >= whole.length) continue
    pieces.push(whole.slice(start, cut))
    start = cut
  }
  pieces.push(whole.slice(start))
  return pieces
}

/** Bytes that are not UTF-8: lone continuation bytes, truncated sequences, overlongs, surrogates, 0xFF. */
export const invalidUtf8: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constantFrom(
    Uint8Array.of(0x80),
    Uint8Array.of(0xc3),
    Uint8Array.of(0xe2, 0x82),
    Uint8Array.of(0xf0, 0x9f, 0x98),
    Uint8Array.of(0xc0, 0xaf),
    Uint8Array.of(0xed, 0xa0, 0x80),
    Uint8Array.of(0xff, 0xfe),
    Uint8Array.of(0xf8, 0x88, 0x80, 0x80, 0x80)
  ),
  fc.uint8Array({ minLength: 1, maxLength: 16 })
)

/**
 * JSON text of a value as an upstream could write it: like JSON.stringify, but non-finite numbers are written as
 * `1e999` / `-1e999` (which JSON.parse reads back as ±Infinity) and -0 as `-0`, instead of `null` / `0`.
 */
export const jsonText = (value: unknown): string => {
  if (typeof value === "number") {
    if (value === Infinity) return "1e999"
    if (value === -Infinity) return "-1e999"
    if (Number.isNaN(value)) return "null"
    return Object.is(value, -0) ? "-0" : JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? "null" : jsonText(item))).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const fields: Array<string> = []
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key]
      if (item !== undefined) fields.push(`${JSON.stringify(key)}:${jsonText(item)}`)
    }
    return `{${fields.join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}
