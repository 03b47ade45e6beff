/**
 * POST /v1/embeddings end to end over real sockets, the official openai SDK (and the AI SDK) as the client: the mock, a fake
 * OpenAI-compatible upstream and a fake Gemini upstream (real HTTP servers on port 0), base64 (the SDK's default)
 * and floats, the refusals (a deployment that cannot embed, an unknown model, bad input, a malformed upstream), large
 * batches, and a virtual key's allow-list, limits, spend and usage rows.
 */
import { createOpenAICompatible } from "@ai-sdk/openai-compatible"
import { describe, expect, it } from "@effect/vitest"
import { cosineSimilarity, embed, embedMany } from "ai"
import { Effect } from "effect"
import { countTokens } from "gpt-tokenizer/encoding/o200k_base"
import OpenAI from "openai"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { toBase64 } from "../../src/OpenAi/Embeddings.js"
import { Anthropic, deploymentOf, Gemini, hang, json, OpenAi, registryFromDocument, startUpstream, text } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply, UpstreamCall } from "../support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import { call, expectEnvelope, postEmbeddings, postRaw } from "../support/Http.js"
import { attempt } from "../support/Sdk.js"

const sdk = (baseUrl: string, apiKey = testKey) => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0, timeout: 20_000 })

const norm = (vector: ReadonlyArray<number>): number => Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0))

interface EmbeddingList {
  readonly object: string
  readonly model: string
  readonly data: ReadonlyArray<{ readonly object: string; readonly index: number; readonly embedding: ReadonlyArray<number> | string }>
  readonly usage: { readonly prompt_tokens: number; readonly total_tokens: number }
}

const listOf = (text: string): EmbeddingList => JSON.parse(text) as EmbeddingList

const upstreamKey = "sk-embedding-upstream-secret"

/** Sets the upstream key variable for the scope. */
const withUpstreamKey = Effect.acquireRelease(
  Effect.sync(() => {
    process.env["E2E_EMBEDDINGS_KEY"] = upstreamKey
  }),
  () => Effect.sync(() => delete process.env["E2E_EMBEDDINGS_KEY"])
)

/** A deterministic vector per input text: what the fake upstreams answer (0.1 is no float32: it shows rounding). */
const vectorFor = (text: string, index: number): ReadonlyArray<number> => [index + 0.5, text.length / 8, 0.1]

const textsOf = (call: UpstreamCall): ReadonlyArray<string> => {
  const input = call.json["input"]
  return Array.isArray(input) ? input.map(String) : [String(input)]
}

/** An OpenAI-compatible embeddings server: answers in the encoding it was asked for (floats unless base64). */
const openAiEmbeddings = (call: UpstreamCall): Reply =>
  OpenAi.embeddings(
    textsOf(call).map(vectorFor),
    { base64: call.json["encoding_format"] === "base64" }
  )

/** Gemini's batchEmbedContents: one vector per request of the batch. */
const geminiEmbeddings = (call: UpstreamCall): Reply => {
  const requests = (call.json["requests"] ?? []) as ReadonlyArray<{ readonly content: { readonly parts: ReadonlyArray<{ readonly text: string }> } }>
  return Gemini.embeddings(requests.map((request) => vectorFor(request.content.parts[0]?.text ?? "", Number(/\d+/.exec(request.content.parts[0]?.text ?? "")?.[0] ?? 0))))
}

/** A gateway over a fake OpenAI-compatible upstream (`embed`), a fake Gemini (`gemini-embed`), a fake Anthropic (`claude`) and the mock. */
const upstreamGateway = (openAiScript: (call: UpstreamCall) => Reply = openAiEmbeddings, geminiScript: (call: UpstreamCall) => Reply = geminiEmbeddings, retries = 0) =>
  Effect.gen(function* () {
    yield* withUpstreamKey
    const openai = yield* startUpstream("openai", openAiScript)
    const gemini = yield* startUpstream("gemini", geminiScript)
    const anthropic = yield* startUpstream("anthropic", [Anthropic.message([{ type: "text", text: "never asked" }])])
    const gateway = yield* startGateway({
      registry: registryFromDocument({
        models: [
          deploymentOf("embed", openai, { model: "text-embedding-3-small", api_key_env: "E2E_EMBEDDINGS_KEY" }),
          deploymentOf("gemini-embed", gemini, { model: "gemini-embedding-001", api_key_env: "E2E_EMBEDDINGS_KEY" }),
          deploymentOf("claude", anthropic, { model: "claude-sonnet-4-5", api_key_env: "E2E_EMBEDDINGS_KEY" }),
          { name: "mock", provider: "mock" }
        ],
        settings: { retry: { max_retries: retries, initial_delay_ms: 1, max_delay_ms: 1 } }
      }),
      settings: { shutdownGraceMs: 100 }
    })
    return { gateway, openai, gemini, anthropic, client: sdk(gateway.baseUrl) }
  })

const expectNoClientKey = (upstream: FakeUpstream) => {
  for (const received of upstream.calls) expect(received.headerValues.join("\n")).not.toContain(testKey)
}

for (const mount of mounts) {
  describe(`embeddings against the mock with the openai SDK (${mount} mount)`, () => {
    it.scopedLive("the default base64 decodes to exactly the floats encoding_format float gives: unit vectors, 256 dimensions, usage, routing headers", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const client = sdk(gateway.baseUrl)
        const input = ["the cat sat on the mat", "a dog ran"]
        const { data: decoded, response } = yield* attempt(() => client.embeddings.create({ model: "mock", input }).withResponse())
        const floats = yield* attempt(() => client.embeddings.create({ model: "mock", input, encoding_format: "float" }))
        expect(decoded.object).toBe("list")
        expect(decoded.model).toBe("mock")
        expect(decoded.data.map((item) => [item.object, item.index])).toEqual([["embedding", 0], ["embedding", 1]])
        expect(decoded.data.map((item) => item.embedding)).toEqual(floats.data.map((item) => item.embedding))
        for (const item of floats.data) {
          expect(item.embedding).toHaveLength(256)
          expect(Math.abs(norm(item.embedding) - 1)).toBeLessThan(1e-5)
        }
        expect(decoded.usage).toEqual({ prompt_tokens: 9, total_tokens: 9 })
        expect(response.headers.get("x-llm-proxy-model")).toBe("mock")
        expect(response.headers.get("x-llm-proxy-provider")).toBe("mock")
        expect(response.headers.get("x-llm-proxy-attempts")).toBe("1")
        expect(response.headers.get("x-request-id")).toBeTruthy()
        // the base64 on the wire is byte for byte the little-endian float32 of the floats
        const raw = listOf((yield* postEmbeddings(gateway.baseUrl, { model: "mock", input, encoding_format: "base64" })).text)
        expect(raw.data.map((item) => item.embedding)).toEqual(floats.data.map((item) => toBase64(item.embedding)))
        // the same text gets the same vector, and dimensions are honoured
        const again = yield* attempt(() => client.embeddings.create({ model: "mock", input: "a dog ran", encoding_format: "float" }))
        expect(again.data[0]?.embedding).toEqual(floats.data[1]?.embedding)
        const short = yield* attempt(() => client.embeddings.create({ model: "mock", input: "a dog ran", dimensions: 32 }))
        expect(short.data[0]?.embedding).toHaveLength(32)
      }))

    it.scopedLive("bad input is a 400 naming the field, an unknown model a 404, GET a 405", () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway({ mount })
        const client = sdk(gateway.baseUrl)
        const empty = yield* Effect.flip(attempt(() => client.embeddings.create({ model: "mock", input: "" })))
        expect(empty).toBeInstanceOf(OpenAI.BadRequestError)
        expect(empty).toMatchObject({ status: 400, param: "input", code: "invalid_request", type: "invalid_request_error" })
        const tokens = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: [[1, 2], [3, -4]] }), 400, "invalid_request", "input")
        expect(tokens.message).toContain("input[1][1] is -4")
        expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x", dimensions: 0 }), 400, "invalid_request", "dimensions")
        expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x", encoding_format: "int8" }), 400, "invalid_request", "encoding_format")
        expectEnvelope(yield* postRaw(`${gateway.baseUrl}/v1/embeddings`, "{\"model\":"), 400, "invalid_json")
        const unknown = yield* Effect.flip(attempt(() => client.embeddings.create({ model: "no-such-model", input: "x" })))
        expect(unknown).toBeInstanceOf(OpenAI.NotFoundError)
        expect(unknown).toMatchObject({ status: 404, code: "model_not_found", param: "model" })
        const get = yield* call(`${gateway.baseUrl}/v1/embeddings`, { headers: { authorization: `Bearer ${testKey}` } })
        expectEnvelope(get, 405, "method_not_allowed")
        expect(get.headers.get("allow")).toBe("POST")
        expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, { authorization: "Bearer wrong" }), 401, "invalid_api_key")
      }))
  })
}

describe("the AI SDK's embeddings against the mock", () => {
  it.scopedLive("embedMany and embed work, and a retrieval ranks the document that shares words with the query first", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const model = createOpenAICompatible({ name: "llmproxy", baseURL: `${gateway.baseUrl}/v1`, apiKey: testKey }).embeddingModel("mock")
      const documents = ["a recipe for sourdough bread", "the gateway routes chat requests to upstream models", "bananas are rich in potassium"]
      const { embeddings, usage } = yield* attempt(() => embedMany({ model, values: documents, maxRetries: 0 }))
      const { embedding } = yield* attempt(() => embed({ model, value: "which upstream models does the gateway route to", maxRetries: 0 }))
      expect(embeddings.map((vector) => vector.length)).toEqual([256, 256, 256])
      expect(usage.tokens).toBe(18)
      const ranked = documents.map((text, index) => ({ text, score: cosineSimilarity(embedding, embeddings[index]!) })).sort((a, b) => b.score - a.score)
      expect(ranked[0]?.text).toBe(documents[1])
      expect(ranked[0]!.score).toBeGreaterThan(ranked[1]!.score + 0.2)
    }))
})

describe("embeddings through an OpenAI-compatible upstream", () => {
  it.scopedLive("passes the request through (upstream model, encoding_format, user, unknown fields; never the client's key) and decodes its base64", () =>
    Effect.gen(function* () {
      const { client, openai } = yield* upstreamGateway()
      const input = ["alpha", "beta gamma", "delta"]
      const { data: answer, response } = yield* attempt(() =>
        // input_type: a vendor field the SDK does not know, which the gateway forwards
        client.embeddings.create({ model: "embed", input, user: "user-7", dimensions: 3, input_type: "query" } as OpenAI.EmbeddingCreateParams).withResponse()
      )
      const sent = openai.calls[0]!
      expect(sent.path).toBe("/v1/embeddings")
      expect(sent.json).toEqual({ model: "text-embedding-3-small", input, user: "user-7", dimensions: 3, encoding_format: "base64", input_type: "query" })
      expect(sent.headers["authorization"]).toBe(`Bearer ${upstreamKey}`)
      expectNoClientKey(openai)
      expect(answer.model).toBe("embed")
      expect(answer.data.map((item) => item.index)).toEqual([0, 1, 2])
      expect(answer.data.map((item) => item.embedding)).toEqual(input.map((text, index) => vectorFor(text, index).map(Math.fround)))
      expect(answer.usage).toEqual({ prompt_tokens: 8, total_tokens: 8 })
      expect(response.headers.get("x-llm-proxy-provider")).toBe("openai")
    }))

  it.scopedLive("asked for floats, asks the upstream for floats and passes its numbers on exactly", () =>
    Effect.gen(function* () {
      const { client, openai } = yield* upstreamGateway()
      const answer = yield* attempt(() => client.embeddings.create({ model: "embed", input: "alpha", encoding_format: "float" }))
      expect(openai.calls[0]?.json["encoding_format"]).toBe("float")
      expect(answer.data[0]?.embedding).toEqual([0.5, 0.625, 0.1])
    }))

  it.scopedLive("reads either encoding back: floats encoded for a base64 client, base64 decoded for a float client", () =>
    Effect.gen(function* () {
      const floats = [0.25, -0.1, 3]
      const { gateway, openai } = yield* upstreamGateway()
      openai.setScript((call) => OpenAi.embeddings([floats], { base64: call.json["encoding_format"] !== "base64" }))
      const base64 = listOf((yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "x", encoding_format: "base64" })).text)
      expect(base64.data[0]?.embedding).toBe(toBase64(floats))
      const numbers = listOf((yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "x" })).text)
      expect(numbers.data[0]?.embedding).toEqual(floats.map(Math.fround))
    }))

  it.scopedLive("counts the prompt with the gateway's tokenizer when the upstream reports no usage", () =>
    Effect.gen(function* () {
      const { gateway, openai } = yield* upstreamGateway()
      openai.setScript((call) => OpenAi.embeddings(textsOf(call).map(vectorFor), { usage: null }))
      const input = ["The quick brown fox", "jumps over the lazy dog, twice."]
      const answer = listOf((yield* postEmbeddings(gateway.baseUrl, { model: "embed", input })).text)
      const expected = countTokens(input[0]!) + countTokens(input[1]!)
      expect(answer.usage).toEqual({ prompt_tokens: expected, total_tokens: expected })
    }))

  it.scopedLive("an upstream refusal keeps its status and message; a malformed answer is a 502; a 503 is retried", () =>
    Effect.gen(function* () {
      const { gateway, openai } = yield* upstreamGateway(openAiEmbeddings, geminiEmbeddings, 1)
      openai.setScript([OpenAi.error(400, "This model's maximum context length is 8192 tokens", { code: "context_length_exceeded", param: "input" })])
      const refused = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "x" }), 400, "context_length_exceeded", "input")
      expect(refused.message).toContain("8192")
      const malformed: ReadonlyArray<Reply> = [
        OpenAi.embeddings([[1], [2]]),
        json({ object: "list", data: [{ object: "embedding", index: 0, embedding: ["NaN"] }] }),
        json({ object: "list", data: [{ object: "embedding", index: 0, embedding: "%%%" }] }),
        text(200, "<html>oops</html>", "text/html"),
        json({ unexpected: true })
      ]
      for (const reply of malformed) {
        openai.setScript([reply])
        const answer = yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "x" })
        expectEnvelope(answer, 502, "upstream_malformed_response")
      }
      // Vectors a vector store would refuse: of different lengths in one answer, or not the dimensions asked for.
      openai.setScript([OpenAi.embeddings([[1, 2, 3], [1, 2]])])
      const ragged = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: ["a", "b"] }), 502, "upstream_malformed_response")
      expect(ragged.message).toContain("different lengths (3 and 2)")
      openai.setScript([OpenAi.embeddings([[1, 2, 3]])])
      const ignored = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "a", dimensions: 2 }), 502, "upstream_malformed_response")
      expect(ignored.message).toContain("3 dimensions where 2 were asked for")
      openai.setScript([OpenAi.embeddings([[1, 2]])])
      expect((yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "a", dimensions: 2 })).status).toBe(200)
      openai.setScript((call) => (call.index % 2 === 0 ? OpenAi.error(503, "busy", { type: "server_error" }) : openAiEmbeddings(call)))
      const before = openai.calls.length
      const retried = yield* postEmbeddings(gateway.baseUrl, { model: "embed", input: "x" })
      expect(retried.status).toBe(200)
      expect(retried.headers.get("x-llm-proxy-attempts")).toBe(before % 2 === 0 ? "2" : "1")
    }))
})

describe("embeddings through Gemini", () => {
  it.scopedLive("batchEmbedContents in batches of 100 with outputDimensionality, in input order, usage counted with the tokenizer", () =>
    Effect.gen(function* () {
      const { client, gemini } = yield* upstreamGateway()
      const input = Array.from({ length: 150 }, (_, index) => `document ${index} about gateways`)
      const answer = yield* attempt(() => client.embeddings.create({ model: "gemini-embed", input, dimensions: 3 }))
      expect(gemini.calls.map((received) => received.path)).toEqual([
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
      ])
      const requests = gemini.calls.map((received) => received.json["requests"] as ReadonlyArray<Record<string, unknown>>)
      expect(requests.map((batch) => batch.length).sort()).toEqual([100, 50].sort())
      expect(requests.flat()[0]).toEqual({ model: "models/gemini-embedding-001", content: { parts: [{ text: expect.stringMatching(/^document \d+ about gateways$/) }] }, outputDimensionality: 3 })
      expect(gemini.calls.every((received) => received.headers["x-goog-api-key"] === upstreamKey)).toBe(true)
      expectNoClientKey(gemini)
      expect(answer.model).toBe("gemini-embed")
      expect(answer.data.map((item) => item.embedding)).toEqual(input.map((text, index) => vectorFor(text, index).map(Math.fround)))
      const expected = input.reduce((sum, text) => sum + countTokens(text), 0)
      expect(answer.usage).toEqual({ prompt_tokens: expected, total_tokens: expected })
    }))

  it.scopedLive("token ids are a 400 without an upstream call; Gemini's own refusal and a malformed answer keep their meaning", () =>
    Effect.gen(function* () {
      const { gateway, gemini } = yield* upstreamGateway()
      const tokens = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "gemini-embed", input: [1, 2, 3] }), 400, null, "input")
      expect(tokens.message).toContain("text only")
      expect(gemini.calls).toHaveLength(0)
      gemini.setScript([Gemini.error(400, "outputDimensionality must be at most 3072", "INVALID_ARGUMENT")])
      const refused = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "gemini-embed", input: "x", dimensions: 9000 }), 400, "INVALID_ARGUMENT")
      expect(refused.message).toContain("3072")
      gemini.setScript([Gemini.embeddings([[1], [2]])])
      expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "gemini-embed", input: "x" }), 502, "upstream_malformed_response")
    }))
})

describe("embeddings refused by a deployment that cannot embed", () => {
  it.scopedLive("an Anthropic deployment is a 400 saying so, without an upstream call", () =>
    Effect.gen(function* () {
      const { anthropic, client } = yield* upstreamGateway()
      const error = yield* Effect.flip(attempt(() => client.embeddings.create({ model: "claude", input: "x" })))
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      expect(error).toMatchObject({ status: 400, type: "invalid_request_error", code: "model_cannot_embed", param: "model" })
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).message).toContain("deployment claude-sonnet-4-5 (anthropic) cannot embed")
      expect(anthropic.calls).toHaveLength(0)
    }))
})

describe("large batches", () => {
  it.scopedLive("2048 inputs within MAX_BODY_BYTES are answered in order; 2049 are a 400; a body past the limit a 413", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ settings: { maxBodyBytes: 256 * 1024 } })
      const input = Array.from({ length: 2048 }, (_, index) => `passage number ${index} of the corpus`)
      const answer = yield* postEmbeddings(gateway.baseUrl, { model: "mock", input, dimensions: 16, encoding_format: "float" })
      expect(answer.status).toBe(200)
      const list = listOf(answer.text)
      expect(list.data.map((item) => item.index)).toEqual(input.map((_, index) => index))
      const single = listOf((yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: input[1234], dimensions: 16, encoding_format: "float" })).text)
      expect(list.data[1234]?.embedding).toEqual(single.data[0]?.embedding)
      const tooMany = expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: [...input, "one more"] }), 400, "invalid_request", "input")
      expect(tooMany.message).toContain("2049")
      const tooLarge = Array.from({ length: 2048 }, () => "x".repeat(200))
      expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: tooLarge }), 413, "request_too_large")
    }))
})

describe("a virtual key's models and limits apply to embeddings", () => {
  const secretOf = (id: string) => `sk-llmp-${id}-${"e".repeat(24)}`
  const asKey = (id: string) => ({ authorization: `Bearer ${secretOf(id)}` })
  const operator = { authorization: `Bearer ${testKey}` }

  const gatewayWith = (keys: ReadonlyArray<Record<string, unknown>>) =>
    startGateway({
      registry: registryFromDocument({
        models: [
          { name: "mock", provider: "mock" },
          { name: "mock-2", provider: "mock" },
          { name: "priced", provider: "mock", price: { input_per_mtok: 1000, output_per_mtok: 5000 } }
        ],
        keys: keys.map((key) => ({ key_sha256: sha256Hex(secretOf(String(key["id"]))), ...key }))
      }),
      settings: { shutdownGraceMs: 100 }
    })

  interface UsageRow {
    readonly key: string
    readonly model: string
    readonly requests: number
    readonly prompt_tokens: number
    readonly completion_tokens: number
    readonly spend_usd: number
  }

  /** The key's usage rows once `done` holds (they are written after the answer). */
  const rowsWhen = (baseUrl: string, key: string, done: (rows: ReadonlyArray<UsageRow>) => boolean) =>
    Effect.gen(function* () {
      let rows: ReadonlyArray<UsageRow> = []
      for (let attempt = 0; attempt < 100; attempt++) {
        rows = (JSON.parse((yield* call(`${baseUrl}/admin/usage?key=${key}`, { headers: operator })).text) as { rows: ReadonlyArray<UsageRow> }).rows
        if (done(rows)) return rows
        yield* Effect.sleep("20 millis")
      }
      return rows
    })

  it.scopedLive("the allow-list: a model the key may not use is a 404, and still a request in its usage", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([{ id: "search", models: ["mock"] }])
      expect((yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, asKey("search"))).status).toBe(200)
      expectEnvelope(yield* postEmbeddings(gateway.baseUrl, { model: "mock-2", input: "x" }, asKey("search")), 404, "model_not_found")
      const rows = yield* rowsWhen(gateway.baseUrl, "search", (rows) => rows.reduce((sum, row) => sum + row.requests, 0) === 2)
      expect(rows.find((row) => row.model === "mock")).toMatchObject({ requests: 1, prompt_tokens: 1, completion_tokens: 0 })
      expect(rows.find((row) => row.model === "mock-2")).toMatchObject({ requests: 1, prompt_tokens: 0 })
    }))

  it.scopedLive("rpm counts embeddings requests, with OpenAI's rate-limit headers; chat and embeddings share the window", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([{ id: "tight", limits: { rpm: 2 } }])
      const first = yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, asKey("tight"))
      expect(first.status).toBe(200)
      expect(first.headers.get("x-ratelimit-limit-requests")).toBe("2")
      expect(first.headers.get("x-ratelimit-remaining-requests")).toBe("1")
      const chat = yield* postRaw(`${gateway.baseUrl}/v1/chat/completions`, JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x" }] }), asKey("tight"))
      expect(chat.status).toBe(200)
      const refused = yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, asKey("tight"))
      const error = expectEnvelope(refused, 429, "rate_limit_exceeded")
      expect(error.message).toContain("rpm")
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)
      expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0")
    }))

  it.scopedLive("tpm counts the embedded tokens", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([{ id: "tokens", limits: { tpm: 10 } }])
      const body = { model: "mock", input: "one two three four five six" }
      let admitted = 0
      let refusal: ReturnType<typeof expectEnvelope> | undefined
      for (let index = 0; index < 4 && refusal === undefined; index++) {
        const answer = yield* postEmbeddings(gateway.baseUrl, body, asKey("tokens"))
        if (answer.status === 200) {
          admitted++
          yield* rowsWhen(gateway.baseUrl, "tokens", (rows) => (rows[0]?.requests ?? 0) === admitted)
        } else refusal = expectEnvelope(answer, 429, "rate_limit_exceeded")
      }
      // 6 tokens each: the second reaches 12 ≥ 10, the third is refused
      expect(admitted).toBe(2)
      expect(refusal?.message).toContain("tpm")
    }))

  it.scopedLive("spend at the deployment's input price, in the key's budget and usage rows", () =>
    Effect.gen(function* () {
      const gateway = yield* gatewayWith([{ id: "payer", limits: { budget: { usd: 0.01, period: "daily" } } }])
      // 4 words, 4 prompt tokens: 4 × 1000 USD per million = 0.004 USD
      const body = { model: "priced", input: ["a b", "c d"] }
      const answer = listOf((yield* postEmbeddings(gateway.baseUrl, body, asKey("payer"))).text)
      expect(answer.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 })
      yield* rowsWhen(gateway.baseUrl, "payer", (rows) => rows.length > 0)
      expect((yield* postEmbeddings(gateway.baseUrl, body, asKey("payer"))).status).toBe(200)
      const rows = yield* rowsWhen(gateway.baseUrl, "payer", (rows) => (rows[0]?.requests ?? 0) === 2)
      expect(rows[0]).toMatchObject({ key: "payer", model: "priced", requests: 2, prompt_tokens: 8, completion_tokens: 0 })
      expect(rows[0]?.spend_usd).toBeCloseTo(0.008, 9)
      expect((yield* postEmbeddings(gateway.baseUrl, body, asKey("payer"))).status).toBe(200)
      yield* rowsWhen(gateway.baseUrl, "payer", (rows) => (rows[0]?.requests ?? 0) === 3)
      expectEnvelope(yield* postEmbeddings(gateway.baseUrl, body, asKey("payer")), 429, "insufficient_quota")
    }))
})

describe("a client that leaves an embeddings request", () => {
  it.scopedLive("aborts the upstream call, frees the key's max_parallel slot, and the request counts", () =>
    Effect.gen(function* () {
      const secret = `sk-llmp-leaver-${"l".repeat(24)}`
      const upstream = yield* startUpstream("openai", [hang])
      const gateway = yield* startGateway({
        registry: registryFromDocument({
          models: [deploymentOf("slow-embed", upstream), { name: "mock", provider: "mock" }],
          keys: [{ id: "leaver", key_sha256: sha256Hex(secret), limits: { max_parallel: 1 } }]
        }),
        settings: { shutdownGraceMs: 100 }
      })
      const key = { authorization: `Bearer ${secret}` }
      const controller = new AbortController()
      const left = fetch(`${gateway.baseUrl}/v1/embeddings`, {
        method: "POST",
        headers: { ...key, "content-type": "application/json" },
        body: JSON.stringify({ model: "slow-embed", input: "x" }),
        signal: controller.signal
      }).catch(() => undefined)
      const [received] = yield* upstream.awaitCalls(1)
      controller.abort()
      yield* Effect.promise(() => left)
      yield* Effect.promise(() => received!.closed)
      expect(received?.closedByClient).toBe(true)
      let status = 0
      for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
        status = (yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, key)).status
        if (status !== 200) yield* Effect.sleep("20 millis")
      }
      expect(status).toBe(200)
    }))
})

describe("an unknown route under /v1/", () => {
  it.scopedLive("keeps its 404 envelope and names the endpoints served, embeddings included", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const error = expectEnvelope(yield* postRaw(`${gateway.baseUrl}/v1/embedding`, JSON.stringify({ model: "mock", input: "x" })), 404, "unknown_url")
      expect(error.message).toContain("POST /v1/embeddings")
      expect(error.message).toContain("POST /v1/chat/completions")
    }))
})
