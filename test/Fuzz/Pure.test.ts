/**
 * Pure properties of what reads upstream bytes: the SSE decoder (the same events however the input is cut, CR / LF /
 * CRLF alike, never an event past its bound, the WHATWG grammar as a reference model) and the wire checks of
 * OpenAI-compatible answers (whatever they accept is valid against OpenAI's published schema; nothing JSON can hold
 * makes them throw). No timings anywhere.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { chunkOf, chunksOfCompletion, completionOf, usageOf } from "../../src/OpenAi/Wire.js"
import { makeSseDecoder } from "../../src/Providers/Upstream/SseDecoder.js"
import type { SseEvent } from "../../src/Providers/Upstream/SseDecoder.js"
import { cutAt, cutsOf, extremeNumber, jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import { openAiChunks, openAiCompletions } from "../support/FuzzFixtures.js"
import { expectClientChunk, expectClientCompletion, expectSaneUsage, expectSpec, fuzzRuns, preview } from "../support/FuzzSpec.js"

// ---------------------------------------------------------------------------------------------------------------
// SSE decoder

/** The WHATWG event-stream grammar, written the obvious way: the reference the decoder is held to. */
const referenceEvents = (input: string): ReadonlyArray<SseEvent> => {
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input
  const events: Array<SseEvent> = []
  let data: Array<string> = []
  let name = ""
  const dispatch = () => {
    if (data.length > 0) events.push({ event: name === "" ? "message" : name, data: data.join("\n") })
    data = []
    name = ""
  }
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      dispatch()
      continue
    }
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "data") data.push(value)
    else if (field === "event") name = value
  }
  dispatch()
  return events
}

interface Decoded {
  readonly events: ReadonlyArray<SseEvent>
  /** The decoder refused an event past its bound (and every feed after it returned `undefined`). */
  readonly overflowed: boolean
}

/** Feeds the pieces in order, then ends; checks that an overflow is final. */
const decode = (pieces: ReadonlyArray<string>, maxEventChars?: number): Decoded => {
  const decoder = makeSseDecoder(maxEventChars)
  const events: Array<SseEvent> = []
  let overflowed = false
  for (const piece of pieces) {
    const batch = decoder.feed(piece)
    if (batch === undefined) overflowed = true
    else if (overflowed) throw new Error("the decoder returned events after it overflowed")
    else events.push(...batch)
  }
  const last = decoder.end()
  if (overflowed && last.length > 0) throw new Error("the decoder completed events at the end after it overflowed")
  events.push(...last)
  return { events, overflowed }
}

/** A line's text: anything but CR and LF (those end lines), with the characters that matter to the grammar likely. */
const lineText: fc.Arbitrary<string> = fc
  .oneof(
    fc.string({ unit: fc.constantFrom(":", " ", "d", "a", "t", "e", "v", "n", "\ufeff", "x", "é", "😀", "\u2028"), maxLength: 12 }),
    nastyString,
    fc.string({ unit: "binary", maxLength: 30 })
  )
  .map((text) => text.replace(/[\r\n]/g, "_"))

/** One line of an event stream. */
const sseLine: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: lineText.map((value) => `data: ${value}`) },
  { weight: 2, arbitrary: lineText.map((value) => `data:${value}`) },
  { weight: 1, arbitrary: fc.constant("data") },
  { weight: 2, arbitrary: lineText.map((value) => `event: ${value}`) },
  { weight: 1, arbitrary: lineText.map((value) => `id: ${value}`) },
  { weight: 1, arbitrary: fc.nat().map((value) => `retry: ${value}`) },
  { weight: 1, arbitrary: lineText.map((value) => `:${value}`) },
  { weight: 4, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: lineText }
)

type Ending = "\n" | "\r" | "\r\n"
const ending: fc.Arbitrary<Ending> = fc.constantFrom("\n", "\r", "\r\n")

/**
 * Lines joined with the given endings (the last line may be left open). A CR before an empty line that ends with
 * LF would read as one CRLF: that empty line's ending becomes CRLF so the text still holds the same lines.
 */
const joinLines = (lines: ReadonlyArray<string>, endings: ReadonlyArray<Ending>, openLast: boolean): string => {
  let text = ""
  let previous: Ending | undefined
  lines.forEach((line, index) => {
    let end: Ending = endings[index % endings.length] ?? "\n"
    if (previous === "\r" && line === "" && end === "\n") end = "\r\n"
    const isLast = index === lines.length - 1
    text += line + (isLast && openLast ? "" : end)
    previous = isLast && openLast ? undefined : end
  })
  return text
}

/** A whole event stream: its lines, their endings, whether it starts with a BOM and ends mid-line. */
const sseStream = fc
  .record({
    lines: fc.array(sseLine, { maxLength: 30 }),
    endings: fc.array(ending, { minLength: 1, maxLength: 30 }),
    bom: fc.boolean(),
    openLast: fc.boolean()
  })
  .map(({ bom, endings, lines, openLast }) => ({ lines, text: (bom ? "\ufeff" : "") + joinLines(lines, endings, openLast), bom, openLast }))

const config = { numRuns: fuzzRuns }

describe("SSE decoder", () => {
  it("decodes what the WHATWG grammar says, fed whole", () => {
    fc.assert(
      fc.property(sseStream, ({ text }) => {
        expect(decode([text])).toEqual({ events: referenceEvents(text), overflowed: false })
      }),
      config
    )
  })

  it("gives the same events whatever the split: every single cut, arbitrary cuts, one character at a time", () => {
    fc.assert(
      fc.property(
        sseStream.chain(({ text }) => fc.tuple(fc.constant(text), cutsOf(text.length))),
        ([text, cuts]) => {
          const whole = decode([text])
          for (let cut = 0; cut <= text.length; cut++) {
            expect(decode([text.slice(0, cut), text.slice(cut)])).toEqual(whole)
          }
          expect(decode(cutAt(text, cuts))).toEqual(whole)
          expect(decode([...text])).toEqual(whole)
          expect(decode(text.split("").flatMap((char) => ["", char, ""]))).toEqual(whole)
        }
      ),
      config
    )
  })

  it("treats CR, LF and CRLF line endings alike, mixed or not", () => {
    fc.assert(
      fc.property(fc.array(sseLine, { maxLength: 30 }), fc.array(ending, { minLength: 1, maxLength: 30 }), fc.boolean(), (lines, mixed, openLast) => {
        const lf = decode([joinLines(lines, ["\n"], openLast)])
        expect(decode([joinLines(lines, ["\r"], openLast)])).toEqual(lf)
        expect(decode([joinLines(lines, ["\r\n"], openLast)])).toEqual(lf)
        const mixedText = joinLines(lines, mixed, openLast)
        expect(decode([mixedText])).toEqual(lf)
        // and a CRLF cut between its CR and its LF is still one line ending
        const crlf = joinLines(lines, ["\r\n"], openLast)
        expect(decode(crlf.split(/(?<=\r)(?=\n)/))).toEqual(lf)
      }),
      config
    )
  })

  it("never yields an event past its bound; an overflow is final, does not depend on the split, and keeps a prefix of the events", () => {
    fc.assert(
      fc.property(
        sseStream.chain(({ text }) => fc.tuple(fc.constant(text), cutsOf(text.length), fc.integer({ min: 1, max: 80 }))),
        ([text, cuts, limit]) => {
          const reference = referenceEvents(text)
          const whole = decode([text], limit)
          const split = decode(cutAt(text, cuts), limit)
          const byChar = decode([...text], limit)
          expect(split.overflowed).toBe(whole.overflowed)
          expect(byChar.overflowed).toBe(whole.overflowed)
          for (const decoded of [whole, split, byChar]) {
            for (const event of decoded.events) expect(event.data.length).toBeLessThanOrEqual(limit)
            expect(reference.slice(0, decoded.events.length)).toEqual(decoded.events)
            if (!decoded.overflowed) expect(decoded.events).toEqual(reference)
          }
          // a stream shorter than the bound is never refused
          if (text.length <= limit) expect(whole.overflowed).toBe(false)
        }
      ),
      config
    )
  })

  it("refuses one data line past the bound, however it arrives", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 64 }), fc.constantFrom("\n", "\r", "\r\n", ""), (limit, pieceSize, end) => {
        const text = `data: ${"x".repeat(limit + 1)}${end}${end}`
        const pieces: Array<string> = []
        for (let start = 0; start < text.length; start += pieceSize) pieces.push(text.slice(start, start + pieceSize))
        const decoded = decode(pieces, limit)
        expect(decoded.overflowed).toBe(true)
        expect(decoded.events).toEqual([])
      }),
      config
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Wire checks

/** Calls a wire check; a throw fails the property with the input that caused it. */
const safely = <I, A>(name: string, check: (value: I) => A, input: I): A => {
  try {
    return check(input)
  } catch (thrown) {
    throw new Error(`${name} threw ${String(thrown)} on ${preview(input)}`)
  }
}

/** JSON texts as an upstream may send them (`1e999` and deep nesting included), parsed as the gateway parses them. */
const parsedJson = (value: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> => value.map((item) => JSON.parse(jsonText(item)) as unknown)

const anyJson = parsedJson(fc.oneof(weirdValue, fc.jsonValue(), fc.dictionary(fc.string(), weirdValue)))

const chunkInputs = parsedJson(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...openAiChunks).chain((chunk) => mutatedJson(chunk)) }, { weight: 1, arbitrary: weirdValue }))
const completionInputs = parsedJson(
  fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...openAiCompletions).chain((completion) => mutatedJson(completion)) }, { weight: 1, arbitrary: weirdValue })
)

const usageInput = parsedJson(
  fc.oneof(
    mutatedJson({
      prompt_tokens: 17,
      completion_tokens: 10,
      total_tokens: 27,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 }
    }),
    fc.record({ prompt_tokens: extremeNumber, completion_tokens: extremeNumber, total_tokens: fc.oneof(extremeNumber, weirdValue) }),
    weirdValue
  )
)

/** A chunk is accepted as a spec-valid chunk with sane usage, or refused with a reason; never a throw. */
const checkChunkOf = (input: unknown): void => {
  const out = safely("chunkOf", chunkOf, input)
  if (typeof out === "string") expect(out.length).toBeGreaterThan(0)
  else expectClientChunk(out)
}

const checkCompletionOf = (input: unknown): void => {
  const out = safely("completionOf", completionOf, input)
  if (typeof out === "string") {
    expect(out.length).toBeGreaterThan(0)
    return
  }
  expectClientCompletion(out)
  // and the stream a JSON answer is told as (an upstream that ignored stream: true)
  for (const chunk of safely("chunksOfCompletion", chunksOfCompletion, out)) expectClientChunk(chunk)
}

// Spec-valid answers, with every optional field the spec declares: what the checks must pass through untouched.
const count = fc.nat({ max: 2 ** 40 })
const text = fc.string({ maxLength: 12 })
const finiteNumber = fc.double({ noNaN: true, noDefaultInfinity: true })
const topLogprob = fc.record({ token: text, logprob: finiteNumber, bytes: fc.option(fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 4 }), { nil: null }) })
const tokenLogprob = fc.record({ token: text, logprob: finiteNumber, bytes: fc.option(fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 4 }), { nil: null }), top_logprobs: fc.array(topLogprob, { maxLength: 2 }) })
const logprobs = fc.option(
  fc.record({ content: fc.option(fc.array(tokenLogprob, { maxLength: 2 }), { nil: null }), refusal: fc.option(fc.array(tokenLogprob, { maxLength: 2 }), { nil: null }) }),
  { nil: null }
)
const validUsage = fc.record(
  {
    prompt_tokens: count,
    completion_tokens: count,
    total_tokens: count,
    prompt_tokens_details: fc.record({ cached_tokens: count, audio_tokens: count }, { requiredKeys: [] }),
    completion_tokens_details: fc.record({ reasoning_tokens: count, accepted_prediction_tokens: count }, { requiredKeys: [] })
  },
  { requiredKeys: ["prompt_tokens", "completion_tokens", "total_tokens"] }
)
const finishReason = fc.constantFrom("stop", "length", "tool_calls", "content_filter", "function_call")
const moderationOutcome = fc.oneof(
  fc.record({ type: fc.constant("error"), code: text, message: text }),
  fc.record({
    type: fc.constant("moderation_results"),
    model: text,
    results: fc.array(
      fc.record({
        type: fc.constant("moderation_result"),
        model: text,
        flagged: fc.boolean(),
        categories: fc.dictionary(text, fc.boolean(), { maxKeys: 2 }),
        category_scores: fc.dictionary(text, finiteNumber, { maxKeys: 2 }),
        category_applied_input_types: fc.dictionary(text, fc.array(fc.constantFrom("text", "image"), { maxLength: 2 }), { maxKeys: 2 })
      }),
      { maxLength: 2 }
    )
  })
)
const decorations = {
  system_fingerprint: text,
  service_tier: fc.constantFrom("auto", "default", "flex", "scale", "priority", "fast", null),
  obfuscation: text,
  moderation: fc.option(fc.record({ input: moderationOutcome, output: moderationOutcome }), { nil: null })
}
const validChunk = fc.record(
  {
    id: text,
    object: fc.constant("chat.completion.chunk"),
    created: count,
    model: text,
    choices: fc.array(
      fc.record(
        {
          index: count,
          delta: fc.record(
            {
              role: fc.constant("assistant"),
              content: fc.option(text, { nil: null }),
              refusal: fc.option(text, { nil: null }),
              tool_calls: fc.array(
                fc.record(
                  { index: count, id: text, type: fc.constant("function"), function: fc.record({ name: text, arguments: text }, { requiredKeys: [] }) },
                  { requiredKeys: ["index"] }
                ),
                { maxLength: 2 }
              ),
              function_call: fc.record({ name: text, arguments: text }, { requiredKeys: [] })
            },
            { requiredKeys: [] }
          ),
          finish_reason: fc.option(finishReason, { nil: null }),
          logprobs
        },
        { requiredKeys: ["index", "delta", "finish_reason"] }
      ),
      { maxLength: 3 }
    ),
    usage: fc.option(validUsage, { nil: null }),
    ...decorations
  },
  { requiredKeys: ["id", "object", "created", "model", "choices"] }
)
const validCompletion = fc.record(
  {
    id: text,
    object: fc.constant("chat.completion"),
    created: count,
    model: text,
    choices: fc.array(
      fc.record({
        index: count,
        message: fc.record(
          {
            role: fc.constant("assistant"),
            content: fc.option(text, { nil: null }),
            refusal: fc.option(text, { nil: null }),
            tool_calls: fc.array(fc.record({ id: text, type: fc.constant("function"), function: fc.record({ name: text, arguments: text }) }), { maxLength: 2 }),
            function_call: fc.record({ name: text, arguments: text }),
            annotations: fc.array(
              fc.record({ type: fc.constant("url_citation"), url_citation: fc.record({ end_index: count, start_index: count, url: text, title: text }) }),
              { maxLength: 2 }
            ),
            audio: fc.option(fc.record({ id: text, expires_at: count, data: text, transcript: text }), { nil: null })
          },
          { requiredKeys: ["role", "content", "refusal"] }
        ),
        finish_reason: finishReason,
        logprobs
      }),
      { maxLength: 3 }
    ),
    usage: validUsage,
    metadata: fc.option(fc.dictionary(text, text, { maxKeys: 3 }), { nil: null }),
    ...decorations
  },
  { requiredKeys: ["id", "object", "created", "model", "choices"] }
)

describe("wire checks of OpenAI-compatible answers", () => {
  it("accept every recorded chunk and completion as it is", () => {
    expect(openAiChunks.length).toBeGreaterThan(20)
    expect(openAiCompletions.length).toBeGreaterThan(3)
    for (const chunk of openAiChunks) expect(chunkOf(chunk)).toBe(chunk)
    for (const completion of openAiCompletions) expect(completionOf(completion)).toBe(completion)
  })

  it("pass every spec-valid chunk and completion through untouched (the same object, not a copy)", () => {
    fc.assert(
      fc.property(validChunk, (chunk) => {
        expectClientChunk(chunk)
        expect(chunkOf(chunk)).toBe(chunk)
      }),
      config
    )
    fc.assert(
      fc.property(validCompletion, (completion) => {
        expectClientCompletion(completion)
        expect(completionOf(completion)).toBe(completion)
      }),
      config
    )
  })

  it("chunkOf: a mutated recorded chunk, or any JSON, is refused or comes out spec-valid; it never throws", () => {
    fc.assert(fc.property(chunkInputs, checkChunkOf), { numRuns: fuzzRuns * 4 })
    fc.assert(fc.property(anyJson, checkChunkOf), config)
  })

  it("completionOf: a mutated recorded completion, or any JSON, is refused or comes out spec-valid (and so does its stream); it never throws", () => {
    fc.assert(fc.property(completionInputs, checkCompletionOf), { numRuns: fuzzRuns * 4 })
    fc.assert(fc.property(anyJson, checkCompletionOf), config)
  })

  it("usageOf: whatever it keeps is a spec-valid usage of non-negative safe integers", () => {
    fc.assert(
      fc.property(usageInput, (input) => {
        const usage = safely("usageOf", usageOf, input)
        if (usage === undefined) return
        expectSpec("CompletionUsage", JSON.parse(JSON.stringify(usage)))
        expectSaneUsage(usage)
      }),
      { numRuns: fuzzRuns * 2 }
    )
  })
})
