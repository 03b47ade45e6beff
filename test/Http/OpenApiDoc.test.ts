/**
 * The served OpenAPI document is a valid OpenAPI 3.1 document (checked with a standard validator, the OpenAPI
 * Initiative's published JSON Schema for 3.1 through @seriousme/openapi-schema-validator) and true to the wire:
 * no 400 on routes that take no input, no schemas of Effect's internals, and the headers the gateway really sends,
 * compared with real answers of every route.
 */
import { describe, expect, it } from "@effect/vitest"
import { Validator } from "@seriousme/openapi-schema-validator"
import { Effect } from "effect"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { startGateway, testKey } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"
import { registryFromDocument } from "../support/FakeUpstreams.js"
import { call, chatRequest, postChat, postEmbeddings, postRaw } from "../support/Http.js"
import type { Answer } from "../support/Http.js"

type JsonObject = { readonly [key: string]: unknown }

const asObject = (value: unknown): JsonObject => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`expected an object, got ${JSON.stringify(value)}`)
  return value as JsonObject
}

/** The value at a JSON pointer of the document (`#/components/headers/x-request-id`). */
const resolve = (spec: JsonObject, ref: string): JsonObject =>
  ref
    .replace(/^#\//, "")
    .split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce<JsonObject>((node, key) => {
      const next = node[key]
      if (next === undefined) throw new Error(`unresolved $ref ${ref}`)
      return asObject(next)
    }, spec)

const deref = (spec: JsonObject, node: unknown): JsonObject => {
  const object = asObject(node)
  return typeof object["$ref"] === "string" ? resolve(spec, object["$ref"]) : object
}

const loadSpec = (gateway: RunningGateway) =>
  Effect.map(call(`${gateway.baseUrl}/openapi.json`), (answer) => {
    expect(answer.status).toBe(200)
    return asObject(JSON.parse(answer.text))
  })

const operations = (spec: JsonObject): ReadonlyArray<readonly [string, JsonObject]> =>
  Object.entries(asObject(spec["paths"])).flatMap(([path, item]) =>
    Object.entries(asObject(item)).map(([method, operation]) => [`${method} ${path}`, asObject(operation)] as const)
  )

/** Every string value under `$ref` keys. */
const refsIn = (node: unknown, into: Array<string> = []): Array<string> => {
  if (Array.isArray(node)) for (const item of node) refsIn(item, into)
  else if (typeof node === "object" && node !== null) {
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string") into.push(value)
      else refsIn(value, into)
    }
  }
  return into
}

const secret = "sk-llmp-limited-xxxxxxxxxxxxxxxxxxxxxxxx"

/** The built-in mock, and a key `limited` with rpm 1 and tpm limits (so its answers carry OpenAI's headers). */
const limitedGateway = startGateway({
  registry: registryFromDocument({
    models: [{ name: "mock", provider: "mock" }, { name: "mock-cached", provider: "mock", cache: { ttl_s: 60 } }],
    keys: [{ id: "limited", key_sha256: sha256Hex(secret), limits: { rpm: 1, tpm: 100000 } }]
  }),
  settings: { maxBodyBytes: 2048, shutdownGraceMs: 100 }
})

describe("the OpenAPI document", () => {
  it.scopedLive("is a valid OpenAPI 3.1 document (the OpenAPI Initiative's schema), every $ref resolving", () =>
    Effect.gen(function* () {
      const spec = yield* loadSpec(yield* startGateway())
      const validator = new Validator()
      const result = yield* Effect.promise(() => validator.validate({ ...spec }))
      expect({ valid: result.valid, errors: result.errors ?? null }).toEqual({ valid: true, errors: null })
      expect(validator.version).toBe("3.1")
      for (const ref of refsIn(spec)) expect(() => resolve(spec, ref)).not.toThrow()
      // the validator itself notices a broken document: a response without its required description
      const broken = structuredClone(spec) as { paths: Record<string, Record<string, { responses: Record<string, Record<string, unknown>> }>> }
      delete broken.paths["/health"]!["get"]!.responses["200"]!["description"]
      expect((yield* Effect.promise(() => new Validator().validate(broken))).valid).toBe(false)
    }))

  it.scopedLive("documents no 400 on routes that take no input, and a true one where input can fail", () =>
    Effect.gen(function* () {
      const spec = yield* loadSpec(yield* startGateway())
      const byKey = new Map(operations(spec))
      for (const key of ["get /health", "get /ready", "get /v1/models", "get /v1/models/{model}", "get /v1/llm/models", "get /metrics", "get /admin/keys"]) {
        const responses = asObject(byKey.get(key)?.["responses"])
        expect({ key, status400: responses["400"] }).toEqual({ key, status400: undefined })
      }
      for (const key of ["get /admin/usage", "post /v1/chat/completions", "post /v1/embeddings"]) {
        const badRequest = asObject(asObject(byKey.get(key)?.["responses"])["400"])
        expect(asObject(asObject(badRequest["content"])["application/json"])["schema"]).toEqual({ $ref: "#/components/schemas/ErrorResponse" })
      }
      expect(JSON.stringify(spec)).not.toContain("did not match the expected schema")
      // each documented operation has a summary for the reference's sidebar
      for (const [key, operation] of operations(spec)) expect({ key, summary: typeof operation["summary"] }).toEqual({ key, summary: "string" })
    }))

  it.scopedLive("holds no schema of Effect's internals and no component that nothing uses", () =>
    Effect.gen(function* () {
      const spec = yield* loadSpec(yield* startGateway())
      const schemas = asObject(asObject(spec["components"])["schemas"])
      for (const internal of ["PropertyKey", "HttpApiDecodeError", "Issue", "Int", "Unknown"]) expect(Object.keys(schemas)).not.toContain(internal)
      const text = JSON.stringify(spec)
      expect(text).not.toContain("/schemas/unknown")
      expect(text).not.toContain("HttpApiDecodeError")
      expect(text).not.toMatch(/"title":"(?:between|minLength|maxItems|minItems|greaterThanOrEqualTo)\(/)
      const used = new Set(refsIn({ ...spec, components: { ...asObject(spec["components"]), schemas: {} } }))
      for (const [, schema] of Object.entries(schemas)) for (const ref of refsIn(schema)) used.add(ref)
      for (const name of Object.keys(schemas)) expect({ name, used: used.has(`#/components/schemas/${name}`) }).toEqual({ name, used: true })
    }))

  it.scopedLive("documents the headers every real answer carries, and only those", () =>
    Effect.gen(function* () {
      const gateway = yield* limitedGateway
      const spec = yield* loadSpec(gateway)
      const byKey = new Map(operations(spec))
      const operator = { authorization: `Bearer ${testKey}` }
      const limited = { authorization: `Bearer ${secret}` }
      const url = (path: string) => `${gateway.baseUrl}${path}`
      const exchanges: Array<readonly [string, Answer]> = []
      const record = (key: string, answer: Answer) => exchanges.push([key, answer])

      record("get /health", yield* call(url("/health")))
      record("get /ready", yield* call(url("/ready")))
      record("get /v1/models", yield* call(url("/v1/models"), { headers: operator }))
      record("get /v1/models", yield* call(url("/v1/models")))
      record("get /v1/models/{model}", yield* call(url("/v1/models/mock"), { headers: operator }))
      record("get /v1/models/{model}", yield* call(url("/v1/models/nope"), { headers: operator }))
      record("get /v1/llm/models", yield* call(url("/v1/llm/models"), { headers: limited }))
      record("get /metrics", yield* call(url("/metrics"), { headers: operator }))
      record("get /metrics", yield* call(url("/metrics"), { headers: limited }))
      record("get /admin/keys", yield* call(url("/admin/keys"), { headers: operator }))
      record("get /admin/usage", yield* call(url("/admin/usage?day=2026-12-02"), { headers: operator }))
      record("get /admin/usage", yield* call(url("/admin/usage?day=yesterday"), { headers: operator }))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock"), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock-cached"), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock-cached"), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock", { stream: true }), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock"), limited))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock"), limited))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("nope"), operator))
      record("post /v1/chat/completions", yield* postRaw(url("/v1/chat/completions"), "{", operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock"), { authorization: "Bearer wrong" }))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock", { padding: "x".repeat(4096) }), operator))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, operator))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, limited))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "nope", input: "x" }, operator))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "" }, operator))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, { authorization: "Bearer wrong" }))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x".repeat(4096) }, operator))
      gateway.lifecycle.startDraining()
      for (const [key, path] of [["get /health", "/health"], ["get /v1/models", "/v1/models"], ["get /admin/keys", "/admin/keys"]] as const) {
        record(key, yield* call(url(path), { headers: operator }))
      }
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock"), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock-cached"), operator))
      record("post /v1/chat/completions", yield* postChat(gateway.baseUrl, chatRequest("mock-cached"), operator))
      record("post /v1/embeddings", yield* postEmbeddings(gateway.baseUrl, { model: "mock", input: "x" }, operator))

      const seen = new Set<string>()
      for (const [key, answer] of exchanges) {
        const operation = byKey.get(key)
        expect(operation).toBeDefined()
        const documented = asObject(operation?.["responses"])[String(answer.status)]
        expect({ key, status: answer.status, documented: documented !== undefined }).toEqual({ key, status: answer.status, documented: true })
        const headers = asObject(asObject(documented)["headers"] ?? {})
        for (const [name, header] of Object.entries(headers)) {
          if (deref(spec, header)["required"] === true) {
            expect({ key, status: answer.status, name, sent: answer.headers.has(name) }).toEqual({ key, status: answer.status, name, sent: true })
          }
        }
        for (const name of answer.headers.keys()) {
          if (!name.startsWith("x-") && name !== "retry-after") continue
          seen.add(`${answer.status} ${name}`)
          expect({ key, status: answer.status, name, documented: headers[name] !== undefined }).toEqual({ key, status: answer.status, name, documented: true })
        }
      }
      // the exchanges did reach every kind of header the document names
      expect([...seen].sort()).toEqual(
        expect.arrayContaining([
          "200 x-llm-proxy-attempts",
          "200 x-llm-proxy-cache",
          "200 x-llm-proxy-model",
          "200 x-llm-proxy-provider",
          "200 x-ratelimit-limit-requests",
          "200 x-ratelimit-reset-tokens",
          "200 x-request-id",
          "400 x-request-id",
          "401 x-request-id",
          "403 x-request-id",
          "404 x-request-id",
          "413 x-request-id",
          "429 retry-after",
          "429 x-ratelimit-remaining-requests",
          "503 retry-after"
        ])
      )
    }))
})
