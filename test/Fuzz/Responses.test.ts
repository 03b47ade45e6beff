/**
 * Nothing a client sends to POST /v1/responses, nor a native Responses upstream answers, takes the gateway down.
 * Clients: arbitrary bodies over real sockets, both mounts: a 200 that is a response object or an event stream (its
 * events numbered from 0, one terminal event last), or a 4xx in OpenAI's exact envelope; never a 5xx, never a dropped
 * connection. Native upstreams: arbitrary bytes from a real HTTP server to an `api: responses` deployment's calls
 * give events whose data is one line of JSON, or one ProviderError the table answers in OpenAI's envelope; never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Redacted, Runtime } from "effect"
import fc from "fast-check"
import { describeError } from "../../src/Http/Errors.js"
import * as OpenAiCompatible from "../../src/Providers/OpenAiCompatible/Provider.js"
import { ProviderError } from "../../src/Providers/ProviderError.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import { expectEveryBodyAnswered } from "../support/FuzzClient.js"
import { expectEnvelope, runsOf } from "../support/FuzzSpec.js"
import { startByteUpstream } from "../support/FuzzUpstream.js"
import { byteRepliesOf, readToEnd, sseFrame } from "../support/FuzzUpstream.js"
import { Responses } from "../support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import { expectResponseConforms, expectResponseEventConforms } from "../support/ResponsesSpec.js"

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

// ---------------------------------------------------------------------------------------------------------------
// Clients

const validRequests: ReadonlyArray<Record<string, unknown>> = [
  { model: "mock", input: "Hello gateway" },
  { model: "mock", input: "Hello gateway", stream: true, store: false, instructions: "Be brief.", metadata: { a: "b" } },
  {
    model: "mock",
    instructions: "Use tools.",
    tools: [{ type: "function", name: "t", parameters: { type: "object" }, strict: false }],
    tool_choice: "auto",
    parallel_tool_calls: true,
    reasoning: { effort: "low" },
    text: { format: { type: "json_schema", name: "x", schema: { type: "object" } } },
    max_output_tokens: 50,
    temperature: 0.5,
    top_p: 0.9,
    input: [
      { role: "user", content: [{ type: "input_text", text: "use t" }, { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" }] },
      { type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "hm" }] },
      { type: "function_call", call_id: "call_1", name: "t", arguments: "{}" },
      { type: "function_call_output", call_id: "call_1", output: "done" }
    ]
  }
]

const bodies: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...validRequests).chain((request) => mutatedJson(request)).map((body) => utf8(jsonText(body))) },
  { weight: 3, arbitrary: fc.constantFrom(...validRequests).map((body) => utf8(JSON.stringify(body))) },
  {
    weight: 2,
    arbitrary: fc
      .record(
        {
          input: fc.oneof(
            nastyString,
            fc.array(
              fc.record({
                type: fc.constantFrom("message", "function_call", "function_call_output", "reasoning", "item_reference", "web_search_call"),
                role: fc.constantFrom("user", "assistant", "system", "developer", "tool"),
                content: fc.oneof(nastyString, fc.array(fc.record({ type: fc.constantFrom("input_text", "input_image", "input_file", "output_text", "refusal", "input_audio"), text: nastyString }), { maxLength: 3 })),
                call_id: nastyString,
                output: nastyString
              }, { requiredKeys: ["type"] }),
              { maxLength: 4 }
            )
          ),
          tools: fc.array(fc.record({ type: fc.constantFrom("function", "web_search", "file_search", "mcp"), name: nastyString }), { maxLength: 2 }),
          previous_response_id: fc.oneof(nastyString, fc.constant("resp_unknown")),
          stream: fc.boolean(),
          store: fc.boolean(),
          max_output_tokens: fc.oneof(fc.integer({ min: -5, max: 100 }), nastyString)
        },
        { requiredKeys: ["input"] }
      )
      .map((fields) => utf8(jsonText({ model: "mock", ...fields })))
  },
  { weight: 1, arbitrary: fc.oneof(weirdValue, fc.jsonValue()).map((value) => utf8(jsonText(value))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

/** The events of an SSE body, parsed. */
const eventsOf = (text: string): ReadonlyArray<Record<string, unknown>> =>
  text
    .split("\n\n")
    .filter((frame) => frame.startsWith("event: "))
    .map((frame) => JSON.parse(frame.split("\n")[1]!.slice(6)) as Record<string, unknown>)

for (const mount of mounts) {
  describe(`responses client input, ${mount} mount`, () => {
    it.scopedLive("any body: a response, a well-formed event stream, or a 4xx in OpenAI's envelope; never a 5xx", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const port = Number(new URL(gateway.baseUrl).port)
        yield* Effect.promise(() =>
          expectEveryBodyAnswered(port, ["authorization", `Bearer ${testKey}`], bodies, (body) => ({ path: "/v1/responses", body }), (_, status, text) => {
            if (status !== 200) {
              expectEnvelope(text)
              return "refused"
            }
            if (text.startsWith("event:")) {
              const events = eventsOf(text)
              for (const event of events) expectResponseEventConforms(event)
              expect(events[0]!["type"]).toBe("response.created")
              expect(events.map((event) => event["sequence_number"])).toEqual(events.map((_, index) => index))
              expect(events.at(-1)!["type"]).toMatch(/^response\.(completed|incomplete)$/)
            } else {
              expectResponseConforms(JSON.parse(text))
            }
            return "served"
          })
        )
        expect((yield* Effect.promise(() => fetch(`${gateway.baseUrl}/health`))).status).toBe(200)
      }))
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Native upstreams

const recordedEvents = Responses.streamFrames(["Hi", " there"])

const streamBodies: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(utf8(recordedEvents.join(""))) },
  { weight: 1, arbitrary: fc.constant(utf8(JSON.stringify(Responses.body("Hi")))) },
  {
    weight: 6,
    arbitrary: fc
      .array(
        fc.oneof(
          fc.constantFrom(...recordedEvents),
          fc
            .tuple(
              fc.oneof(fc.constantFrom("response.created", "response.completed", "response.failed", "error", "response.output_text.delta", "message"), nastyString),
              fc.oneof(weirdValue, fc.jsonValue(), fc.record({ type: fc.constantFrom("response.completed", "error", "response.output_text.delta"), response: fc.oneof(weirdValue, fc.constant(Responses.body("x"))), delta: fc.oneof(nastyString, weirdValue) })).map(jsonText)
            )
            .map(([name, data]) => sseFrame(name, data)),
          nastyString
        ),
        { maxLength: 8 }
      )
      .map((frames) => utf8(frames.join("")))
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

const nativeReplies = byteRepliesOf(streamBodies, [400, 404, 429, 500, 503])

describe("native Responses against hostile upstream bytes", () => {
  it.scopedLive("events with one-line JSON data (terminal ones with a response object), answers that are response objects, or one ProviderError in OpenAI's envelope; never a defect", () =>
    Effect.gen(function* () {
      const upstream = yield* startByteUpstream
      const provider = yield* OpenAiCompatible.make({ baseUrl: `${upstream.origin}/v1`, apiKey: Redacted.make("upstream-key"), headers: {} }, "responses")
      const native = provider.responses!
      const runtime = yield* Effect.runtime<never>()
      const call = { body: { model: "gpt", input: "hi" } }
      /** Opens the stream and reads it to its end. */
      const readAll = readToEnd(native.open(call))
      const expectFailure = (cause: Cause.Cause<unknown>, summary: string) => {
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure) || !(failure.value instanceof ProviderError)) throw new Error(`not a ProviderError but ${Cause.pretty(cause)}\n${summary}`)
        const described = describeError(failure.value)
        expect(described.status).toBeGreaterThanOrEqual(400)
        expect(described.status).toBeLessThan(600)
        expectEnvelope(JSON.stringify(described.body))
      }
      const seen = { ok: 0, failed: 0 }
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(nativeReplies, fc.boolean(), async ({ reply, summary }, streamed) => {
            upstream.reply(reply)
            if (!streamed) {
              const exit = await Runtime.runPromise(runtime)(Effect.exit(Effect.timeout(native.create(call), "20 seconds")))
              if (Exit.isSuccess(exit)) {
                seen.ok++
                expect(typeof exit.value.response["id"]).toBe("string")
                expect(Array.isArray(exit.value.response["output"])).toBe(true)
              } else {
                seen.failed++
                expectFailure(exit.cause, summary)
              }
              return
            }
            const exit = await Runtime.runPromise(runtime)(Effect.exit(Effect.timeout(readAll, "20 seconds")))
            if (Exit.isSuccess(exit)) {
              seen.ok++
              for (const event of exit.value) {
                expect(event.type).toMatch(/^[a-z][a-z0-9_.]*$/)
                expect(event.data).not.toMatch(/[\r\n]/)
                expect(typeof JSON.parse(event.data)).toBe("object")
                if (event.response !== undefined) expect(typeof event.response["id"]).toBe("string")
              }
              return
            }
            seen.failed++
            expectFailure(exit.cause, summary)
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
