/**
 * Conformance with OpenAI's own published contract: the gateway's real responses are validated against the
 * schemas of openai/openai-openapi, and bodies recorded from the real API (openai-node's snapshots) are decoded
 * with the gateway's schemas.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"
import { readFileSync } from "node:fs"
import { ChatCompletion, ChatCompletionChunk } from "../../src/OpenAi/Schemas.js"
import * as Mock from "../../src/Providers/Mock/Provider.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import { conforms, expectConforms, specDocument, toJsonSchema } from "../support/Spec.js"
import { startGateway } from "../support/Gateway.js"
import { call, get, postChat, postRaw } from "../support/Http.js"
import { ssePayloads } from "../support/Sse.js"

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/openai/${name}`, import.meta.url), "utf8")

// ---------------------------------------------------------------------------------------------------------------
// OpenAPI 3.0-style schema → JSON Schema 2020-12



// ---------------------------------------------------------------------------------------------------------------
// Jest snapshots of openai-node → raw bodies

interface Recording {
  readonly name: string
  readonly body: string
}

/** Every `exports[...] = \`...\`` entry, with the template-literal quoting undone. */
const recordings = (file: string): ReadonlyArray<Recording> => {
  const text = fixture(`openai-node-jest-snapshots/${file}`)
  const entries = [...text.matchAll(/^exports\[`(.+?)`\] = `\n"([\s\S]*?)"\n`;$/gm)]
  return entries.map((match) => ({
    name: match[1] ?? "",
    body: (match[2] ?? "").replace(/\\\\/g, "\\").replace(/\\`/g, "`")
  }))
}

const streamRecordings = recordings("ChatCompletionStream.test.ts.snap")
const completionRecordings = recordings("parser.test.ts.snap")

/** The JSON payloads of an SSE body (its chunks, and an error frame if it ended with one): `[DONE]` left out. */
const jsonPayloads = (body: string): ReadonlyArray<unknown> => ssePayloads(body).filter((payload) => payload !== "[DONE]")

// ---------------------------------------------------------------------------------------------------------------
// the gateway

const mock = Mock.streamProvider({ tokenDelayMs: 0 })
const failing = (error: ProviderError): StreamProvider => ({ complete: () => Effect.fail(error), stream: () => Stream.fail(error) })

const registry = Registry.layerStatic(
  [
    { name: "mock", providerKind: "mock", provider: mock },
    {
      name: "limited",
      provider: failing(new ProviderError({ reason: "RateLimited", message: "slow down", provider: "openai", retryAfterMs: 2000 }))
    },
    {
      name: "broken",
      provider: failing(new ProviderError({ reason: "Authentication", message: "bad key", provider: "openai", status: 401 }))
    },
    {
      name: "cut",
      provider: {
        complete: mock.complete,
        stream: (request) =>
          Stream.concat(
            Stream.take(mock.stream(request), 2),
            Stream.fail(new ProviderError({ reason: "Timeout", message: "stalled", provider: "openai" }))
          )
      }
    },
    { name: "buggy", provider: { complete: () => Effect.die("boom"), stream: () => Stream.die("boom") } }
  ],
  { retry: { max_retries: 0, initial_delay_ms: 0, max_delay_ms: 0 } }
)

const tools = [
  {
    type: "function",
    function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }
  }
]

/** Request bodies covering the shapes the mock can answer: text, length cut, n > 1, tool calls. */
const requests: ReadonlyArray<Record<string, unknown>> = [
  { model: "mock", messages: [{ role: "user", content: "Say this is a test" }] },
  { model: "mock", messages: [{ role: "user", content: "one two three four" }], max_tokens: 2 },
  { model: "mock", messages: [{ role: "user", content: "pick one" }], n: 3 },
  {
    model: "mock",
    messages: [
      { role: "system", content: "use tools" },
      { role: "user", content: [{ type: "text", text: "weather in Paris?" }] }
    ],
    tools,
    tool_choice: { type: "function", function: { name: "get_weather" } }
  }
]

// ---------------------------------------------------------------------------------------------------------------

describe("the spec helper", () => {
  it("loads OpenAI's schemas and converts nullable into null unions", () => {
    expect(Object.keys(specDocument.components.schemas)).toEqual(
      expect.arrayContaining(["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "ListModelsResponse", "Model", "ErrorResponse"])
    )
    expect(toJsonSchema({ type: "string", enum: ["stop"], nullable: true })).toEqual({ type: ["string", "null"], enum: ["stop", null] })
    expect(toJsonSchema({ $ref: "#/components/schemas/CompletionUsage", nullable: true })).toEqual({
      anyOf: [{ $ref: "#/$defs/CompletionUsage" }, { type: "null" }]
    })
  })

  it("rejects bodies that break the spec (so a pass means something)", () => {
    expect(conforms("ErrorResponse", { error: { message: "m", type: "t", param: null, code: null } })).toBe(true)
    expect(conforms("ErrorResponse", { error: { message: "m", type: "t", code: null } })).toBe(false)
    expect(conforms("ErrorResponse", { message: "m", _tag: "HttpApiDecodeError" })).toBe(false)
    expect(conforms("Model", { id: "m", object: "model", created: 1 })).toBe(false)
    const completion = { id: "c", object: "chat.completion", created: 1, model: "m", choices: [] }
    expect(conforms("CreateChatCompletionResponse", completion)).toBe(true)
    expect(conforms("CreateChatCompletionResponse", { ...completion, system_fingerprint: null })).toBe(false)
    expect(
      conforms("CreateChatCompletionResponse", {
        ...completion,
        choices: [{ index: 0, message: { role: "assistant", content: "x" }, finish_reason: "stop", logprobs: null }]
      })
    ).toBe(false) // refusal is required
    expect(
      conforms("CreateChatCompletionStreamResponse", {
        id: "c",
        object: "chat.completion.chunk",
        created: 1,
        model: "m",
        choices: [{ index: 0, delta: {}, finish_reason: "done" }]
      })
    ).toBe(false)
  })

  it("validates every chunk and completion openai-node recorded from the real API", () => {
    expect(streamRecordings.length).toBe(4)
    expect(completionRecordings.length).toBe(6)
    for (const recording of streamRecordings) {
      for (const chunk of jsonPayloads(recording.body)) expectConforms("CreateChatCompletionStreamResponse", chunk)
    }
    for (const recording of completionRecordings) expectConforms("CreateChatCompletionResponse", JSON.parse(recording.body))
  })
})

describe("the gateway's responses against OpenAI's published schemas", () => {
  it.scopedLive("chat completions are CreateChatCompletionResponse", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry })
      for (const request of requests) {
        const answer = yield* postChat(gateway.baseUrl, request)
        expect(answer.status).toBe(200)
        expectConforms("CreateChatCompletionResponse", JSON.parse(answer.text))
      }
    }))

  it.scopedLive("every streamed chunk is a CreateChatCompletionStreamResponse, usage chunk included", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry })
      for (const request of requests) {
        for (const includeUsage of [false, true]) {
          const answer = yield* postChat(gateway.baseUrl, { ...request, stream: true, stream_options: { include_usage: includeUsage } })
          expect(answer.status).toBe(200)
          expect(answer.headers.get("content-type")).toContain("text/event-stream")
          expect(answer.text.endsWith("data: [DONE]\n\n")).toBe(true)
          const chunks = jsonPayloads(answer.text)
          expect(chunks.length).toBeGreaterThan(1)
          for (const chunk of chunks) expectConforms("CreateChatCompletionStreamResponse", chunk)
        }
      }
    }))

  it.scopedLive("GET /v1/models is a ListModelsResponse and /v1/models/mock a Model", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry })
      const list = yield* get(`${gateway.baseUrl}/v1/models`)
      expect(list.status).toBe(200)
      expectConforms("ListModelsResponse", JSON.parse(list.text))
      const model = yield* get(`${gateway.baseUrl}/v1/models/mock`)
      expect(model.status).toBe(200)
      expectConforms("Model", JSON.parse(model.text))
    }))

  it.scopedLive("every error body is an ErrorResponse, in JSON and in the SSE error frame", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ registry, settings: { maxBodyBytes: 2048 } })
      const user = [{ role: "user", content: "x" }]
      const { baseUrl } = gateway
      const answers = [
        yield* postRaw(`${baseUrl}/v1/chat/completions`, "{not json"),
        yield* postChat(baseUrl, { model: "mock", messages: [{ role: "bot", content: "x" }] }),
        yield* postChat(baseUrl, { model: "mock", messages: user, temperature: 5 }),
        yield* call(`${baseUrl}/v1/models`),
        yield* get(`${baseUrl}/v1/models/nope`),
        yield* get(`${baseUrl}/v1/nothing`),
        yield* postChat(baseUrl, { model: "nope", messages: user }),
        yield* postChat(baseUrl, { model: "mock", messages: [{ role: "user", content: "x".repeat(4000) }] }),
        yield* postChat(baseUrl, { model: "limited", messages: user }),
        yield* postChat(baseUrl, { model: "broken", messages: user, stream: true }),
        yield* postChat(baseUrl, { model: "buggy", messages: user })
      ]
      expect(answers.map((answer) => answer.status)).toEqual([400, 400, 400, 401, 404, 404, 404, 413, 429, 502, 500])
      for (const answer of answers) {
        expect(answer.headers.get("content-type")).toContain("application/json")
        expectConforms("ErrorResponse", JSON.parse(answer.text))
      }
      const cut = yield* postChat(baseUrl, { model: "cut", messages: [{ role: "user", content: "a b c" }], stream: true })
      expect(cut.status).toBe(200)
      const payloads = jsonPayloads(cut.text)
      const last = payloads.at(-1)
      expect(cut.text).not.toContain("[DONE]")
      expectConforms("ErrorResponse", last)
      for (const chunk of payloads.slice(0, -1)) expectConforms("CreateChatCompletionStreamResponse", chunk)
    }))
})

describe("the gateway's schemas accept what the real API sends (openai-node recordings)", () => {
  const decodeCompletion = Schema.decodeUnknownSync(ChatCompletion)
  const decodeChunk = Schema.decodeUnknownSync(ChatCompletionChunk)

  it("decodes every recorded chat.completion, losing nothing", () => {
    for (const recording of completionRecordings) {
      const raw = JSON.parse(recording.body) as unknown
      const decoded = decodeCompletion(raw)
      expect(decoded.object).toBe("chat.completion")
      expect(decoded.choices[0]?.message.role).toBe("assistant")
      expect(Schema.encodeSync(ChatCompletion)(decoded)).toEqual(raw)
    }
  })

  it("decodes every recorded chunk, including logprobs, refusals and the usage-only chunk, losing nothing", () => {
    let usageOnly = 0
    let total = 0
    for (const recording of streamRecordings) {
      const chunks = jsonPayloads(recording.body)
      expect(recording.body.trimEnd().endsWith("data: [DONE]")).toBe(true)
      for (const raw of chunks) {
        const decoded = decodeChunk(raw)
        total++
        if (decoded.choices.length === 0 && decoded.usage != null) usageOnly++
        expect(Schema.encodeSync(ChatCompletionChunk)(decoded)).toEqual(raw)
      }
    }
    expect(total).toBeGreaterThan(40)
    expect(usageOnly).toBe(streamRecordings.length)
  })

  it("reassembles the recorded stream into the content the API answered", () => {
    const works = streamRecordings.find((recording) => recording.name === ".stream() works 1")
    expect(works).toBeDefined()
    const content = jsonPayloads(works?.body ?? "")
      .map((raw) => decodeChunk(raw))
      .flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? ""))
      .join("")
    expect(JSON.parse(content)).toEqual({ city: "San Francisco", units: "c" })
  })
})
