import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Ref, Stream, TestClock } from "effect"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import * as fc from "fast-check"
import { answer, countTokens, make, maxOutputChars, maxStreamedDeltas, tokenize } from "../../src/Providers/Mock/Provider.js"
import { streamOf } from "../../src/Providers/Provider.js"

const mock = make({ tokenDelayMs: 0 })

const request = (content: ChatCompletionRequest["messages"][number]["content"], extra: Partial<ChatCompletionRequest> = {}) =>
  ({ model: "mock", messages: [{ role: "user", content }], ...extra }) as ChatCompletionRequest

const collect = (req: ChatCompletionRequest) => Effect.map(Stream.runCollect(streamOf(mock, req)), Chunk.toReadonlyArray)

/** Content of one choice, concatenated over every chunk. */
const streamedContent = (chunks: ReadonlyArray<ChatCompletionChunk>, index = 0): string =>
  chunks
    .flatMap((chunk) => chunk.choices.filter((choice) => choice.index === index))
    .map((choice) => choice.delta.content ?? "")
    .join("")

const choiceChunks = (chunks: ReadonlyArray<ChatCompletionChunk>) => chunks.filter((chunk) => chunk.choices.length > 0)

describe("tokenize", () => {
  it("splits into words that concatenate back to the text", () => {
    const text = "  The quick\tbrown  fox\n jumps. "
    const tokens = tokenize(text)
    expect(tokens.join("")).toBe(text)
    expect(tokens).toHaveLength(5)
    expect(tokenize("")).toEqual([])
    expect(tokenize("   ")).toEqual([])
  })
})

describe("countTokens", () => {
  it.prop("counts what tokenize finds, without building the tokens", [fc.string({ unit: "grapheme-composite" })], ([text]) => {
    expect(countTokens(text)).toBe(tokenize(text).length)
  })

  it.prop("counts every kind of whitespace as a separator", [fc.array(fc.constantFrom("a", "bc", " ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\ufeff", "\u2028"))], ([parts]) => {
    const text = parts.join("")
    expect(countTokens(text)).toBe(tokenize(text).length)
  })
})

describe("mock provider: bounded output", () => {
  it.effect("cuts a huge echo times n to the output bound, with finish_reason length", () =>
    Effect.gen(function* () {
      const huge = "word ".repeat(800_000)
      const completion = yield* mock.complete(request(huge, { n: 128 }))
      expect(completion.choices).toHaveLength(128)
      const total = completion.choices.reduce((sum, choice) => sum + (choice.message.content ?? "").length, 0)
      expect(total).toBeLessThanOrEqual(maxOutputChars)
      expect(completion.choices.every((choice) => choice.finish_reason === "length")).toBe(true)
      expect(completion.usage?.prompt_tokens).toBe(800_000)
    }))

  it.effect("streams at most maxStreamedDeltas content deltas over all choices", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(request("w ".repeat(50_000), { n: 8, stream: true }))
      const deltas = chunks.flatMap((chunk) => chunk.choices).filter((choice) => (choice.delta.content ?? "").length > 0).length
      expect(deltas).toBeLessThanOrEqual(maxStreamedDeltas)
      expect(choiceChunks(chunks).at(-1)?.choices.every((choice) => choice.finish_reason === "length")).toBe(true)
    }))

  it.effect("answers a small request in full", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete(request("just a few words", { n: 2 }))
      expect(completion.choices.map((choice) => choice.message.content)).toEqual(["just a few words", "just a few words"])
      expect(completion.choices.every((choice) => choice.finish_reason === "stop")).toBe(true)
    }))
})

describe("mock provider: completions", () => {
  it.effect("echoes the last user message", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete({
        model: "mock",
        messages: [
          { role: "system", content: "be helpful" },
          { role: "user", content: "first question" },
          { role: "assistant", content: "first answer" },
          { role: "user", content: "second question please" }
        ]
      })
      expect(completion.object).toBe("chat.completion")
      expect(completion.model).toBe("mock")
      expect(completion.choices).toHaveLength(1)
      expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "second question please" })
      expect(completion.choices[0]?.finish_reason).toBe("stop")
      expect(completion.id).toMatch(/^chatcmpl-mock-/)
    }))

  it.effect("echoes the text parts of a content-part message", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete(
        request([
          { type: "text", text: "describe" },
          { type: "text", text: "this picture" }
        ])
      )
      expect(completion.choices[0]?.message.content).toBe("describe this picture")
    }))

  it.effect("answers a request without a user message with a greeting", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete({ model: "mock", messages: [{ role: "system", content: "only system" }] })
      expect(completion.choices[0]?.message.content).toBe("Hello from the mock model.")
    }))

  it.effect("is deterministic: the same request gets the same content and usage", () =>
    Effect.gen(function* () {
      const req = request("deterministic answers make good test fakes", { temperature: 2, seed: 1 })
      const one = yield* mock.complete(req)
      const two = yield* mock.complete(req)
      expect(two.choices).toEqual(one.choices)
      expect(two.usage).toEqual(one.usage)
      expect(answer(req)).toEqual(answer(req))
      const other = yield* mock.complete(request("something else"))
      expect(other.choices[0]?.message.content).not.toBe(one.choices[0]?.message.content)
    }))

  it.effect("counts prompt tokens over all messages and completion tokens of the answer", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete({
        model: "mock",
        messages: [
          { role: "system", content: "one two" },
          { role: "user", content: "three four five" }
        ]
      })
      expect(completion.usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 })
    }))

  it.effect("stops at max_tokens with finish_reason length and truncated content", () =>
    Effect.gen(function* () {
      const long = "one two three four five six"
      const truncated = yield* mock.complete(request(long, { max_tokens: 2 }))
      expect(truncated.choices[0]?.message.content).toBe("one two ")
      expect(truncated.choices[0]?.finish_reason).toBe("length")
      expect(truncated.usage?.completion_tokens).toBe(2)
      const viaNewName = yield* mock.complete(request(long, { max_completion_tokens: 4, max_tokens: 1 }))
      expect(viaNewName.choices[0]?.message.content).toBe("one two three four ")
      expect(viaNewName.choices[0]?.finish_reason).toBe("length")
      const exact = yield* mock.complete(request(long, { max_tokens: 6 }))
      expect(exact.choices[0]?.message.content).toBe(long)
      expect(exact.choices[0]?.finish_reason).toBe("stop")
    }))

  it.effect("answers n choices, counting completion tokens for each", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete(request("a b", { n: 3 }))
      expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1, 2])
      for (const choice of completion.choices) expect(choice.message.content).toBe("a b")
      expect(completion.usage).toEqual({ prompt_tokens: 2, completion_tokens: 6, total_tokens: 8 })
    }))

  const tools: ChatCompletionRequest["tools"] = [
    { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
    { type: "function", function: { name: "search" } }
  ]

  it.effect("calls the forced tool with the echo as arguments", () =>
    Effect.gen(function* () {
      const completion = yield* mock.complete(
        request("find cats", { tools, tool_choice: { type: "function", function: { name: "search" } } })
      )
      const choice = completion.choices[0]
      expect(choice?.finish_reason).toBe("tool_calls")
      expect(choice?.message.content).toBeNull()
      expect(choice?.message.tool_calls).toEqual([
        { id: "call_mock_search", type: "function", function: { name: "search", arguments: JSON.stringify({ input: "find cats" }) } }
      ])
    }))

  it.effect("calls the first tool with tool_choice required, and none with auto or none", () =>
    Effect.gen(function* () {
      const required = yield* mock.complete(request("x", { tools, tool_choice: "required" }))
      expect(required.choices[0]?.message.tool_calls?.[0]?.function.name).toBe("lookup")
      for (const tool_choice of ["auto", "none"] as const) {
        const plain = yield* mock.complete(request("x", { tools, tool_choice }))
        expect(plain.choices[0]?.message.tool_calls).toBeUndefined()
        expect(plain.choices[0]?.finish_reason).toBe("stop")
      }
    }))
})

describe("mock provider: streams", () => {
  it.effect("streams token by token, concatenating to the non-streamed content", () =>
    Effect.gen(function* () {
      const req = request("streaming should equal completing, token for token")
      const chunks = yield* collect(req)
      const completion = yield* mock.complete(req)
      expect(streamedContent(chunks)).toBe(completion.choices[0]?.message.content)
      const contentChunks = chunks.filter((chunk) => (chunk.choices[0]?.delta.content ?? "") !== "")
      expect(contentChunks.map((chunk) => chunk.choices[0]?.delta.content)).toEqual(tokenize(completion.choices[0]?.message.content ?? ""))
      for (const chunk of chunks) {
        expect(chunk.object).toBe("chat.completion.chunk")
        expect(chunk.id).toBe(chunks[0]?.id)
        expect(chunk.model).toBe("mock")
      }
    }))

  it.effect("sends the role in the first delta only, finish_reason on the last choice chunk, usage last", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(request("one two three"))
      expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
      expect(chunks.slice(1).every((chunk) => chunk.choices.every((choice) => choice.delta.role === undefined))).toBe(true)
      const withChoices = choiceChunks(chunks)
      expect(withChoices.at(-1)?.choices[0]?.finish_reason).toBe("stop")
      expect(withChoices.slice(0, -1).every((chunk) => chunk.choices[0]?.finish_reason === null)).toBe(true)
      const final = chunks.at(-1)
      expect(final?.choices).toEqual([])
      expect(final?.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 })
    }))

  it.effect("streams finish_reason length when max_tokens cuts the answer", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(request("one two three four", { max_tokens: 3 }))
      expect(streamedContent(chunks)).toBe("one two three ")
      expect(choiceChunks(chunks).at(-1)?.choices[0]?.finish_reason).toBe("length")
      expect(chunks.at(-1)?.usage?.completion_tokens).toBe(3)
    }))

  it.effect("streams every choice when n > 1", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(request("x y", { n: 2 }))
      for (const chunk of choiceChunks(chunks)) expect(chunk.choices.map((choice) => choice.index)).toEqual([0, 1])
      expect(streamedContent(chunks, 0)).toBe("x y")
      expect(streamedContent(chunks, 1)).toBe("x y")
      expect(chunks.at(-1)?.usage?.completion_tokens).toBe(4)
    }))

  it.effect("streams a forced tool call as one delta with finish_reason tool_calls", () =>
    Effect.gen(function* () {
      const chunks = yield* collect(
        request("hi", {
          tools: [{ type: "function", function: { name: "lookup" } }],
          tool_choice: { type: "function", function: { name: "lookup" } }
        })
      )
      const calls = chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => choice.delta.tool_calls ?? []))
      expect(calls).toEqual([
        { index: 0, id: "call_mock_lookup", type: "function", function: { name: "lookup", arguments: "{\"input\":\"hi\"}" } }
      ])
      expect(choiceChunks(chunks).at(-1)?.choices[0]?.finish_reason).toBe("tool_calls")
      expect(streamedContent(chunks)).toBe("")
    }))

  it.effect("waits tokenDelayMs before each token (TestClock)", () =>
    Effect.gen(function* () {
      const slow = make({ tokenDelayMs: 100 })
      const received = yield* Ref.make<ReadonlyArray<ChatCompletionChunk>>([])
      const fiber = yield* streamOf(slow, request("alpha beta gamma"))
        .pipe(
          Stream.runForEach((chunk) => Ref.update(received, (all) => [...all, chunk])),
          Effect.fork
        )
      const contentSoFar = Effect.map(Ref.get(received), (all) => streamedContent(all))
      yield* TestClock.adjust(0)
      // only the role chunk: no token before the clock moves
      expect((yield* Ref.get(received)).length).toBe(1)
      expect(yield* contentSoFar).toBe("")
      yield* TestClock.adjust(99)
      expect(yield* contentSoFar).toBe("")
      yield* TestClock.adjust(1)
      expect(yield* contentSoFar).toBe("alpha ")
      yield* TestClock.adjust(100)
      expect(yield* contentSoFar).toBe("alpha beta ")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(100)
      yield* Fiber.join(fiber)
      expect(yield* contentSoFar).toBe("alpha beta gamma")
      expect((yield* Ref.get(received)).at(-1)?.usage?.completion_tokens).toBe(3)
    }))
})
