/**
 * Properties for the robustness bugs the first fuzz runs found outside the providers (each failed before its fix):
 * a CONNECT dropped unanswered, a request without Host answered by Node's bare 400, a whitespace message that made
 * the mock's tokenizer quadratic, and an undici body destroyed without an error listener (a process crash).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Option, Redacted, Runtime, Stream } from "effect"
import fc from "fast-check"
import { decodeResponsesCall } from "../../src/Http/Responses.js"
import * as OpenAiProvider from "../../src/Providers/OpenAiCompatible/Provider.js"
import { errorFromEvent } from "../../src/Providers/Anthropic/StreamTranslate.js"
import { ProviderError, streamOf } from "../../src/Providers/Provider.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { describeOutcome, rawRequest, requestBytes } from "../support/FuzzHttp.js"
import { expectEnvelope, runsOf } from "../support/FuzzSpec.js"
import { startByteUpstream } from "../support/FuzzUpstream.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"

const portOf = (baseUrl: string) => Number(new URL(baseUrl).port)

for (const mount of mounts) {
  describe(`fixed robustness bugs, ${mount} mount`, () => {
    it.scopedLive("CONNECT is answered (with the envelope), not dropped", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.constantFrom("127.0.0.1:443", "/v1/chat/completions", "/health", "example.com:80"), async (target) => {
              const outcome = await rawRequest(portOf(gateway.baseUrl), requestBytes(`CONNECT ${target} HTTP/1.1`, [["host", "127.0.0.1"], ["x-internal-auth", testKey]]), { guardMs: 5000 })
              if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
              expect(outcome.status).toBeGreaterThanOrEqual(400)
              expect(outcome.status).toBeLessThan(500)
              expectEnvelope(outcome.body.toString("utf8"))
            }),
            { numRuns: 4 }
          )
        )
      }))

    it.scopedLive("an HTTP/1.1 request without Host gets the envelope, not Node's empty 400", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const outcome = yield* Effect.promise(() => rawRequest(portOf(gateway.baseUrl), Buffer.from("GET /health HTTP/1.1\r\n\r\n"), { guardMs: 5000 }))
        if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
        expect(outcome.status).toBe(400)
        expectEnvelope(outcome.body.toString("utf8"))
      }))

    it.scopedLive("an Upgrade the gateway does not speak is ignored: the request is served, and a body cut short is a 400, not a silent close (found by the client fuzz)", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const body = Buffer.from(JSON.stringify({ model: "mock", messages: [{ role: "user", content: "Hello gateway" }] }))
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.constantFrom("websocket", "h2c"), fc.constantFrom("upgrade", "Upgrade, HTTP2-Settings", "keep-alive, upgrade"), fc.option(fc.integer({ min: 0, max: body.length - 1 }), { nil: undefined }), async (protocol, connection, cutAt) => {
              const head = requestBytes("POST /v1/chat/completions HTTP/1.1", [["host", "127.0.0.1"], ["x-internal-auth", testKey], ["content-type", "application/json"], ["connection", connection], ["upgrade", protocol], ["content-length", String(body.length)]])
              const bytes = Buffer.concat([head, cutAt === undefined ? body : body.subarray(0, cutAt)])
              const outcome = await rawRequest(portOf(gateway.baseUrl), bytes, { endAfterWrite: true, guardMs: 5000 })
              if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
              const text = outcome.body.toString("utf8")
              if (cutAt === undefined) {
                expect(outcome.status).toBe(200)
                expect((JSON.parse(text) as { object: string }).object).toBe("chat.completion")
              } else {
                expect(outcome.status).toBe(400)
                expectEnvelope(text)
              }
            }),
            { numRuns: runsOf(0.3) }
          )
        )
      }))

    it.scopedLive("a message of nothing but whitespace is answered at all (the mock's tokenizer is quadratic)", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.constantFrom(" ", "\n", "\t", "\u00a0"), fc.integer({ min: 100_000, max: 200_000 }), async (space, size) => {
              const body = Buffer.from(JSON.stringify({ model: "mock", messages: [{ role: "user", content: space.repeat(size) }] }))
              const outcome = await rawRequest(
                portOf(gateway.baseUrl),
                requestBytes("POST /v1/chat/completions HTTP/1.1", [["host", "127.0.0.1"], ["x-internal-auth", testKey], ["content-type", "application/json"], ["content-length", String(body.length)]], body),
                // A liveness guard, not a measurement: a linear tokenizer answers this in milliseconds.
                { guardMs: 10_000 }
              )
              if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
              expect(outcome.status).toBe(200)
            }),
            { numRuns: 1, endOnFailure: true }
          )
        )
      }), 120_000)
  })
}

describe("fixed robustness bugs, OpenAI-compatible provider", () => {
  it.scopedLive("a 200 in a media type it does not read is MalformedResponse, and nothing escapes as an uncaught AbortError", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const record = (error: unknown) => seen.push(error)
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("uncaughtException", record)),
        () => Effect.sync(() => process.off("uncaughtException", record))
      )
      const upstream = yield* startByteUpstream
      const provider = yield* OpenAiProvider.make({ baseUrl: `${upstream.origin}/v1`, apiKey: Redacted.make("k"), headers: {} })
      const runtime = yield* Effect.runtime<never>()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.constantFrom("text/html", "application/octet-stream", "text/plain"), fc.uint8Array({ maxLength: 2048 }), async (contentType, body) => {
            upstream.reply({ status: 200, headers: { "content-type": contentType }, pieces: [body], then: "end" })
            const exit = await Runtime.runPromise(runtime)(Effect.exit(Stream.runCollect(streamOf(provider, { model: "m", messages: [{ role: "user", content: "x" }] }))))
            for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve))
            expect(seen.map(String)).toEqual([])
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            expect(Option.isSome(failure) && failure.value instanceof ProviderError && failure.value.reason).toBe("MalformedResponse")
          }),
          { numRuns: runsOf(0.2) }
        )
      )
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("a JSON answer without choices to a stream request is MalformedResponse, not an empty stream (found by the gateway fuzz)", () =>
    Effect.gen(function* () {
      const upstream = yield* startByteUpstream
      const provider = yield* OpenAiProvider.make({ baseUrl: `${upstream.origin}/v1`, apiKey: Redacted.make("k"), headers: {} })
      const runtime = yield* Effect.runtime<never>()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.boolean(), fc.string({ maxLength: 40 }), async (withUsage, id) => {
            const completion = { id, object: "chat.completion", created: 1, model: "m", choices: [], ...(withUsage ? { usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } } : {}) }
            upstream.reply({ status: 200, headers: { "content-type": "application/json" }, pieces: [Buffer.from(JSON.stringify(completion))], then: "end" })
            const exit = await Runtime.runPromise(runtime)(Effect.exit(Stream.runCollect(streamOf(provider, { model: "m", messages: [{ role: "user", content: "x" }] }))))
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            expect(Option.isSome(failure) && failure.value instanceof ProviderError && failure.value.reason).toBe("MalformedResponse")
          }),
          { numRuns: runsOf(0.1) }
        )
      )
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("a stream whose [DONE] comes before any choice (nothing, or usage alone) is MalformedResponse, not an empty answer (found by the gateway fuzz)", () =>
    Effect.gen(function* () {
      const upstream = yield* startByteUpstream
      const provider = yield* OpenAiProvider.make({ baseUrl: `${upstream.origin}/v1`, apiKey: Redacted.make("k"), headers: {} })
      const runtime = yield* Effect.runtime<never>()
      const usageOnly = JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [], usage: { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 } })
      const choice = JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "x" }, finish_reason: null }] })
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(fc.constant(usageOnly), { maxLength: 3 }), fc.boolean(), fc.array(fc.constant(choice), { maxLength: 2 }), async (before, withDone, after) => {
            const frames = [...before, ...(withDone ? ["[DONE]"] : []), ...after].map((data) => `data: ${data}\n\n`).join("")
            upstream.reply({ status: 200, headers: { "content-type": "text/event-stream" }, pieces: [Buffer.from(frames)], then: "end" })
            const exit = await Runtime.runPromise(runtime)(Effect.exit(Stream.runCollect(streamOf(provider, { model: "m", messages: [{ role: "user", content: "x" }] }))))
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            // No choice before the stream's end (its [DONE], or the end of the body with no finish reason): a failure.
            expect(Option.isSome(failure) && failure.value instanceof ProviderError && failure.value.reason).toBe(withDone ? "MalformedResponse" : "Unavailable")
          }),
          { numRuns: runsOf(0.2) }
        )
      )
    }).pipe(Effect.provide(Transport.layer())))
})

describe("fixed robustness bugs, Responses requests", () => {
  it("a reasoning.effort outside OpenAI's values is a 400 naming the field, not a response that breaks OpenAI's schema (found by the client fuzz)", () => {
    for (const effort of ['"low"', "LOW", "", "turbo"]) {
      const decoded = decodeResponsesCall(JSON.stringify({ model: "mock", input: "x", reasoning: { effort } }))
      expect(Either.isLeft(decoded)).toBe(true)
      if (Either.isLeft(decoded)) expect(decoded.left.param).toBe("reasoning.effort")
    }
    for (const effort of ["none", "minimal", "low", "medium", "high", "xhigh", "max", null]) {
      expect(Either.isRight(decodeResponsesCall(JSON.stringify({ model: "mock", input: "x", reasoning: { effort } })))).toBe(true)
    }
  })
})

describe("fixed robustness bugs, error tables", () => {
  it("an Anthropic error event whose type names an Object member is an ordinary unknown error (found by the upstream fuzz)", () =>
    fc.assert(
      fc.property(fc.constantFrom("constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"), fc.string(), (type, message) => {
        const error = errorFromEvent({ type: "error", error: { type, message } })
        expect(error.reason).toBe("Unavailable")
        expect(error.code).toBe(type)
      })
    ))
})
