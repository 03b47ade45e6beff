/**
 * Whatever an upstream sends, the gateway answers its client with a well-formed stream or a clean error: for each
 * dialect (OpenAI-compatible, Anthropic Messages, Gemini), recorded frames with mutated fields, frames removed,
 * repeated or invented, truncations, garbage bytes, mislabelled or mis-encoded bodies and resets, written by a real
 * HTTP server in arbitrary byte pieces (cuts inside UTF-8 characters and CRLFs included). Driven through each
 * provider (`make` on a real transport, `streamOf` / `complete`) and through the whole gateway over a socket.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Redacted, Runtime, Stream } from "effect"
import fc from "fast-check"
import { gzipSync } from "node:zlib"
import { describeError } from "../../src/Http/Errors.js"
import type { ChatCompletionChunk, ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import * as AnthropicProvider from "../../src/Providers/Anthropic/Provider.js"
import * as GeminiProvider from "../../src/Providers/Gemini/Provider.js"
import * as OpenAiProvider from "../../src/Providers/OpenAiCompatible/Provider.js"
import { ProviderError, streamOf } from "../../src/Providers/Provider.js"
import type { Provider, UpstreamTarget } from "../../src/Providers/Provider.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import type { UpstreamTransport } from "../../src/Providers/Upstream/Transport.js"
import { registryFromDocument } from "../support/FakeUpstreams.js"
import { cutAt, cutsOf, invalidUtf8, jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import {
  anthropicMessage,
  anthropicStreams,
  geminiResponses,
  geminiStreams,
  openAiCompletions,
  openAiStreamBodies
} from "../support/FuzzFixtures.js"
import type { RecordedEvent } from "../support/FuzzFixtures.js"
import { expectClientChunk, expectClientCompletion, expectEnvelope, fuzzRuns, preview, runsOf } from "../support/FuzzSpec.js"
import { startByteUpstream } from "../support/FuzzUpstream.js"
import type { ByteReply, ByteUpstream } from "../support/FuzzUpstream.js"
import { startGateway } from "../support/Gateway.js"

type DialectName = "openai" | "anthropic" | "gemini"

// ---------------------------------------------------------------------------------------------------------------
// Upstream bodies

/** One SSE event as the upstream writes it. */
interface Frame {
  readonly event?: string | undefined
  /** The `data:` text (one line). */
  readonly data: string
}

const frameOf = (recorded: RecordedEvent): Frame => ({ event: recorded.event, data: jsonText(recorded.data) })

/** OpenAI's recorded streams as frames, `[DONE]` included. */
const openAiFrames: ReadonlyArray<ReadonlyArray<Frame>> = openAiStreamBodies.map((body) =>
  body
    .split(/\r?\n\r?\n/)
    .map((frame) => frame.trim())
    .filter((frame) => frame.startsWith("data:"))
    .map((frame) => ({ data: frame.slice("data:".length).trim() }))
)
const anthropicFrames: ReadonlyArray<ReadonlyArray<Frame>> = anthropicStreams.map((events) => events.map(frameOf))
const geminiFrames: ReadonlyArray<ReadonlyArray<Frame>> = geminiStreams.map((frames) => frames.map((data) => ({ data: jsonText(data) })))

const anthropicEventNames = [
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "ping",
  "error",
  "message"
]

/** An error an upstream may put inside a 200 stream, in its dialect. */
const inStreamError = (dialect: DialectName): fc.Arbitrary<Frame> => {
  switch (dialect) {
    case "openai":
      return mutatedJson({ error: { message: "overloaded", type: "server_error", param: null, code: "503" } }, 2).map((data) => ({ data: jsonText(data) }))
    case "anthropic":
      return mutatedJson({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, 2).map((data) => ({ event: "error", data: jsonText(data) }))
    case "gemini":
      return mutatedJson({ error: { code: 429, message: "Resource exhausted", status: "RESOURCE_EXHAUSTED" } }, 2).map((data) => ({ data: jsonText(data) }))
  }
}

/** One edit of a recorded stream's frames. */
type FrameEdit =
  /** Rewrites the frame's JSON with `mutatedJson` (drawn below, since it depends on the frame). */
  | { readonly kind: "mutate"; readonly at: number }
  | { readonly kind: "rename"; readonly at: number; readonly event: string }
  | { readonly kind: "remove"; readonly at: number }
  | { readonly kind: "repeat"; readonly at: number }
  | { readonly kind: "insert"; readonly at: number; readonly frame: Frame }

const frameEdit = (dialect: DialectName): fc.Arbitrary<FrameEdit> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("mutate" as const), at: fc.nat() }) },
    { weight: dialect === "anthropic" ? 1 : 0, arbitrary: fc.record({ kind: fc.constant("rename" as const), at: fc.nat(), event: fc.oneof(fc.constantFrom(...anthropicEventNames), nastyString) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), at: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("repeat" as const), at: fc.nat() }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("insert" as const),
        at: fc.nat(),
        frame: fc.oneof(
          inStreamError(dialect),
          weirdValue.map((value): Frame => ({ data: jsonText(value) })),
          nastyString.map((text): Frame => ({ data: text.replace(/[\r\n]/g, " ") })),
          fc.constant<Frame>({ data: "[DONE]" })
        )
      })
    }
  )

/** A recorded stream with frame edits; each "mutate" edit rewrites one frame's JSON with `mutatedJson`. */
const editedFrames = (streams: ReadonlyArray<ReadonlyArray<Frame>>, dialect: DialectName): fc.Arbitrary<ReadonlyArray<Frame>> =>
  fc
    .tuple(fc.constantFrom(...streams), fc.array(frameEdit(dialect), { maxLength: 4 }))
    .chain(([frames, edits]) => {
      const mutateAt = edits.flatMap((edit) => (edit.kind === "mutate" ? [edit.at % Math.max(1, frames.length)] : []))
      const mutations = mutateAt.map((at) => {
        const frame = frames[at]
        if (frame === undefined) return fc.constant(undefined)
        let parsed: unknown
        try {
          parsed = JSON.parse(frame.data)
        } catch {
          return fc.constant(undefined)
        }
        return mutatedJson(parsed).map((data) => ({ at, data: jsonText(data) }))
      })
      return fc.tuple(fc.constant(frames), fc.constant(edits), fc.tuple(...mutations))
    })
    .map(([frames, edits, mutations]) => {
      const out = [...frames]
      for (const mutation of mutations) if (mutation !== undefined && out[mutation.at] !== undefined) out[mutation.at] = { ...out[mutation.at]!, data: mutation.data }
      for (const edit of edits) {
        const at = edit.at % Math.max(1, out.length)
        switch (edit.kind) {
          case "rename":
            if (out[at] !== undefined) out[at] = { ...out[at]!, event: edit.event.replace(/[\r\n]/g, " ") }
            break
          case "remove":
            out.splice(at, 1)
            break
          case "repeat":
            if (out[at] !== undefined) out.splice(at, 0, out[at]!)
            break
          case "insert":
            out.splice(at, 0, edit.frame)
            break
          case "mutate":
            break
        }
      }
      return out.slice(0, 200)
    })

type LineEnding = "\n" | "\r\n" | "\r"

/** Frames as event-stream text with the given line ending. */
const sseText = (frames: ReadonlyArray<Frame>, end: LineEnding): string =>
  frames.map((frame) => `${frame.event === undefined ? "" : `event: ${frame.event}${end}`}data: ${frame.data}${end}${end}`).join("")

/** Byte-level damage: a truncation, garbage bytes somewhere. */
interface Damage {
  readonly truncateAt: number | null
  readonly garbage: { readonly at: number; readonly bytes: Uint8Array } | null
}

/** Each kind of damage in about one body of six: most bodies reach the dialect's decoding whole. */
const sometimes = <A>(arbitrary: fc.Arbitrary<A>): fc.Arbitrary<A | null> =>
  fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary })

const damage: fc.Arbitrary<Damage> = fc.record({
  truncateAt: sometimes(fc.nat()),
  garbage: sometimes(fc.record({ at: fc.nat(), bytes: invalidUtf8 }))
})

const damaged = (bytes: Uint8Array, { garbage, truncateAt }: Damage): Uint8Array => {
  let out = Buffer.from(bytes)
  if (garbage !== null) {
    const at = out.length === 0 ? 0 : garbage.at % out.length
    out = Buffer.concat([out.subarray(0, at), garbage.bytes, out.subarray(at)])
  }
  if (truncateAt !== null && out.length > 0) out = out.subarray(0, truncateAt % out.length)
  return out
}

/** How the upstream labels and encodes its answer. */
interface Framing {
  readonly status: number
  readonly contentType: string | null
  readonly encoding: "none" | "gzip" | "gzip-label-only" | "br-label-only"
  readonly then: "end" | "destroy"
}

/**
 * Media types an upstream may label its answer with. `unexpected` adds the ones no dialect reads (an HTML error
 * page, octet-stream), which each provider must refuse without leaving an error nobody listens to.
 */
const mediaTypes = (mainType: string, unexpected: boolean): ReadonlyArray<string | null> => [
  `${mainType}; charset=utf-8`,
  null,
  "application/json",
  "text/event-stream",
  "TEXT/EVENT-STREAM",
  ...(unexpected ? ["text/html", "application/octet-stream", "text/plain; charset=utf-8"] : [])
]

const framing = (mainType: string, unexpected: boolean): fc.Arbitrary<Framing> =>
  fc.record({
    status: fc.oneof({ weight: 12, arbitrary: fc.constant(200) }, { weight: 2, arbitrary: fc.constantFrom(201, 299, 400, 401, 404, 408, 413, 422, 429, 500, 502, 503, 529, 302, 418) }),
    contentType: fc.oneof(
      { weight: 10, arbitrary: fc.constant(mainType) },
      { weight: 3, arbitrary: fc.constantFrom(...mediaTypes(mainType, unexpected)) }
    ),
    encoding: fc.oneof({ weight: 12, arbitrary: fc.constant("none" as const) }, { weight: 1, arbitrary: fc.constantFrom("gzip" as const, "gzip-label-only" as const, "br-label-only" as const) }),
    then: fc.oneof({ weight: 5, arbitrary: fc.constant("end" as const) }, { weight: 1, arbitrary: fc.constant("destroy" as const) })
  })

/** The whole reply: body bytes encoded and cut into pieces as the framing says. */
const replyOf = (body: Uint8Array, how: Framing, cuts: ReadonlyArray<number>): ByteReply => {
  const encoded = how.encoding === "gzip" ? gzipSync(body) : body
  const headers: Record<string, string> = {}
  if (how.contentType !== null) headers["content-type"] = how.contentType
  if (how.encoding === "gzip" || how.encoding === "gzip-label-only") headers["content-encoding"] = "gzip"
  if (how.encoding === "br-label-only") headers["content-encoding"] = "br"
  return { status: how.status, headers, pieces: cutAt(Buffer.from(encoded), cuts), then: how.then }
}

/** A reply whose body is `bodies`, damaged, framed and cut. */
const replies = (
  bodies: fc.Arbitrary<Uint8Array>,
  mainType: string,
  unexpected: boolean
): fc.Arbitrary<{ readonly reply: ByteReply; readonly summary: string }> =>
  fc.tuple(bodies, damage, framing(mainType, unexpected)).chain(([body, harm, how]) => {
    const bytes = damaged(body, harm)
    const size = how.encoding === "gzip" ? gzipSync(bytes).length : bytes.length
    return cutsOf(size).map((cuts) => {
      const summary = `${how.status} ${how.contentType} ${how.encoding} ${how.then}, cuts ${JSON.stringify(cuts)}, body ${preview(Buffer.from(bytes).toString("utf8"), 3000)}`
      // fast-check prints a counterexample with this instead of every byte
      return { reply: replyOf(bytes, how, cuts), summary, [fc.toStringMethod]: () => summary }
    })
  })

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

const lineEnding: fc.Arbitrary<LineEnding> = fc.constantFrom("\n", "\r\n", "\r")

/** Stream bodies of a dialect: its recorded streams edited, as SSE; sometimes whole garbage. */
const streamBodies = (dialect: DialectName): fc.Arbitrary<Uint8Array> => {
  const frames = dialect === "openai" ? openAiFrames : dialect === "anthropic" ? anthropicFrames : geminiFrames
  return fc.oneof(
    { weight: 10, arbitrary: fc.tuple(editedFrames(frames, dialect), lineEnding).map(([edited, end]) => utf8(sseText(edited, end))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: weirdValue.map((value) => utf8(jsonText(value))) }
  )
}

/** JSON bodies of a dialect's non-streamed answer (also what an upstream that ignores `stream: true` sends). */
const jsonBodies = (dialect: DialectName): fc.Arbitrary<Uint8Array> => {
  const base =
    dialect === "openai"
      ? fc.constantFrom(...openAiCompletions)
      : dialect === "anthropic"
        ? fc.constant(anthropicMessage)
        : fc.oneof(fc.constantFrom(...geminiResponses), fc.constantFrom(...geminiStreams))
  return fc.oneof(
    { weight: 8, arbitrary: base.chain((body) => mutatedJson(body)).map((body) => utf8(jsonText(body))) },
    { weight: 1, arbitrary: base.map((body) => utf8(jsonText(body))) },
    { weight: 1, arbitrary: weirdValue.map((value) => utf8(jsonText(value))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) }
  )
}

// ---------------------------------------------------------------------------------------------------------------
// Providers

interface DialectCase {
  readonly name: DialectName
  readonly make: (target: UpstreamTarget) => Effect.Effect<Provider, never, UpstreamTransport>
  readonly baseUrl: (origin: string) => string
  /**
   * Whether 200 answers in a media type the dialect does not read are fuzzed. Not for OpenAI-compatible yet: its
   * provider destroys such a body with no error listener, and the AbortError that follows is an uncaught
   * exception (reported, to be fixed in src/Providers/OpenAiCompatible/Provider.ts; then turn this on).
   */
  readonly unexpectedMedia: boolean
}

const dialects: ReadonlyArray<DialectCase> = [
  { name: "openai", make: OpenAiProvider.make, baseUrl: (origin) => `${origin}/v1`, unexpectedMedia: true },
  { name: "anthropic", make: (target) => AnthropicProvider.make(target), baseUrl: (origin) => origin, unexpectedMedia: true },
  { name: "gemini", make: GeminiProvider.make, baseUrl: (origin) => origin, unexpectedMedia: true }
]

const baseRequest: ChatCompletionRequest = { model: "fuzz-model", messages: [{ role: "user", content: "Hello" }] }

/** Requests that change how an answer is read: Anthropic's response-format tool among them. */
const requests: fc.Arbitrary<ChatCompletionRequest> = fc.constantFrom<ChatCompletionRequest>(
  baseRequest,
  { ...baseRequest, n: 2 },
  {
    ...baseRequest,
    response_format: { type: "json_schema", json_schema: { name: "get_weather", schema: { type: "object" } } }
  },
  {
    ...baseRequest,
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }]
  }
)

/** Guards against a provider that never ends (a hang is a failure, not a slow test): no timing is asserted. */
const hangGuard = <A, E>(effect: Effect.Effect<A, E>, what: string) =>
  Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => new Error(`${what} never ended`) })

/** A failure must be one ProviderError that the error table answers with a 4xx or 5xx envelope; never a defect. */
const expectProviderFailure = (cause: Cause.Cause<unknown>, context: string): ProviderError => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure) || !(failure.value instanceof ProviderError)) {
    throw new Error(`not a ProviderError but ${Cause.pretty(cause)}\n${context}`)
  }
  const described = describeError(failure.value)
  expect(described.status).toBeGreaterThanOrEqual(400)
  expect(described.status).toBeLessThan(600)
  expectEnvelope(JSON.stringify(described.body))
  return failure.value
}

/** Every chunk of a stream that ended well is valid against OpenAI's schema, with sane usage. */
const expectStreamOutcome = (exit: Exit.Exit<ReadonlyArray<ChatCompletionChunk>, unknown>, context: string): void => {
  if (Exit.isFailure(exit)) {
    expectProviderFailure(exit.cause, context)
    return
  }
  for (const chunk of exit.value) {
    try {
      expectClientChunk(chunk)
    } catch (error) {
      throw new Error(`${String(error)}\n${context}`)
    }
  }
}

/**
 * Records uncaught exceptions and unhandled rejections while a property runs: `settled()`, awaited at the end of
 * each run, lets pending callbacks fire and fails that run (so fast-check shrinks it) if anything escaped.
 */
const uncaught = (() => {
  const seen: Array<unknown> = []
  const record = (error: unknown) => seen.push(error)
  return {
    watch: Effect.acquireRelease(
      Effect.sync(() => {
        seen.length = 0
        process.on("uncaughtException", record)
        process.on("unhandledRejection", record)
      }),
      () =>
        Effect.sync(() => {
          process.off("uncaughtException", record)
          process.off("unhandledRejection", record)
        })
    ),
    settled: async (context: string): Promise<void> => {
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve))
      if (seen.length > 0) {
        const errors = seen.splice(0).map((error) => (error instanceof Error ? error.stack ?? String(error) : String(error)))
        throw new Error(`uncaught: ${errors.join("\n")}\n${context}`)
      }
    }
  }
})()

const collect = (provider: Provider, request: ChatCompletionRequest) =>
  Effect.exit(hangGuard(Stream.runCollect(streamOf(provider, request)).pipe(Effect.map((chunks) => [...chunks])), "a stream"))

const providerOf = (dialect: DialectCase, upstream: ByteUpstream) =>
  dialect.make({ baseUrl: dialect.baseUrl(upstream.origin), apiKey: Redacted.make("upstream-key"), headers: {} })

/** Chunks with what each call invents (ids, clocks) blanked: equal for equal upstream bytes. */
const normalized = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.map((chunk) => ({
    ...chunk,
    id: "",
    created: 0,
    choices: chunk.choices.map((choice) => ({
      ...choice,
      delta: {
        ...choice.delta,
        ...(choice.delta.tool_calls === undefined ? {} : { tool_calls: choice.delta.tool_calls.map((call) => ({ ...call, id: call.id === undefined ? undefined : "" })) })
      }
    }))
  }))

const failureKey = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) && failure.value instanceof ProviderError ? `${failure.value.reason}: ${failure.value.message}` : Cause.pretty(exit.cause)
}

for (const dialect of dialects) {
  describe(`${dialect.name} provider against hostile upstream bytes`, () => {
    it.scopedLive("a stream ends with spec-valid chunks or one ProviderError, never a defect, whatever the upstream writes", () =>
      Effect.gen(function* () {
          yield* uncaught.watch
          const upstream = yield* startByteUpstream
          const provider = yield* providerOf(dialect, upstream)
          const runtime = yield* Effect.runtime<never>()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(replies(streamBodies(dialect.name), "text/event-stream", dialect.unexpectedMedia), requests, async ({ reply, summary }, request) => {
                upstream.reply(reply)
                const exit = await Runtime.runPromise(runtime)(collect(provider, request))
                expectStreamOutcome(exit, summary)
                await uncaught.settled(summary)
              }),
              { numRuns: fuzzRuns }
            )
          )
        }).pipe(Effect.provide(Transport.layer())))

    it.scopedLive("a stream request answered with a JSON body (mutated) streams spec-valid chunks or fails cleanly", () =>
      Effect.gen(function* () {
          yield* uncaught.watch
          const upstream = yield* startByteUpstream
          const provider = yield* providerOf(dialect, upstream)
          const runtime = yield* Effect.runtime<never>()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(replies(jsonBodies(dialect.name), "application/json", dialect.unexpectedMedia), requests, async ({ reply, summary }, request) => {
                upstream.reply(reply)
                const exit = await Runtime.runPromise(runtime)(collect(provider, request))
                expectStreamOutcome(exit, summary)
                await uncaught.settled(summary)
              }),
              { numRuns: runsOf(0.5) }
            )
          )
        }).pipe(Effect.provide(Transport.layer())))

    // A completion reads its whole body whatever its label: every media type is fuzzed here.
    it.scopedLive("a completion is spec-valid with sane usage, or one ProviderError, whatever the upstream answers", () =>
      Effect.gen(function* () {
          yield* uncaught.watch
          const upstream = yield* startByteUpstream
          const provider = yield* providerOf(dialect, upstream)
          const runtime = yield* Effect.runtime<never>()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(replies(jsonBodies(dialect.name), "application/json", true), requests, async ({ reply, summary }, request) => {
                upstream.reply(reply)
                const exit = await Runtime.runPromise(runtime)(Effect.exit(hangGuard(provider.complete(request), "a completion")))
                await uncaught.settled(summary)
                if (Exit.isFailure(exit)) {
                  expectProviderFailure(exit.cause, summary)
                  return
                }
                try {
                  expectClientCompletion(exit.value)
                } catch (error) {
                  throw new Error(`${String(error)}\n${summary}`)
                }
              }),
              { numRuns: fuzzRuns }
            )
          )
        }).pipe(Effect.provide(Transport.layer())))

    if (dialect.unexpectedMedia) {
      it.scopedLive("a 200 in a media type the dialect does not read is MalformedResponse, and nothing escapes", () =>
        Effect.gen(function* () {
          yield* uncaught.watch
          const upstream = yield* startByteUpstream
          const provider = yield* providerOf(dialect, upstream)
          const runtime = yield* Effect.runtime<never>()
          yield* Effect.promise(() =>
            fc.assert(
              fc.asyncProperty(
                fc.constantFrom("text/html", "application/octet-stream", "text/plain", "application/xml"),
                fc.uint8Array({ maxLength: 2048 }),
                async (contentType, body) => {
                  upstream.reply({ status: 200, headers: { "content-type": contentType }, pieces: [body], then: "end" })
                  const exit = await Runtime.runPromise(runtime)(collect(provider, baseRequest))
                  const context = `${contentType}, ${body.length} bytes`
                  expect(expectProviderFailure(Exit.isFailure(exit) ? exit.cause : Cause.empty, context).reason).toBe("MalformedResponse")
                  await uncaught.settled(context)
                }
              ),
              { numRuns: runsOf(0.2) }
            )
          )
        }).pipe(Effect.provide(Transport.layer())))
    }

    it.scopedLive("the same bytes give the same answer however they are cut (inside UTF-8 characters and CRLFs too)", () =>
      Effect.gen(function* () {
        const upstream = yield* startByteUpstream
        const provider = yield* providerOf(dialect, upstream)
        const runtime = yield* Effect.runtime<never>()
        const bodies = fc.tuple(streamBodies(dialect.name), fc.boolean()).map(([body, multibyte]) =>
          // Multi-byte characters everywhere a cut may fall: every "e" of the text becomes a 2-byte "é", every "o" a 4-byte emoji.
          multibyte ? utf8(Buffer.from(body).toString("utf8").replace(/e/g, "é").replace(/o/g, "😀")) : body
        )
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              bodies.chain((body) =>
                fc.tuple(
                  fc.constant(Object.assign(body, { [fc.toStringMethod]: () => preview(Buffer.from(body).toString("utf8"), 3000) })),
                  cutsOf(body.length),
                  fc.integer({ min: 1, max: 7 })
                )
              ),
              async ([body, cuts, tiny]) => {
                const run = (pieces: ReadonlyArray<Uint8Array>) => {
                  upstream.reply({ status: 200, headers: { "content-type": "text/event-stream" }, pieces, then: "end" })
                  return Runtime.runPromise(runtime)(collect(provider, baseRequest))
                }
                const whole = await run([body])
                const split = await run(cutAt(Buffer.from(body), cuts))
                // the first 600 bytes in crumbs of `tiny` bytes, the rest whole
                const crumbed = Math.min(body.length, 600)
                const pieces: Array<Uint8Array> = []
                for (let start = 0; start < crumbed; start += tiny) pieces.push(body.subarray(start, Math.min(start + tiny, crumbed)))
                if (body.length > crumbed) pieces.push(body.subarray(crumbed))
                const crumbs = await run(pieces)
                for (const other of [split, crumbs]) {
                  expect(failureKey(other)).toBe(failureKey(whole))
                  if (Exit.isSuccess(whole) && Exit.isSuccess(other)) expect(normalized(other.value)).toEqual(normalized(whole.value))
                }
              }
            ),
            { numRuns: runsOf(0.3) }
          )
        )
      }).pipe(Effect.provide(Transport.layer())))
  })
}

describe("recorded upstream streams, cut anywhere", () => {
  it.scopedLive("every recorded stream of every dialect streams spec-valid chunks to its end, whatever the cuts", () =>
    Effect.gen(function* () {
      const upstream = yield* startByteUpstream
      const runtime = yield* Effect.runtime<never>()
      const cases = [
        ...openAiFrames.map((frames) => ({ dialect: dialects[0]!, frames })),
        ...anthropicFrames.slice(0, 2).map((frames) => ({ dialect: dialects[1]!, frames })),
        ...geminiFrames.map((frames) => ({ dialect: dialects[2]!, frames }))
      ]
      const providers = yield* Effect.forEach(dialects, (dialect) => providerOf(dialect, upstream))
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...cases).chain((entry) =>
              lineEnding.chain((end) => {
                const body = utf8(sseText(entry.frames, end))
                return fc.tuple(fc.constant(entry), fc.constant(body), cutsOf(body.length))
              })
            ),
            async ([entry, body, cuts]) => {
              upstream.reply({ status: 200, headers: { "content-type": "text/event-stream" }, pieces: cutAt(Buffer.from(body), cuts), then: "end" })
              const provider = providers[dialects.indexOf(entry.dialect)]!
              const exit = await Runtime.runPromise(runtime)(collect(provider, baseRequest))
              if (Exit.isFailure(exit)) throw new Error(`a recorded ${entry.dialect} stream failed: ${Cause.pretty(exit.cause)}`)
              expect(exit.value.length).toBeGreaterThan(0)
              for (const chunk of exit.value) expectClientChunk(chunk)
              expect(exit.value.some((chunk) => chunk.choices.some((choice) => choice.finish_reason !== null))).toBe(true)
            }
          ),
          { numRuns: runsOf(0.5) }
        )
      )
    }).pipe(Effect.provide(Transport.layer())))
})

// ---------------------------------------------------------------------------------------------------------------
// The whole gateway

/** The frames of an SSE body as the gateway writes them: `data: <one line>` and a blank line each, nothing else. */
const framesOfBody = (body: string): ReadonlyArray<string> => {
  expect(body).toMatch(/^(data: [^\r\n]*\n\n)*$/)
  return body
    .split("\n\n")
    .filter((frame) => frame.length > 0)
    .map((frame) => frame.slice("data: ".length))
}

describe("the whole gateway in front of hostile upstreams", () => {
  it.scopedLive("answers a spec-valid completion or stream ending in [DONE], an error frame, or a 4xx/5xx envelope; never a 500; and stays up", () =>
      Effect.gen(function* () {
        yield* uncaught.watch
        const upstream = yield* startByteUpstream
        const registry = registryFromDocument({
          models: dialects.map((dialect) => ({ name: `fuzz-${dialect.name}`, provider: dialect.name, model: "fuzz-upstream", base_url: dialect.baseUrl(upstream.origin) })),
          settings: { retry: { max_retries: 0, initial_delay_ms: 0, max_delay_ms: 0 }, cooldown: { failures: 0, duration_ms: 0 } }
        })
        const gateway = yield* startGateway({ registry })
        const cases = fc.constantFrom(...dialects).chain((dialect) =>
          fc.tuple(
            fc.constant(dialect),
            fc.boolean().chain((stream) =>
              fc.tuple(
                fc.constant(stream),
                fc.boolean(),
                stream
                  ? fc.oneof({ weight: 4, arbitrary: replies(streamBodies(dialect.name), "text/event-stream", dialect.unexpectedMedia) }, { weight: 1, arbitrary: replies(jsonBodies(dialect.name), "application/json", dialect.unexpectedMedia) })
                  : replies(jsonBodies(dialect.name), "application/json", true)
              )
            )
          )
        )
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(cases, async ([dialect, [stream, includeUsage, { reply, summary }]]) => {
              upstream.reply(reply)
              const response = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
                method: "POST",
                headers: { ...gateway.auth, "content-type": "application/json" },
                body: JSON.stringify({ model: `fuzz-${dialect.name}`, messages: [{ role: "user", content: "Hi" }], stream, stream_options: stream ? { include_usage: includeUsage } : undefined })
              })
              const text = await response.text()
              const context = `${dialect.name} stream=${stream}: the gateway answered ${response.status} ${preview(text)}\nupstream: ${summary}`
              await uncaught.settled(context)
              try {
                expect(response.headers.get("x-request-id")).toBeTruthy()
                if (response.status !== 200) {
                  expect(response.status).toBeGreaterThanOrEqual(400)
                  expect(response.status).toBeLessThan(600)
                  expect(response.headers.get("content-type")).toContain("application/json")
                  const error = expectEnvelope(text)
                  expect(response.status).not.toBe(500)
                  expect(error.code).not.toBe("internal_error")
                  return
                }
                if (!stream) {
                  expect(response.headers.get("content-type")).toContain("application/json")
                  expectClientCompletion(JSON.parse(text))
                  return
                }
                expect(response.headers.get("content-type")).toContain("text/event-stream")
                const frames = framesOfBody(text)
                const last = frames.at(-1)
                expect(last).toBeDefined()
                const body = frames.slice(0, -1)
                if (last !== "[DONE]") {
                  const error = expectEnvelope(last ?? "")
                  expect(error.code).not.toBe("internal_error")
                } else {
                  expect(body.length).toBeGreaterThan(0)
                }
                for (const frame of body) {
                  const chunk = JSON.parse(frame) as ChatCompletionChunk
                  expectClientChunk(chunk)
                  if (!includeUsage) expect(chunk.usage ?? null).toBeNull()
                }
              } catch (error) {
                throw new Error(`${String(error)}\n${context}`)
              }
            }),
            { numRuns: fuzzRuns }
          )
        )
        const health = yield* Effect.promise(() => fetch(`${gateway.baseUrl}/health`).then(async (response) => ({ status: response.status, body: (await response.json()) as unknown })))
        expect(health).toMatchObject({ status: 200, body: { status: "ok" } })
      }))
})
