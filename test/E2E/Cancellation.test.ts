/**
 * A client that goes away must not leave the upstream request running: the fake upstream must see its
 * connection closed promptly (< 100 ms) after the client aborts, for streams and for slow completions.
 *
 * Each test first runs the same abort once untimed. The first abort in a fresh process pays one-time costs
 * (JIT of the interruption and undici abort paths): 20-500 ms on a loaded 2-CPU box, against 2-15 ms after.
 * The warm-up abort must still close its upstream connection; only the second one is held to the 100 ms bound.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI from "openai"
import { startGateway, testKey } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"
import { Anthropic, deploymentOf, Gemini, hang, OpenAi, registryFromDocument, stallAfter, startUpstream } from "../support/FakeUpstreams.js"
import type { Dialect, FakeUpstream, Reply } from "../support/FakeUpstreams.js"

const promptlyMs = 100

/** A gateway whose model `m` is served by `upstream`. */
const gatewayFor = (upstream: FakeUpstream) =>
  startGateway({
    registry: registryFromDocument({ models: [deploymentOf("m", upstream)], settings: { retry: { max_retries: 0 } } }),
    settings: { shutdownGraceMs: 100 }
  })

/** Waits for the upstream's `index`-th connection to close (fails if it never does); returns when it closed. */
const closedAt = (upstream: FakeUpstream, index: number) =>
  Effect.gen(function* () {
    const [call] = (yield* upstream.awaitCalls(index + 1)).slice(index)
    const at = yield* Effect.promise(() => call!.closed).pipe(
      Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => new Error(`upstream connection ${index} was never closed`) })
    )
    expect(call!.closedByClient).toBe(true)
    return at
  })

/** Runs `abort` (which returns when it aborted) twice: once to warm up, once timed against the upstream close. */
const abortTwice = (upstream: FakeUpstream, abort: Effect.Effect<number, unknown>) =>
  Effect.gen(function* () {
    const warmUpAbortedAt = yield* abort
    expect(yield* closedAt(upstream, 0)).toBeGreaterThanOrEqual(warmUpAbortedAt)
    const abortedAt = yield* abort
    const closed = yield* closedAt(upstream, 1)
    expect(closed).toBeGreaterThanOrEqual(abortedAt)
    expect(closed - abortedAt).toBeLessThan(promptlyMs)
    expect(upstream.calls).toHaveLength(2)
  })

const within = <A>(what: string, effect: Effect.Effect<A, unknown>) =>
  effect.pipe(Effect.timeoutFail({ duration: "3 seconds", onTimeout: () => new Error(`timed out: ${what}`) }))

/** POSTs a stream request with fetch, reads until `firstText` arrives, aborts; returns when it aborted. */
const fetchThenAbort = (gateway: RunningGateway, firstText: string) =>
  within(
    `"${firstText}" from the gateway`,
    Effect.tryPromise({
      try: async () => {
        const controller = new AbortController()
        const response = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true }),
          signal: controller.signal
        })
        expect(response.status).toBe(200)
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = ""
        while (!text.includes(firstText)) {
          const { done, value } = await reader.read()
          if (done) throw new Error(`the stream ended before "${firstText}": ${text}`)
          text += decoder.decode(value, { stream: true })
        }
        expect(text).not.toContain("[DONE]")
        const at = performance.now()
        controller.abort()
        await reader.read().catch(() => undefined)
        return at
      },
      catch: (error) => error
    })
  )

/** Streams that send a first answer and then stay open, silent: the client is left waiting. */
const stalledStreams: ReadonlyArray<{ readonly dialect: Dialect; readonly reply: Reply; readonly firstText: string }> = [
  { dialect: "openai", reply: stallAfter(OpenAi.streamFrames(["Hello", " there"]), 2), firstText: "Hello" },
  { dialect: "anthropic", reply: stallAfter(Anthropic.recordedStreamFrames("basic_response.txt"), 4), firstText: "Hello" },
  {
    dialect: "gemini",
    reply: stallAfter(Gemini.recordedStreamFrames("Chats_Tests_sendMessage_Google_AI_with_text_stream"), 2),
    firstText: " sky is blue"
  }
]

describe("client cancellation reaches the upstream", () => {
  for (const { dialect, firstText, reply } of stalledStreams) {
    it.scopedLive(`fetch aborted mid-stream closes the ${dialect} upstream connection`, () =>
      Effect.gen(function* () {
        const upstream = yield* startUpstream(dialect, [reply])
        const gateway = yield* gatewayFor(upstream)
        yield* abortTwice(upstream, fetchThenAbort(gateway, firstText))
      }))
  }

  it.scopedLive("the SDK's stream.controller.abort() closes the upstream connection", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [stallAfter(OpenAi.streamFrames(["Hello", " there"]), 2)])
      const gateway = yield* gatewayFor(upstream)
      const client = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: testKey, maxRetries: 0 })
      const sdkThenAbort = within(
        "the SDK stream",
        Effect.tryPromise({
          try: async () => {
            const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true })
            let received = ""
            let abortedAt = Number.NaN
            // The iteration ends quietly after controller.abort(), as the SDK documents.
            for await (const chunk of stream) {
              received += chunk.choices[0]?.delta.content ?? ""
              if (received.includes("Hello")) {
                abortedAt = performance.now()
                stream.controller.abort()
              }
            }
            expect(received).toBe("Hello")
            expect(Number.isNaN(abortedAt)).toBe(false)
            return abortedAt
          },
          catch: (error) => error
        })
      )
      yield* abortTwice(upstream, sdkThenAbort)
    }))

  it.scopedLive("aborting a slow non-streamed request closes the upstream connection", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [hang])
      const gateway = yield* gatewayFor(upstream)
      const sendThenAbort = Effect.gen(function* () {
        const before = upstream.calls.length
        const controller = new AbortController()
        const request = fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
          signal: controller.signal
        }).then(
          () => "answered",
          (error: unknown) => (error instanceof Error ? error.name : "failed")
        )
        yield* within("the request reaching the upstream", upstream.awaitCalls(before + 1))
        yield* Effect.sleep("20 millis")
        expect(upstream.calls[before]?.closedAt).toBeUndefined()
        const abortedAt = performance.now()
        controller.abort()
        expect(yield* Effect.promise(() => request)).toBe("AbortError")
        return abortedAt
      })
      yield* abortTwice(upstream, sendThenAbort)
    }))
})

describe("a client that leaves before the first token (finding 15)", () => {
  // undici reconnects for an aborted request's slot and closes that connection at once, unwritten (measured: ~1 ms,
  // 0 bytes): what must hold is that nothing is sent again and no connection is left open.
  it.scopedLive("closes the upstream connection, sends nothing again, and leaves no connection open", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [stallAfter(OpenAi.streamFrames(["late"]), 0)])
      const gateway = yield* gatewayFor(upstream)
      for (let round = 1; round <= 3; round++) {
        const controller = new AbortController()
        const request = fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true }),
          signal: controller.signal
        }).catch(() => undefined)
        yield* upstream.awaitCalls(round)
        yield* Effect.sleep("50 millis")
        controller.abort()
        yield* Effect.promise(() => request)
        yield* closedAt(upstream, round - 1)
      }
      yield* Effect.sleep("300 millis")
      expect(upstream.calls).toHaveLength(3)
      expect(yield* upstream.openConnections).toBe(0)
    }))
})
