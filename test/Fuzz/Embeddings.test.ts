/**
 * Nothing a client or an upstream sends about embeddings takes the gateway down. Clients: arbitrary bodies to
 * POST /v1/embeddings over real sockets, both mounts: a 200 that is a whole, ordered list of decodable vectors, or a
 * 4xx in OpenAI's exact envelope; never a 5xx, never a dropped connection. Upstreams: arbitrary answers from a real
 * HTTP server to the OpenAI-compatible and Gemini providers: one vector per input, or one ProviderError the error
 * table answers (a malformed answer is a 502 upstream_malformed_response); never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Redacted, Runtime } from "effect"
import fc from "fast-check"
import { describeError } from "../../src/Http/Errors.js"
import { fromBase64, inputCount, toBase64 } from "../../src/OpenAi/Embeddings.js"
import type { EmbeddingInputValue, EmbeddingRequest } from "../../src/OpenAi/Embeddings.js"
import * as GeminiProvider from "../../src/Providers/Gemini/Provider.js"
import * as OpenAiProvider from "../../src/Providers/OpenAiCompatible/Provider.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { cutAt, cutsOf, extremeNumber, jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import { expectEveryBodyAnswered } from "../support/FuzzClient.js"
import { expectEnvelope, preview, runsOf } from "../support/FuzzSpec.js"
import { startByteUpstream } from "../support/FuzzUpstream.js"
import type { ByteReply } from "../support/FuzzUpstream.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

// ---------------------------------------------------------------------------------------------------------------
// Clients

const validRequests: ReadonlyArray<Record<string, unknown>> = [
  { model: "mock", input: "Hello gateway" },
  { model: "mock", input: ["one", "two three"], encoding_format: "base64", dimensions: 8 },
  { model: "mock", input: [1, 2, 3], encoding_format: "float" },
  { model: "mock", input: [[1, 2], [3]], user: "u", dimensions: 4, input_type: "query" }
]

const bodies: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...validRequests).chain((request) => mutatedJson(request)).map((body) => utf8(jsonText(body))) },
  { weight: 3, arbitrary: fc.constantFrom(...validRequests).map((body) => utf8(JSON.stringify(body))) },
  {
    weight: 2,
    arbitrary: fc
      .record({
        input: fc.oneof(fc.array(fc.oneof(fc.string(), extremeNumber, nastyString), { maxLength: 6 }), fc.array(fc.array(extremeNumber, { maxLength: 4 }), { maxLength: 4 }), nastyString),
        dimensions: fc.oneof(extremeNumber, fc.integer({ min: 1, max: 64 })),
        encoding_format: fc.oneof(fc.constantFrom("float", "base64"), nastyString)
      }, { requiredKeys: ["input"] })
      .map((fields) => utf8(jsonText({ model: "mock", ...fields })))
  },
  { weight: 1, arbitrary: fc.oneof(weirdValue, fc.jsonValue()).map((value) => utf8(jsonText(value))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

interface ListShape {
  readonly object: unknown
  readonly model: unknown
  readonly data: ReadonlyArray<{ readonly object: unknown; readonly index: unknown; readonly embedding: unknown }>
  readonly usage: { readonly prompt_tokens: unknown; readonly total_tokens: unknown }
}

/** A 200 answer: a list of one decodable vector per input, in order, with sane usage. */
const expectWholeList = (text: string, sent: Uint8Array) => {
  const body = JSON.parse(text) as ListShape
  const request = JSON.parse(Buffer.from(sent).toString("utf8")) as { readonly input: EmbeddingInputValue; readonly encoding_format?: string; readonly dimensions?: number }
  expect(body.object).toBe("list")
  expect(body.model).toBe("mock")
  expect(body.data.map((item) => item.index)).toEqual(Array.from({ length: inputCount(request.input) }, (_, index) => index))
  for (const item of body.data) {
    expect(item.object).toBe("embedding")
    const vector = request.encoding_format === "base64" ? fromBase64(String(item.embedding)) : (item.embedding as ReadonlyArray<number>)
    expect(vector?.length).toBe(request.dimensions ?? 256)
  }
  expect(Number.isSafeInteger(body.usage.prompt_tokens)).toBe(true)
  expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens)
}

for (const mount of mounts) {
  describe(`embeddings client input, ${mount} mount`, () => {
    it.scopedLive("any body: a whole list of vectors or a 4xx envelope, never a 5xx", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const port = Number(new URL(gateway.baseUrl).port)
        yield* Effect.promise(() =>
          expectEveryBodyAnswered(port, ["x-internal-auth", testKey], bodies, (body) => ({ path: "/v1/embeddings", body }), (body, status, text) => {
            if (status !== 200) {
              expectEnvelope(text)
              return "refused"
            }
            expectWholeList(text, body)
            return "served"
          })
        )
        expect((yield* Effect.promise(() => fetch(`${gateway.baseUrl}/health`))).status).toBe(200)
      }))
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Upstreams

const openAiAnswer = { object: "list", data: [{ object: "embedding", index: 1, embedding: "AACAPwAAAMA=" }, { object: "embedding", index: 0, embedding: [0.5, -0.25] }], model: "m", usage: { prompt_tokens: 3, total_tokens: 3 } }
const geminiAnswer = { embeddings: [{ values: [0.5, -0.25] }, { values: [1, -2] }] }

const dialects = [
  { name: "openai", answer: openAiAnswer, make: OpenAiProvider.make, baseUrl: (origin: string) => `${origin}/v1` },
  { name: "gemini", answer: geminiAnswer, make: GeminiProvider.make, baseUrl: (origin: string) => origin }
] as const

const upstreamBodies = (answer: unknown): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 8, arbitrary: mutatedJson(answer).map((body) => utf8(jsonText(body))) },
    { weight: 2, arbitrary: fc.constant(utf8(JSON.stringify(answer))) },
    { weight: 1, arbitrary: fc.oneof(weirdValue, fc.jsonValue(), nastyString).map((value) => utf8(jsonText(value))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.array(fc.array(fc.oneof(extremeNumber, fc.float()), { maxLength: 3 }), { maxLength: 3 }).map((vectors) => utf8(jsonText({ data: vectors.map((embedding, index) => ({ index, embedding: index % 2 === 0 ? embedding : toBase64(embedding.map((value) => (Number.isFinite(value) ? value : 0))) })) }))) }
  )

const upstreamReplies = (answer: unknown): fc.Arbitrary<{ readonly reply: ByteReply; readonly summary: string }> =>
  fc
    .tuple(
      upstreamBodies(answer),
      fc.oneof({ weight: 8, arbitrary: fc.constant(200) }, { weight: 2, arbitrary: fc.constantFrom(201, 400, 404, 413, 429, 500, 503) }),
      fc.constantFrom("application/json", "application/json; charset=utf-8", "text/html", ""),
      fc.oneof({ weight: 9, arbitrary: fc.constant("end" as const) }, { weight: 1, arbitrary: fc.constant("destroy" as const) })
    )
    .chain(([body, status, contentType, then]) =>
      cutsOf(body.length).map((cuts) => {
        const summary = `${status} ${contentType} ${then}, cuts ${JSON.stringify(cuts)}, body ${preview(Buffer.from(body).toString("utf8"), 2000)}`
        const reply: ByteReply = { status, headers: contentType === "" ? {} : { "content-type": contentType }, pieces: cutAt(body, cuts), then }
        return { reply, summary, [fc.toStringMethod]: () => summary }
      })
    )

const request: EmbeddingRequest = { model: "fuzz-model", input: ["first", "second"] }

for (const dialect of dialects) {
  describe(`${dialect.name} embeddings against hostile upstream bytes`, () => {
    it.scopedLive("one vector per input, or one ProviderError the error table answers; never a defect", () =>
      Effect.gen(function* () {
        const upstream = yield* startByteUpstream
        const provider = yield* dialect.make({ baseUrl: dialect.baseUrl(upstream.origin), apiKey: Redacted.make("upstream-key"), headers: {} })
        const runtime = yield* Effect.runtime<never>()
        const seen = { ok: 0, failed: 0 }
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(upstreamReplies(dialect.answer), async ({ reply, summary }) => {
              upstream.reply(reply)
              const exit = await Runtime.runPromise(runtime)(Effect.exit(Effect.timeout(provider.embed(request), "20 seconds")))
              if (Exit.isSuccess(exit)) {
                seen.ok++
                expect(exit.value.vectors).toHaveLength(2)
                for (const vector of exit.value.vectors) for (const value of vector) expect(Number.isFinite(Math.fround(value))).toBe(true)
                return
              }
              seen.failed++
              const failure = Cause.failureOption(exit.cause)
              if (Option.isNone(failure) || !(failure.value instanceof ProviderError)) throw new Error(`not a ProviderError but ${Cause.pretty(exit.cause)}\n${summary}`)
              const described = describeError(failure.value)
              expect(described.status).toBeGreaterThanOrEqual(400)
              expect(described.status).toBeLessThan(600)
              expectEnvelope(JSON.stringify(described.body))
              if (failure.value.reason === "MalformedResponse") expect(described.body.error.code).toBe("upstream_malformed_response")
            }),
            { numRuns: runsOf(2) }
          )
        )
        if (runsOf(2) >= 30) {
          expect(seen.ok).toBeGreaterThan(0)
          expect(seen.failed).toBeGreaterThan(0)
        }
      }).pipe(Effect.provide(Transport.layer())))
  })
}
