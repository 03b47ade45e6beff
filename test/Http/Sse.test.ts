import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import { ShuttingDown } from "../../src/Errors.js"
import { dataFrame, doneFrame, sseHeaders, toSseBody } from "../../src/Http/Sse.js"
import type { SseOptions } from "../../src/Http/Sse.js"
import type { ChatCompletionChunk, Usage } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/Provider.js"

const usage: Usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }

const chunk = (choices: ChatCompletionChunk["choices"], extra: Partial<ChatCompletionChunk> = {}): ChatCompletionChunk => ({
  id: "chatcmpl-1",
  object: "chat.completion.chunk",
  created: 1700000000,
  model: "m",
  choices,
  ...extra
})

const content = (text: string) => chunk([{ index: 0, delta: { content: text }, finish_reason: null }])
const first = chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }])
const last = chunk([{ index: 0, delta: {}, finish_reason: "stop" }])
const usageOnly = chunk([], { usage })

const never = Effect.never
const options = (includeUsage: boolean): SseOptions => ({ includeUsage, terminate: never })

const decoder = new TextDecoder()

/** Runs the body to its end and returns it as text, with the separate writes. */
const collect = (body: Stream.Stream<Uint8Array>) =>
  Effect.map(Stream.runCollect(body), (chunks) => {
    const writes = Chunk.toReadonlyArray(chunks).map((bytes) => decoder.decode(bytes))
    return { writes, text: writes.join("") }
  })

/** The `data:` payloads of an SSE text, checking the framing on the way. */
const payloads = (text: string): ReadonlyArray<string> => {
  expect(text.endsWith("\n\n")).toBe(true)
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((frame) => {
      expect(frame.startsWith("data: ")).toBe(true)
      expect(frame.includes("\n")).toBe(false)
      return frame.slice("data: ".length)
    })
}

const parsed = (payload: string): Record<string, unknown> => JSON.parse(payload) as Record<string, unknown>

describe("dataFrame / doneFrame", () => {
  it("frames a payload as `data: <payload>` and a blank line", () => {
    expect(decoder.decode(dataFrame("{\"a\":1}"))).toBe("data: {\"a\":1}\n\n")
    expect(decoder.decode(doneFrame)).toBe("data: [DONE]\n\n")
  })

  it("declares the SSE headers that keep proxies from buffering", () => {
    expect(sseHeaders["cache-control"]).toBe("no-cache")
    expect(sseHeaders["x-accel-buffering"]).toBe("no")
  })
})

describe("toSseBody", () => {
  it.effect("writes one frame per chunk, each its JSON, then [DONE]", () =>
    Effect.gen(function* () {
      const chunks = [first, content("Hello"), content(" world\nwith a newline"), last]
      const { text, writes } = yield* collect(toSseBody(Stream.fromIterable(chunks), options(false)))
      const frames = payloads(text)
      expect(frames).toHaveLength(5)
      expect(frames.at(-1)).toBe("[DONE]")
      expect(frames.slice(0, 4).map(parsed)).toEqual(chunks)
      // each frame is its own write, so each is flushed as it is produced
      expect(writes).toHaveLength(5)
      expect(text.endsWith("data: [DONE]\n\n")).toBe(true)
    }))

  it.effect("ends an empty stream with [DONE] alone", () =>
    Effect.gen(function* () {
      const { text } = yield* collect(toSseBody(Stream.empty, options(false)))
      expect(text).toBe("data: [DONE]\n\n")
    }))

  it.effect("drops the usage-only chunk and strips usage elsewhere unless include_usage", () =>
    Effect.gen(function* () {
      const withUsage = chunk([{ index: 0, delta: {}, finish_reason: "stop" }], { usage })
      const chunks = [first, content("Hi"), withUsage, usageOnly]
      const { text } = yield* collect(toSseBody(Stream.fromIterable(chunks), options(false)))
      const frames = payloads(text)
      expect(frames).toHaveLength(4)
      const objects = frames.slice(0, 3).map(parsed)
      for (const object of objects) expect("usage" in object).toBe(false)
      expect(objects[2]?.["choices"]).toEqual(withUsage.choices)
      expect(frames[3]).toBe("[DONE]")
    }))

  it.effect("keeps the usage-only chunk (choices []) before [DONE] with include_usage", () =>
    Effect.gen(function* () {
      const chunks = [first, content("Hi"), last, usageOnly]
      const { text } = yield* collect(toSseBody(Stream.fromIterable(chunks), options(true)))
      const frames = payloads(text)
      expect(frames).toHaveLength(5)
      const beforeDone = parsed(frames[3] ?? "")
      expect(beforeDone["choices"]).toEqual([])
      expect(beforeDone["usage"]).toEqual(usage)
      expect(frames[4]).toBe("[DONE]")
    }))

  it.effect("turns a failure after the first frame into exactly one error frame and no [DONE]", () =>
    Effect.gen(function* () {
      const failure = new ProviderError({ reason: "Unavailable", message: "upstream went away", provider: "openai", status: 503 })
      const chunks = Stream.fromIterable([first, content("partial")]).pipe(Stream.concat(Stream.fail(failure)))
      const { text } = yield* collect(toSseBody(chunks, options(false)))
      const frames = payloads(text)
      expect(frames).toHaveLength(3)
      expect(text).not.toContain("[DONE]")
      expect(parsed(frames[1] ?? "")["choices"]).toEqual(content("partial").choices)
      expect(parsed(frames[2] ?? "")).toEqual({
        error: { message: "upstream went away", type: "upstream_error", param: null, code: "upstream_unavailable" }
      })
      expect(frames.filter((frame) => frame.includes("\"error\""))).toHaveLength(1)
    }))

  it.effect("turns a failure before any chunk into an error frame alone", () =>
    Effect.gen(function* () {
      const failure = new ProviderError({ reason: "Timeout", message: "too slow", provider: "router" })
      const { text } = yield* collect(toSseBody(Stream.fail(failure), options(true)))
      const frames = payloads(text)
      expect(frames).toHaveLength(1)
      expect(parsed(frames[0] ?? "")).toEqual({
        error: { message: "too slow", type: "timeout_error", param: null, code: "upstream_timeout" }
      })
    }))

  it.effect("turns a defect after the first frame into an internal_error frame with the request id, no internals", () =>
    Effect.gen(function* () {
      const chunks = Stream.make(first).pipe(Stream.concat(Stream.die(new Error("secret stack detail"))))
      const { text } = yield* collect(
        toSseBody(chunks, { includeUsage: false, terminate: never, requestId: "req-sse-1" })
      )
      const frames = payloads(text)
      expect(frames).toHaveLength(2)
      expect(text).not.toContain("[DONE]")
      expect(text).not.toContain("secret stack detail")
      const error = parsed(frames[1] ?? "")["error"] as Record<string, unknown>
      expect(error["code"]).toBe("internal_error")
      expect(error["type"]).toBe("server_error")
      expect(String(error["message"])).toContain("req-sse-1")
    }))

  it.effect("ends a stream that is still running with an error frame when terminate fires", () =>
    Effect.gen(function* () {
      const terminate = yield* Deferred.make<void>()
      const chunks = Stream.make(first, content("still thinking")).pipe(Stream.concat(Stream.never))
      const body = toSseBody(chunks, {
        includeUsage: false,
        terminate: Effect.as(Deferred.await(terminate), new ShuttingDown())
      })
      const seen: Array<string> = []
      const fiber = yield* Stream.runForEach(body, (bytes) => Effect.sync(() => seen.push(decoder.decode(bytes)))).pipe(
        Effect.fork
      )
      // both chunks are written while the stream is still open
      yield* Effect.iterate(0, { while: () => seen.length < 2, body: (n) => Effect.as(Effect.yieldNow(), n + 1) })
      expect(seen).toHaveLength(2)
      yield* Deferred.succeed(terminate, undefined)
      yield* Fiber.join(fiber)
      const frames = payloads(seen.join(""))
      expect(frames).toHaveLength(3)
      expect(parsed(frames[2] ?? "")).toEqual({
        error: {
          message: "The server is shutting down; retry on another instance",
          type: "server_error",
          param: null,
          code: "server_shutting_down"
        }
      })
      expect(seen.join("")).not.toContain("[DONE]")
    }))
})
