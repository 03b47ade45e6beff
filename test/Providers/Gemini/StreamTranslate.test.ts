import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { ChatCompletionChunk } from "../../../src/OpenAi/Schemas.js"
import type { ProviderError } from "../../../src/Providers/Provider.js"
import { finish, initial, step } from "../../../src/Providers/Gemini/StreamTranslate.js"
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

  it("leaves thought summaries out and reports the last cumulative usage with reasoning tokens", () => {
    const body = rawStream("streaming-success-thinking-reply-thought-summary.txt")
    const chunks = chunksOf(framesOf(body))
    const content = contentOf(chunks)
    expect(content).toBe(
      "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered in all directions, making the sky appear blue to our eyes."
    )
    expect(content).not.toContain("Exploring Sky Color")
    expect(chunks.at(-1)?.usage).toStrictEqual({
      prompt_tokens: 10,
      completion_tokens: 48 + 540,
      total_tokens: 598,
      completion_tokens_details: { reasoning_tokens: 540 }
    })
  })

  it("emits a whole tool call after thinking and finishes with tool_calls", () => {
    const chunks = chunksOf(framesOf(rawStream("streaming-success-thinking-function-call-thought-summary-signature.txt")))
    expect(contentOf(chunks)).toBe("")
    expect(toolCallsOf(chunks)).toStrictEqual([
      { index: 0, id: "call_stream1_0_0", type: "function", function: { name: "now", arguments: "{}" } }
    ])
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

  it("fails with Unavailable when the stream ends before any finishReason", () => {
    const frames = framesOf(rawStream("streaming-success-basic-reply-short.txt")).slice(0, 2)
    const error = errorOf(frames)
    expect(error.reason).toBe("Unavailable")
    expect(error.message).toContain("ended early")
    expect(errorOf([]).reason).toBe("Unavailable")
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
})
