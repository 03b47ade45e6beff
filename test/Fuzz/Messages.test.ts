/**
 * Nothing a client sends to the Messages endpoints takes the gateway down, and the translation of any chat stream
 * is a well-formed Messages stream. Clients: arbitrary bodies to POST /v1/messages and /v1/messages/count_tokens
 * over real sockets, both mounts: a 200 that is a message, an event stream or a count, or a 4xx in Anthropic's exact
 * envelope; never a 5xx, never a dropped connection. Translation: arbitrary chat chunk batches (text, reasoning,
 * signed blocks, tool calls, finish reasons, usage) give `message_start` first and once, blocks opened and closed one
 * at a time with contiguous indexes, `message_delta` then `message_stop` last — or the one failure it names.
 * Native upstreams: arbitrary bytes from a real HTTP server to the Anthropic provider's native Messages calls give
 * events whose data is one line of JSON, or one ProviderError the table answers in Anthropic's envelope; never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Redacted, Runtime } from "effect"
import fc from "fast-check"
import { describeMessagesError } from "../../src/Anthropic/Errors.js"
import * as AnthropicProvider from "../../src/Providers/Anthropic/Provider.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { startByteUpstream } from "../support/FuzzUpstream.js"
import { byteRepliesOf, readToEnd, sseFrame } from "../support/FuzzUpstream.js"
import { jsonText, mutatedJson, nastyString, weirdValue } from "../support/FuzzArbitraries.js"
import { makeEventTranslator } from "../../src/Anthropic/StreamTranslate.js"
import type { ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/ProviderError.js"
import { expectEveryBodyAnswered } from "../support/FuzzClient.js"
import { expectAnthropicEnvelope, runsOf } from "../support/FuzzSpec.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

// ---------------------------------------------------------------------------------------------------------------
// Clients

const validRequests: ReadonlyArray<Record<string, unknown>> = [
  { model: "mock", max_tokens: 20, messages: [{ role: "user", content: "Hello gateway" }] },
  { model: "mock", max_tokens: 20, stream: true, system: [{ type: "text", text: "sys", cache_control: { type: "ephemeral" } }], messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] },
  {
    model: "mock",
    max_tokens: 50,
    tools: [{ name: "t", input_schema: { type: "object" } }],
    tool_choice: { type: "auto" },
    thinking: { type: "enabled", budget_tokens: 2048 },
    messages: [
      { role: "user", content: "use t" },
      { role: "assistant", content: [{ type: "thinking", thinking: "x", signature: "s" }, { type: "tool_use", id: "toolu_1", name: "t", input: { a: 1 } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "done", is_error: false }, { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] }
    ],
    stop_sequences: ["END"],
    temperature: 0.5,
    top_k: 5,
    metadata: { user_id: "u" }
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
          max_tokens: fc.oneof(fc.integer({ min: -5, max: 100 }), nastyString),
          messages: fc.array(fc.record({ role: fc.constantFrom("user", "assistant", "system", "tool"), content: fc.oneof(nastyString, fc.array(fc.record({ type: fc.constantFrom("text", "image", "tool_use", "tool_result", "thinking", "server_tool_use", "document"), text: nastyString }), { maxLength: 3 })) }), { maxLength: 4 }),
          stream: fc.boolean(),
          thinking: fc.oneof(fc.constant({ type: "enabled" }), fc.record({ type: fc.constantFrom("enabled", "disabled", "adaptive"), budget_tokens: fc.integer() }))
        },
        { requiredKeys: ["messages"] }
      )
      .map((fields) => utf8(jsonText({ model: "mock", ...fields })))
  },
  { weight: 1, arbitrary: fc.oneof(weirdValue, fc.jsonValue()).map((value) => utf8(jsonText(value))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

for (const mount of mounts) {
  describe(`messages client input, ${mount} mount`, () => {
    it.scopedLive("any body: a message, an event stream, a count, or a 4xx in Anthropic's envelope; never a 5xx", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const port = Number(new URL(gateway.baseUrl).port)
        yield* Effect.promise(() =>
          expectEveryBodyAnswered(
            port,
            ["x-api-key", testKey],
            fc.tuple(bodies, fc.boolean()),
            ([body, count]) => ({ path: count ? "/v1/messages/count_tokens" : "/v1/messages", body }),
            ([, count], status, text) => {
              if (status !== 200) {
                expectAnthropicEnvelope(text)
                return "refused"
              }
              if (count) expect(Number.isSafeInteger((JSON.parse(text) as { input_tokens: unknown }).input_tokens)).toBe(true)
              else if (text.startsWith("event:")) {
                expect(text).toContain("event: message_start")
                expect(text.trimEnd().endsWith('data: {"type":"message_stop"}')).toBe(true)
              } else expect((JSON.parse(text) as { type: unknown }).type).toBe("message")
              return "served"
            }
          )
        )
        expect((yield* Effect.promise(() => fetch(`${gateway.baseUrl}/health`))).status).toBe(200)
      }))
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Translation

const base = { id: "c", object: "chat.completion.chunk" as const, created: 1, model: "m" }

const delta: fc.Arbitrary<ChatCompletionChunk["choices"][number]["delta"]> = fc.oneof(
  fc.record({ content: fc.oneof(fc.string(), nastyString) }),
  fc.record({ reasoning_content: fc.string() }),
  fc.record({ refusal: fc.string() }),
  fc.record({ thinking_blocks: fc.array(fc.oneof(fc.record({ type: fc.constant("thinking" as const), thinking: fc.string(), signature: fc.string() }), fc.record({ type: fc.constant("redacted_thinking" as const), data: fc.string() })), { maxLength: 2 }) }),
  fc.record(
    {
      tool_calls: fc.array(
        fc.record(
          { index: fc.integer({ min: 0, max: 3 }), id: fc.string({ minLength: 1 }), function: fc.record({ name: fc.string(), arguments: fc.string() }, { requiredKeys: [] }) },
          { requiredKeys: ["index"] }
        ),
        { maxLength: 2 }
      )
    }
  ),
  fc.constant({})
)

const chunk: fc.Arbitrary<ChatCompletionChunk> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({ delta, finish: fc.option(fc.constantFrom("stop", "length", "tool_calls", "content_filter") as fc.Arbitrary<"stop">, { nil: null }) }).map(({ delta, finish }) => ({
      ...base,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }]
    }))
  },
  { weight: 1, arbitrary: fc.record({ prompt_tokens: fc.nat(), completion_tokens: fc.nat() }).map((usage) => ({ ...base, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } })) }
)

describe("chat chunks → Messages events", () => {
  it("any chunk stream translates to a well-formed Messages stream, or fails with one MalformedResponse", () =>
    fc.assert(
      fc.property(fc.array(fc.array(chunk, { maxLength: 4 }), { maxLength: 8 }), (batches) => {
        const translator = makeEventTranslator({ id: "msg_x", model: "public", stopSequences: ["END"] })
        const events: Array<{ event: string; data: Record<string, unknown> }> = []
        for (const batch of batches) {
          const out = translator.step(batch)
          if (out instanceof ProviderError) {
            expect(out.reason).toBe("MalformedResponse")
            return
          }
          for (const event of out) events.push({ event: event.event, data: JSON.parse(event.data) as Record<string, unknown> })
        }
        for (const event of translator.finish()) events.push({ event: event.event, data: JSON.parse(event.data) as Record<string, unknown> })
        const names = events.map((event) => event.event)
        expect(names[0]).toBe("message_start")
        expect(names.filter((name) => name === "message_start")).toHaveLength(1)
        expect(names.slice(-2)).toEqual(["message_delta", "message_stop"])
        let open: number | undefined
        let next = 0
        let kind: string | undefined
        for (const { data, event } of events) {
          expect(data["type"]).toBe(event)
          if (event === "content_block_start") {
            expect(open).toBeUndefined()
            expect(data["index"]).toBe(next)
            kind = (data["content_block"] as { type: string }).type
            open = next++
          } else if (event === "content_block_delta") {
            expect(data["index"]).toBe(open)
            const type = (data["delta"] as { type: string }).type
            // never a thinking delta inside a text block, nor text inside thinking
            const allowed: Record<string, ReadonlyArray<string>> = {
              text: ["text_delta"],
              thinking: ["thinking_delta", "signature_delta"],
              tool_use: ["input_json_delta"]
            }
            expect(allowed[kind ?? ""] ?? []).toContain(type)
          } else if (event === "content_block_stop") {
            expect(data["index"]).toBe(open)
            open = undefined
          }
        }
        expect(open).toBeUndefined()
        const stop = (events.at(-2)!.data["delta"] as { stop_reason: string }).stop_reason
        expect(["end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence"]).toContain(stop)
      }),
      { numRuns: runsOf(10) }
    ))
})

// ---------------------------------------------------------------------------------------------------------------
// Native upstreams

const recordedEvents = [
  `event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"c","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n`,
  `event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n`,
  `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n`,
  `event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n`,
  `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}\n\n`,
  `event: message_stop\ndata: {"type":"message_stop"}\n\n`
]

const streamBodies: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(utf8(recordedEvents.join(""))) },
  {
    weight: 6,
    arbitrary: fc
      .array(
        fc.oneof(
          fc.constantFrom(...recordedEvents),
          fc.tuple(fc.oneof(fc.constantFrom("message_start", "message_delta", "error", "ping", "message"), nastyString), fc.oneof(weirdValue, fc.jsonValue()).map(jsonText)).map(([name, data]) => sseFrame(name, data)),
          nastyString
        ),
        { maxLength: 8 }
      )
      .map((frames) => utf8(frames.join("")))
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

const nativeReplies = byteRepliesOf(streamBodies, [400, 413, 429, 500, 529])

describe("native Messages against hostile upstream bytes", () => {
  it.scopedLive("events with one-line JSON data, or one ProviderError in Anthropic's envelope; never a defect", () =>
    Effect.gen(function* () {
      const upstream = yield* startByteUpstream
      const provider = yield* AnthropicProvider.make({ baseUrl: upstream.origin, apiKey: Redacted.make("upstream-key"), headers: {} })
      const native = provider.messages!
      const runtime = yield* Effect.runtime<never>()
      const call = { body: { model: "c", max_tokens: 5, stream: true, messages: [{ role: "user", content: "hi" }] }, headers: { version: undefined, beta: undefined } }
      /** Opens the stream and reads it to its end. */
      const readAll = readToEnd(native.open(call))
      const seen = { ok: 0, failed: 0 }
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(nativeReplies, async ({ reply, summary }) => {
            upstream.reply(reply)
            const exit = await Runtime.runPromise(runtime)(Effect.exit(Effect.timeout(readAll, "20 seconds")))
            if (Exit.isSuccess(exit)) {
              seen.ok++
              for (const event of exit.value) {
                expect(event.event).toMatch(/^[a-z][a-z_]*$/)
                expect(event.data).not.toMatch(/[\r\n]/)
                expect(typeof JSON.parse(event.data)).toBe("object")
              }
              return
            }
            seen.failed++
            const failure = Cause.failureOption(exit.cause)
            if (Option.isNone(failure) || !(failure.value instanceof ProviderError)) throw new Error(`not a ProviderError but ${Cause.pretty(exit.cause)}\n${summary}`)
            const described = describeMessagesError(failure.value)
            expect(described.status).toBeGreaterThanOrEqual(400)
            expect(described.status).toBeLessThan(600)
            expectAnthropicEnvelope(JSON.stringify(described.body))
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
