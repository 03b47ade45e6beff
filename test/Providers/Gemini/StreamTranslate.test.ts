import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import fc from "fast-check"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { ChatCompletionChunk } from "../../../src/OpenAi/Schemas.js"
import type { ProviderError } from "../../../src/Providers/Provider.js"
import { finish, initial, step } from "../../../src/Providers/Gemini/StreamTranslate.js"
import { makeUnframedText } from "../../../src/Providers/Gemini/Unframed.js"
import { uncarry } from "../../../src/Providers/ToolCallCarriage.js"
import { makeSseDecoder } from "../../../src/Providers/Upstream/SseDecoder.js"

const fixtures = fileURLToPath(new URL("../../fixtures/gemini/", import.meta.url))
const rawStream = (name: string): string => readFileSync(`${fixtures}vertexai-sdk-test-data/googleai/${name}`, "utf8")

interface Recording {
  readonly interactions: ReadonlyArray<{ readonly response: { readonly bodySegments: ReadonlyArray<unknown> } }>
}
const recordedFrames = (name: string, interaction = 0): ReadonlyArray<unknown> =>
  (JSON.parse(readFileSync(`${fixtures}js-genai-recordings/${name}.json`, "utf8")) as Recording)
    .interactions[interaction]!.response.bodySegments

/** Splits an SSE body with the shared decoder, fed `pieceSize` characters at a time, into parsed data frames. */
const framesOf = (body: string, pieceSize = body.length): ReadonlyArray<unknown> => {
  const decoder = makeSseDecoder()
  const events = []
  for (let at = 0; at < body.length; at += pieceSize) events.push(...(decoder.feed(body.slice(at, at + pieceSize)) ?? []))
  events.push(...decoder.end())
  return events.map((event) => JSON.parse(event.data) as unknown)
}

/** The text a recording carries, read without the SSE decoder: every non-thought text part, in order. */
const recordedText = (body: string): string =>
  body
    .split(/\r?\n\r?\n/)
    .filter((block) => block.startsWith("data: "))
    .flatMap((block) => {
      const frame = JSON.parse(block.slice("data: ".length)) as {
        candidates?: ReadonlyArray<{ content?: { parts?: ReadonlyArray<{ text?: string; thought?: boolean }> } }>
      }
      return (frame.candidates?.[0]?.content?.parts ?? []).filter((part) => part.thought !== true).map((part) => part.text ?? "")
    })
    .join("")

interface RecordedFrame {
  readonly candidates?: ReadonlyArray<{
    readonly content?: { readonly parts?: ReadonlyArray<{ readonly text?: string; readonly thought?: boolean; readonly thoughtSignature?: string }> }
  }>
}
const recordedParts = (body: string) =>
  body
    .split(/\r?\n\r?\n/)
    .filter((block) => block.startsWith("data: "))
    .flatMap((block) => (JSON.parse(block.slice("data: ".length)) as RecordedFrame).candidates?.[0]?.content?.parts ?? [])
/** The thought summaries a recording carries, read without the SSE decoder. */
const recordedThoughts = (body: string): string =>
  recordedParts(body).filter((part) => part.thought === true).map((part) => part.text ?? "").join("")
const recordedSignatures = (body: string): ReadonlyArray<string> =>
  recordedParts(body).flatMap((part) => (part.thoughtSignature === undefined ? [] : [part.thoughtSignature]))

/** A frame as the upstream sent it, less its candidates' finishReason. */
const withoutFinishReason = (frame: unknown): unknown =>
  JSON.parse(JSON.stringify(frame, (key, value: unknown) => (key === "finishReason" ? undefined : value)))

const ctx = { id: "chatcmpl-stream1", created: 1_700_000_123, model: "gemini-2.5-flash" }

/** Runs the state machine over `frames` and `finish`, as the provider does. */
const run = (frames: ReadonlyArray<unknown>): Either.Either<ReadonlyArray<ChatCompletionChunk>, ProviderError> => {
  let state = initial(ctx)
  const out: Array<ChatCompletionChunk> = []
  for (const frame of frames) {
    const result = step(state, frame)
    if (Either.isLeft(result)) return Either.left(result.left)
    const [next, chunks] = result.right
    state = next
    out.push(...chunks)
  }
  return Either.map(finish(state), (chunks) => [...out, ...chunks])
}
const chunksOf = (frames: ReadonlyArray<unknown>) => Either.getOrThrow(run(frames))
const errorOf = (frames: ReadonlyArray<unknown>): ProviderError =>
  Either.getOrThrowWith(Either.flip(run(frames)), () => new Error("expected a failure"))

const contentOf = (chunks: ReadonlyArray<ChatCompletionChunk>, index = 0): string =>
  chunks.flatMap((chunk) => chunk.choices.filter((choice) => choice.index === index).map((choice) => choice.delta.content ?? ""))
    .join("")
const finishReasons = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => (choice.finish_reason === null ? [] : [choice.finish_reason])))
const toolCallsOf = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => choice.delta.tool_calls ?? []))
const reasoningOf = (chunks: ReadonlyArray<ChatCompletionChunk>, index = 0): string =>
  chunks.flatMap((chunk) => chunk.choices.filter((choice) => choice.index === index).map((choice) => choice.delta.reasoning_content ?? ""))
    .join("")

describe("Gemini StreamTranslate", () => {
  it("reassembles the text of a CRLF recording, fed in pieces that split the CRLFs", () => {
    const body = rawStream("streaming-success-basic-reply-short.txt")
    expect(body).toContain("\r\n\r\n")
    for (const pieceSize of [body.length, 7, 1]) {
      const chunks = chunksOf(framesOf(body, pieceSize))
      expect(contentOf(chunks)).toBe("The capital of Wyoming is **Cheyenne**.\n")
      expect(contentOf(chunks)).toBe(recordedText(body))
    }
  })

  it("reassembles the text of a long CRLF recording and an LF one", () => {
    const long = rawStream("streaming-success-basic-reply-long.txt")
    expect(framesOf(long, 100)).toHaveLength(36)
    expect(contentOf(chunksOf(framesOf(long, 100)))).toBe(recordedText(long))

    const lf = rawStream("streaming-success-finish-message.txt")
    expect(lf).not.toContain("\r")
    expect(contentOf(chunksOf(framesOf(lf)))).toBe("Hello world!")
    const noContentParts = rawStream("streaming-success-no-content-parts.txt")
    expect(noContentParts).not.toContain("\r")
    const chunks = chunksOf(framesOf(noContentParts))
    expect(contentOf(chunks)).toBe(recordedText(noContentParts))
    expect(finishReasons(chunks)).toStrictEqual(["stop"])
  })

  it("opens with the role, keeps id/created/model on every chunk and closes with finish_reason then usage", () => {
    const chunks = chunksOf(framesOf(rawStream("streaming-success-basic-reply-short.txt")))
    expect(chunks[0]).toStrictEqual({
      id: "chatcmpl-stream1",
      object: "chat.completion.chunk",
      created: 1_700_000_123,
      model: "gemini-2.5-flash",
      choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null, logprobs: null }]
    })
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: ctx.id, object: "chat.completion.chunk", created: ctx.created, model: ctx.model })
      for (const choice of chunk.choices) expect(choice.logprobs).toBeNull()
    }
    expect(chunks.at(-2)?.choices).toStrictEqual([{ index: 0, delta: {}, finish_reason: "stop", logprobs: null }])
    expect(chunks.at(-1)).toStrictEqual({
      id: "chatcmpl-stream1",
      object: "chat.completion.chunk",
      created: 1_700_000_123,
      model: "gemini-2.5-flash",
      choices: [],
      usage: { prompt_tokens: 7, completion_tokens: 10, total_tokens: 17 }
    })
  })

  it("streams thought summaries as reasoning_content before the content, never in it, and reports reasoning tokens", () => {
    const body = rawStream("streaming-success-thinking-reply-thought-summary.txt")
    const chunks = chunksOf(framesOf(body))
    const content = contentOf(chunks)
    expect(content).toBe(
      "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered in all directions, making the sky appear blue to our eyes."
    )
    expect(content).not.toContain("Exploring Sky Color")
    expect(reasoningOf(chunks)).toBe(recordedThoughts(body))
    expect(reasoningOf(chunks)).toMatch(/^\*\*Exploring Sky Color\*\*/)
    const deltas = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta))
    const lastReasoning = deltas.length - 1 - [...deltas].reverse().findIndex((delta) => delta.reasoning_content !== undefined)
    const firstContent = deltas.findIndex((delta) => typeof delta.content === "string" && delta.content.length > 0)
    expect(lastReasoning).toBeGreaterThan(0)
    expect(lastReasoning).toBeLessThan(firstContent)
    expect(deltas.some((delta) => delta.reasoning_content !== undefined && delta.content !== undefined)).toBe(false)
    expect(chunks.at(-1)?.usage).toStrictEqual({
      prompt_tokens: 10,
      completion_tokens: 48 + 540,
      total_tokens: 598,
      completion_tokens_details: { reasoning_tokens: 540 }
    })
  })

  it("emits a whole tool call after thinking, its thought signature in its id and extra_content, and finishes with tool_calls", () => {
    const body = rawStream("streaming-success-thinking-function-call-thought-summary-signature.txt")
    const signature = recordedSignatures(body)[0]!
    const chunks = chunksOf(framesOf(body))
    expect(contentOf(chunks)).toBe("")
    const [call, ...others] = toolCallsOf(chunks)
    expect(others).toStrictEqual([])
    expect(call).toMatchObject({ index: 0, type: "function", function: { name: "now", arguments: "{}" } })
    expect(call?.extra_content).toStrictEqual({ google: { thought_signature: signature } })
    expect(uncarry(call?.id ?? "")).toStrictEqual({ base: "call_stream1_0_0", carried: { kind: "gemini", thoughtSignature: signature } })
    expect(reasoningOf(chunks)).toBe(recordedThoughts(body))
    expect(finishReasons(chunks)).toStrictEqual(["tool_calls"])
    expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 38, completion_tokens: 6 + 168, total_tokens: 212 })
  })

  it("translates js-genai's function-calling stream", () => {
    const frames = recordedFrames("Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream", 1)
    const chunks = chunksOf(frames)
    const [call] = toolCallsOf(chunks)
    expect(call).toMatchObject({ index: 0, type: "function", function: { name: "customDivide" } })
    expect(JSON.parse(call?.function?.arguments ?? "")).toStrictEqual({ denominator: 2, numerator: 50 })
    expect(finishReasons(chunks)).toStrictEqual(["tool_calls"])
    expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 38, completion_tokens: 6, total_tokens: 44 })
  })

  it("translates js-genai's text stream", () => {
    const frames = recordedFrames("Chats_Tests_sendMessage_Google_AI_with_text_stream")
    const chunks = chunksOf(frames)
    expect(contentOf(chunks)).toMatch(/^The sky is blue due to a phenomenon called \*\*Rayleigh scattering\*\*/)
    expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 6, completion_tokens: 377, total_tokens: 383 })
  })

  it("numbers tool calls per choice and keeps choices apart", () => {
    const chunks = chunksOf([
      {
        candidates: [
          { index: 0, content: { parts: [{ text: "a" }, { functionCall: { name: "f", args: { n: 1 } } }] } },
          { index: 1, content: { parts: [{ functionCall: { name: "g" } }] } }
        ]
      },
      {
        candidates: [
          { index: 0, content: { parts: [{ functionCall: { name: "h", args: {} } }] }, finishReason: "STOP" },
          { index: 1, content: { parts: [{ text: "b" }] }, finishReason: "MAX_TOKENS" }
        ]
      }
    ])
    expect(contentOf(chunks, 0)).toBe("a")
    expect(contentOf(chunks, 1)).toBe("b")
    expect(toolCallsOf(chunks).map((call) => [call.index, call.id, call.function?.name, call.function?.arguments]))
      .toStrictEqual([
        [0, "call_stream1_0_0", "f", "{\"n\":1}"],
        [0, "call_stream1_1_0", "g", "{}"],
        [1, "call_stream1_0_1", "h", "{}"]
      ])
    expect(finishReasons(chunks)).toStrictEqual(["tool_calls", "length"])
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.role === "assistant")).toHaveLength(2)
  })

  it("maps a recitation stop to content_filter after the text it let through", () => {
    const chunks = chunksOf(framesOf(rawStream("streaming-failure-recitation-no-content.txt")))
    expect(contentOf(chunks)).toBe("text1text2text3text4text5text6text7text8")
    expect(finishReasons(chunks)).toStrictEqual(["content_filter"])
  })

  it("fails with ContentPolicy when the prompt is blocked", () => {
    const error = errorOf(framesOf(rawStream("streaming-failure-prompt-blocked-safety.txt")))
    expect(error.reason).toBe("ContentPolicy")
    expect(error.message).toContain("SAFETY")
  })

  it("ends a clean stream that said something but gave no finishReason with stop (tool_calls after calls), as Google's SDKs do", () => {
    const frames = framesOf(rawStream("streaming-success-basic-reply-short.txt"))
    expect(JSON.stringify(frames.at(-1))).toContain("finishReason")
    const withoutReason = frames.slice(0, 2)
    expect(JSON.stringify(withoutReason)).not.toContain("finishReason")
    const chunks = chunksOf(withoutReason)
    expect(contentOf(chunks).length).toBeGreaterThan(0)
    expect(finishReasons(chunks)).toStrictEqual(["stop"])
    expect(chunks.at(-1)?.usage).toBeDefined()

    const calls = recordedFrames("Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream", 1).map(withoutFinishReason)
    expect(finishReasons(chunksOf(calls))).toStrictEqual(["tool_calls"])
  })

  it("fails with Unavailable when a clean stream said nothing at all", () => {
    expect(errorOf([]).reason).toBe("Unavailable")
    const error = errorOf([{ candidates: [{ content: { role: "model" }, index: 0 }], usageMetadata: { promptTokenCount: 3 } }])
    expect(error.reason).toBe("Unavailable")
    expect(error.message).toContain("ended early")
  })

  it("fails with the error's own reason for an error frame mid-stream", () => {
    const frames = [
      ...framesOf(rawStream("streaming-success-basic-reply-short.txt")).slice(0, 1),
      { error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }
    ]
    expect(errorOf(frames)).toMatchObject({ reason: "Unavailable", status: 503, message: "The model is overloaded." })
  })

  it("fails with MalformedResponse for a frame that is not a response", () => {
    expect(errorOf([{ candidates: [{ content: { parts: "x" } }] }]).reason).toBe("MalformedResponse")
  })

  it("sends the LAST finishReason once, after all content: text marked STOP that ends in RECITATION is content_filter", () => {
    // The recitation recording, its text frames marked STOP as the issue saw them: the last reason counts.
    const frames = framesOf(rawStream("streaming-failure-recitation-no-content.txt"))
    const marked = frames.map((frame, index) =>
      index === frames.length - 1 ? frame : JSON.parse(JSON.stringify(frame).replace('"role":"model"}', '"role":"model"},"finishReason":"STOP"')) as unknown
    )
    expect(JSON.stringify(marked).match(/"finishReason":"STOP"/g)).toHaveLength(frames.length - 1)
    const chunks = chunksOf(marked)
    expect(contentOf(chunks)).toBe("text1text2text3text4text5text6text7text8")
    expect(finishReasons(chunks)).toStrictEqual(["content_filter"])
    const finishAt = chunks.findIndex((chunk) => chunk.choices.some((choice) => choice.finish_reason !== null))
    expect(chunks.slice(finishAt + 1).every((chunk) => chunk.choices.length === 0)).toBe(true)

    // And a long recorded reply whose first frame already says STOP, then SAFETY at the end.
    const long = framesOf(rawStream("streaming-success-basic-reply-long.txt"))
    const first = JSON.parse(JSON.stringify(long[0]).replace('"role":"model"}', '"role":"model"},"finishReason":"STOP"')) as unknown
    const last = JSON.parse(JSON.stringify(long.at(-1)).replace('"finishReason":"STOP"', '"finishReason":"SAFETY"')) as unknown
    const safety = chunksOf([first, ...long.slice(1, -1), last])
    expect(finishReasons(safety)).toStrictEqual(["content_filter"])
    expect(contentOf(safety)).toBe(recordedText(rawStream("streaming-success-basic-reply-long.txt")))
  })

  it("maps every finishReason, unknown ones included, to a spec value", () => {
    const reasonFor = (finishReason: string, call = false) =>
      finishReasons(chunksOf([{ candidates: [{ content: { parts: [call ? { functionCall: { name: "f" } } : { text: "x" }] }, finishReason }] }]))
    const table: ReadonlyArray<readonly [string, string]> = [
      ["STOP", "stop"],
      ["MAX_TOKENS", "length"],
      ["SAFETY", "content_filter"],
      ["RECITATION", "content_filter"],
      ["BLOCKLIST", "content_filter"],
      ["PROHIBITED_CONTENT", "content_filter"],
      ["SPII", "content_filter"],
      ["IMAGE_SAFETY", "content_filter"],
      ["IMAGE_PROHIBITED_CONTENT", "content_filter"],
      ["IMAGE_RECITATION", "content_filter"],
      ["VIDEO_SAFETY_FILTER_2027", "content_filter"],
      ["LANGUAGE", "stop"],
      ["OTHER", "stop"],
      ["FINISH_REASON_UNSPECIFIED", "stop"],
      ["MALFORMED_FUNCTION_CALL", "stop"],
      ["UNEXPECTED_TOOL_CALL", "stop"],
      ["SOMETHING_NEW", "stop"],
      ["OUTPUT_TOKEN_LIMIT", "length"]
    ]
    for (const [gemini, openai] of table) expect([gemini, reasonFor(gemini)]).toStrictEqual([gemini, [openai]])
    expect(reasonFor("STOP", true)).toStrictEqual(["tool_calls"])
    expect(reasonFor("SAFETY", true)).toStrictEqual(["content_filter"])
    expect(reasonFor("OTHER", true)).toStrictEqual(["tool_calls"])
  })

  it("never sends content after a finish_reason, and sends one per choice, whatever frames come (property)", () => {
    const part = fc.oneof(
      fc.record({ text: fc.string({ maxLength: 5 }) }),
      fc.record({ text: fc.string({ maxLength: 5 }), thought: fc.constant(true) }),
      fc.record({ functionCall: fc.record({ name: fc.constantFrom("f", "g") }) })
    )
    const candidate = fc.record(
      {
        index: fc.integer({ min: 0, max: 2 }),
        content: fc.record({ parts: fc.array(part, { maxLength: 3 }) }),
        finishReason: fc.constantFrom("STOP", "SAFETY", "MAX_TOKENS", "RECITATION", "OTHER", "NEW_REASON")
      },
      { requiredKeys: ["index", "content"] }
    )
    const frame = fc.record({ candidates: fc.array(candidate, { minLength: 1, maxLength: 2 }) })
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 8 }), (frames) => {
        const result = run(frames)
        if (Either.isLeft(result)) {
          // Only a stream that said nothing at all fails.
          expect(result.left.reason).toBe("Unavailable")
          return
        }
        const chunks = result.right
        const finished = new Set<number>()
        for (const chunk of chunks) {
          for (const choice of chunk.choices) {
            expect(finished.has(choice.index)).toBe(false)
            if (choice.finish_reason !== null) {
              expect(choice.delta).toStrictEqual({})
              finished.add(choice.index)
            }
          }
        }
        const announced = new Set(chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.index)))
        expect(finished).toStrictEqual(announced)
        // The last reason the upstream gave each choice is the one sent.
        for (const index of announced) {
          const given = frames.flatMap((f) => f.candidates.filter((c) => c.index === index && c.finishReason !== undefined).map((c) => c.finishReason))
          const sent = chunks.flatMap((chunk) => chunk.choices.filter((c) => c.index === index && c.finish_reason !== null).map((c) => c.finish_reason))
          const last = given.at(-1)
          if (last === "SAFETY" || last === "RECITATION") expect(sent).toStrictEqual(["content_filter"])
          if (last === "MAX_TOKENS") expect(sent).toStrictEqual(["length"])
        }
      }),
      { numRuns: Number(process.env["FUZZ_RUNS"] ?? 50) }
    )
  })
})

describe("Gemini unframed text", () => {
  const read = (body: string, pieceSize = body.length) => {
    const unframed = makeUnframedText()
    for (let at = 0; at < body.length; at += pieceSize) unframed.feed(body.slice(at, at + pieceSize))
    return unframed.failure()
  }

  it("finds nothing outside the frames of recorded streams, CRLF or LF, however they are cut", () => {
    for (const name of ["streaming-success-basic-reply-long.txt", "streaming-success-finish-message.txt", "streaming-success-thinking-reply-thought-summary.txt"]) {
      for (const size of [100_000, 7, 1]) expect(read(rawStream(name), size)).toBeUndefined()
    }
    expect(read(": a comment\r\nevent: message\nid: 1\nretry: 10\ndata\n\n")).toBeUndefined()
  })

  it("reads a recorded bare JSON error body (INVALID_ARGUMENT) as Gemini's error with its status and code", () => {
    const body = rawStream("streaming-failure-image-rejected.txt")
    expect(body.startsWith("{")).toBe(true)
    for (const size of [body.length, 5]) {
      expect(read(body, size)).toMatchObject({ reason: "InvalidRequest", status: 400, code: "INVALID_ARGUMENT", message: "Request contains an invalid argument." })
    }
  })

  it("reads a JSON error appended after the last data: frame of a recorded stream, array-wrapped or not", () => {
    const stream = rawStream("streaming-success-basic-reply-short.txt")
    const error = { error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }
    expect(read(`${stream}${JSON.stringify(error, null, 2)}\n`, 9)).toMatchObject({ reason: "Unavailable", status: 503, code: "UNAVAILABLE" })
    expect(read(`${stream}[${JSON.stringify(error)}]`)).toMatchObject({ reason: "Unavailable", status: 503, code: "UNAVAILABLE" })
    expect(read(`${stream}{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}`)).toMatchObject({ reason: "RateLimited", code: "RESOURCE_EXHAUSTED" })
  })

  it("calls unframed text that is no error malformed, and stops gathering past its bound", () => {
    expect(read(`${rawStream("streaming-success-basic-reply-short.txt")}<html>502 Bad Gateway</html>\n`)).toMatchObject({ reason: "MalformedResponse" })
    expect(read(`{"candidates": []}`)).toMatchObject({ reason: "MalformedResponse" })
    const flood = makeUnframedText(1000)
    for (let i = 0; i < 1000; i++) flood.feed("x".repeat(100) + "\n")
    expect(flood.failure()).toMatchObject({ reason: "MalformedResponse", message: expect.stringContaining("unframed text of more than") })
    // A huge data: line is framed, whatever its size.
    const big = makeUnframedText(1000)
    big.feed("data: ")
    for (let i = 0; i < 100; i++) big.feed("y".repeat(1000))
    big.feed("\n\n")
    expect(big.failure()).toBeUndefined()
  })
})
