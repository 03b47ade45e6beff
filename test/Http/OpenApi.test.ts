import { describe, expect, it } from "@effect/vitest"
import Ajv2020Module from "ajv/dist/2020.js"
import { Effect } from "effect"
import { scalarBundle } from "../../src/Http/Docs.js"
import { startGateway } from "../support/Gateway.js"
import type { RunningGateway } from "../support/Gateway.js"

type JsonObject = { readonly [key: string]: unknown }

const asObject = (value: unknown): JsonObject => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`expected an object, got ${JSON.stringify(value)}`)
  return value as JsonObject
}

/** Follows a path of keys through nested objects, failing with the path when a step is missing. */
const at = (root: unknown, ...path: ReadonlyArray<string>): JsonObject =>
  path.reduce<JsonObject>((node, key, index) => {
    const next = node[key]
    if (next === undefined) throw new Error(`missing ${path.slice(0, index + 1).join(" → ")}`)
    return asObject(next)
  }, asObject(root))

const fetchText = (gateway: RunningGateway, path: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${gateway.baseUrl}${path}`, init)
    return { status: response.status, contentType: response.headers.get("content-type") ?? "", text: await response.text() }
  })

const loadSpec = Effect.gen(function* () {
  const gateway = yield* startGateway()
  const answer = yield* fetchText(gateway, "/openapi.json")
  expect(answer.status).toBe(200)
  expect(answer.contentType).toContain("application/json")
  return { gateway, spec: asObject(JSON.parse(answer.text)) }
})

const operations = (spec: JsonObject): ReadonlyArray<readonly [string, string, JsonObject]> =>
  Object.entries(at(spec, "paths")).flatMap(([path, item]) =>
    Object.entries(asObject(item)).map(([method, operation]) => [path, method, asObject(operation)] as const)
  )

describe("GET /openapi.json", () => {
  it.scopedLive("documents every route", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      expect(String(spec["openapi"])).toMatch(/^3\.1\./)
      expect(at(spec, "info")["title"]).toBe("llm-proxy")
      const paths = at(spec, "paths")
      expect(Object.keys(paths).sort()).toEqual(
        [
          "/admin/keys",
          "/admin/usage",
          "/health",
          "/metrics",
          "/ready",
          "/v1/chat/completions",
          "/v1/embeddings",
          "/v1/llm/models",
          "/v1/messages",
          "/v1/messages/count_tokens",
          "/v1/models",
          "/v1/models/{model}",
          "/v1/responses",
          "/v1/responses/{id}"
        ].sort()
      )
      for (const path of ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens"]) expect(Object.keys(at(paths, path))).toEqual(["post"])
      expect(Object.keys(at(paths, "/v1/responses/{id}")).sort()).toEqual(["delete", "get"])
      expect(Object.keys(at(paths, "/v1/responses", "post", "responses", "200", "content")).sort()).toEqual(["application/json", "text/event-stream"])
      for (const path of ["/health", "/ready", "/metrics", "/v1/models", "/v1/models/{model}", "/v1/llm/models", "/admin/keys", "/admin/usage"]) {
        expect(Object.keys(at(paths, path))).toEqual(["get"])
      }
      const parameters = at(paths, "/v1/models/{model}", "get")["parameters"] as ReadonlyArray<JsonObject>
      expect(parameters).toEqual([expect.objectContaining({ name: "model", in: "path", required: true })])
    }))

  it.scopedLive("lists text/event-stream beside JSON for the chat 200", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      const content = at(spec, "paths", "/v1/chat/completions", "post", "responses", "200", "content")
      expect(Object.keys(content).sort()).toEqual(["application/json", "text/event-stream"])
      expect(at(content, "application/json", "schema")["$ref"]).toBe("#/components/schemas/ChatCompletion")
      const sse = at(content, "text/event-stream", "schema")
      expect(sse["type"]).toBe("string")
      expect(String(sse["description"])).toContain("[DONE]")
    }))

  it.scopedLive("documents 400 as OpenAI's error envelope everywhere (Anthropic's on the Messages endpoints), never the framework's decode error", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      for (const [path, method, operation] of operations(spec)) {
        const badRequest = asObject(operation["responses"])["400"]
        if (badRequest === undefined) continue
        const schema = at(badRequest, "content", "application/json", "schema")
        const envelope = path.startsWith("/v1/messages") ? "MessagesErrorResponse" : "ErrorResponse"
        expect({ path, method, schema }).toEqual({ path, method, schema: { $ref: `#/components/schemas/${envelope}` } })
      }
      // every failure of the Messages endpoints is in Anthropic's envelope, their 401 included
      for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
        for (const [status, response] of Object.entries(at(spec, "paths", path, "post", "responses"))) {
          if (status === "200") continue
          const schema = JSON.stringify(at(asObject(response), "content", "application/json", "schema"))
          expect({ path, status, anthropic: schema.includes('"#/components/schemas/MessagesErrorResponse"'), openAi: schema.includes("/ErrorResponse\"") }).toEqual({
            path,
            status,
            anthropic: true,
            openAi: false
          })
        }
      }
      const messagesEnvelope = at(spec, "components", "schemas", "MessagesErrorResponse")
      expect(messagesEnvelope["required"]).toEqual(["type", "error"])
      expect(Object.keys(at(spec, "paths", "/v1/messages", "post", "responses", "200", "content")).sort()).toEqual(["application/json", "text/event-stream"])
      expect(at(spec, "paths", "/v1/chat/completions", "post", "responses")["400"]).toBeDefined()
      const envelope = at(spec, "components", "schemas", "ErrorResponse")
      expect(envelope["required"]).toEqual(["error"])
      const error = at(envelope, "properties", "error")
      expect(error["required"]).toEqual(["message", "type", "param", "code"])
      expect(at(error, "properties", "param")["type"]).toEqual(["string", "null"])
      expect(at(error, "properties", "code")["type"]).toEqual(["string", "null"])
      const schemas = Object.keys(at(spec, "components", "schemas"))
      expect(schemas).not.toContain("HttpApiDecodeError")
      expect(schemas).not.toContain("Issue")
      expect(JSON.stringify(spec)).not.toContain("HttpApiDecodeError")
    }))

  it.scopedLive("documents every failure status of the chat and embeddings endpoints", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      for (const path of ["/v1/chat/completions", "/v1/embeddings"]) {
        const responses = at(spec, "paths", path, "post", "responses")
        expect({ path, statuses: Object.keys(responses).sort() }).toEqual({ path, statuses: ["200", "400", "401", "404", "411", "413", "429", "500", "502", "503", "504"] })
      }
      const embeddings = at(spec, "paths", "/v1/embeddings", "post")
      expect(at(embeddings, "requestBody", "content", "application/json", "schema")["$ref"]).toBe("#/components/schemas/CreateEmbeddingRequest")
      expect(at(embeddings, "responses", "200", "content", "application/json", "schema")["$ref"]).toBe("#/components/schemas/CreateEmbeddingResponse")
      expect(String(at(embeddings, "responses", "400")["description"])).toContain("cannot embed")
      // input's four shapes are documented, not left as an opaque declaration
      const inputProperty = at(spec, "components", "schemas", "CreateEmbeddingRequest", "properties", "input")
      const ref = inputProperty["$ref"]
      const input = JSON.stringify(typeof ref === "string" ? at(spec, ...ref.replace(/^#\//, "").split("/")) : inputProperty)
      expect(input).toContain("anyOf")
      expect(input).toContain("2048")
    }))

  it.scopedLive("declares the header key, bearer and x-api-key schemes, required on all but /health and /ready", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      const schemes = at(spec, "components", "securitySchemes")
      expect(schemes["internalKey"]).toEqual({ type: "apiKey", name: "x-internal-auth", in: "header" })
      expect(schemes["bearer"]).toEqual({ type: "http", scheme: "bearer" })
      expect(schemes["apiKey"]).toEqual({ type: "apiKey", name: "x-api-key", in: "header" })
      for (const [path, method, operation] of operations(spec)) {
        const expected =
          path === "/health" || path === "/ready"
            ? []
            : path.startsWith("/v1/messages")
              ? [{ apiKey: [] }, { bearer: [] }, { internalKey: [] }]
              : [{ internalKey: [] }, { bearer: [] }, { apiKey: [] }]
        expect({ path, method, security: operation["security"] }).toEqual({ path, method, security: expected })
      }
      // a 401 is documented wherever a key is required
      for (const [path, , operation] of operations(spec)) {
        if (path !== "/health" && path !== "/ready") expect(asObject(operation["responses"])["401"]).toBeDefined()
      }
    }))

  it.scopedLive("does not forbid the unknown fields the gateway forwards", () =>
    Effect.gen(function* () {
      const { spec } = yield* loadSpec
      const request = at(spec, "components", "schemas", "ChatCompletionRequest")
      expect(request["additionalProperties"]).not.toBe(false)
      expect(at(spec, "components", "schemas", "UserMessage")["additionalProperties"]).not.toBe(false)
    }))

  it.scopedLive("describes the gateway's real answers (validated with the document's own schemas)", () =>
    Effect.gen(function* () {
      const { gateway, spec } = yield* loadSpec
      const Ajv2020 = Ajv2020Module.default
      const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
      const id = "https://llm-proxy.test/openapi.json"
      // Effect marks every Schema.Unknown with `$id: "/schemas/unknown"`: the same $id at several places is
      // ambiguous to a JSON Schema validator, so drop those markers (they carry no constraint).
      const withoutUnknownIds = (node: unknown): unknown =>
        Array.isArray(node)
          ? node.map(withoutUnknownIds)
          : typeof node === "object" && node !== null
            ? Object.fromEntries(
                Object.entries(node)
                  .filter(([key, value]) => !(key === "$id" && value === "/schemas/unknown"))
                  .map(([key, value]) => [key, withoutUnknownIds(value)])
              )
            : node
      ajv.addSchema({ ...asObject(withoutUnknownIds(spec)), $id: id }, id)
      const check = (schema: string, value: unknown) => {
        const validate = ajv.compile({ $ref: `${id}#/components/schemas/${schema}` })
        const valid = validate(value)
        expect({ schema, valid, errors: validate.errors ?? null }).toEqual({ schema, valid: true, errors: null })
      }
      const json = (text: string): unknown => JSON.parse(text)
      const withKey = { ...gateway.auth, "content-type": "application/json" }

      const health = yield* fetchText(gateway, "/health")
      check("HealthStatus", json(health.text))
      check("ListModelsResponse", json((yield* fetchText(gateway, "/v1/models", { headers: withKey })).text))
      check("Model", json((yield* fetchText(gateway, "/v1/models/mock", { headers: withKey })).text))
      check("LlmModelList", json((yield* fetchText(gateway, "/v1/llm/models", { headers: withKey })).text))
      const request = {
        model: "mock",
        messages: [{ role: "user", content: "check the contract", vendor_extra: 1 }],
        top_k: 3,
        stream_options: { include_usage: true, vendor_option: true }
      }
      check("ChatCompletionRequest", request)
      const completion = yield* fetchText(gateway, "/v1/chat/completions", { method: "POST", headers: withKey, body: JSON.stringify(request) })
      expect(completion.status).toBe(200)
      check("ChatCompletion", json(completion.text))
      const invalid = yield* fetchText(gateway, "/v1/chat/completions", { method: "POST", headers: withKey, body: "{" })
      expect(invalid.status).toBe(400)
      check("ErrorResponse", json(invalid.text))
      const embeddingRequest = { model: "mock", input: ["check", "the contract"], dimensions: 8, vendor_extra: true }
      check("CreateEmbeddingRequest", embeddingRequest)
      check("CreateEmbeddingRequest", { model: "mock", input: [[1, 2], [3]], encoding_format: "base64" })
      for (const encoding_format of ["float", "base64"]) {
        const embeddings = yield* fetchText(gateway, "/v1/embeddings", { method: "POST", headers: withKey, body: JSON.stringify({ ...embeddingRequest, encoding_format }) })
        expect(embeddings.status).toBe(200)
        check("CreateEmbeddingResponse", json(embeddings.text))
      }
      const badEmbedding = yield* fetchText(gateway, "/v1/embeddings", { method: "POST", headers: withKey, body: JSON.stringify({ model: "mock", input: [] }) })
      expect(badEmbedding.status).toBe(400)
      check("ErrorResponse", json(badEmbedding.text))
      const unauthorized = yield* fetchText(gateway, "/v1/models")
      expect(unauthorized.status).toBe(401)
      check("ErrorResponse", json(unauthorized.text))
    }))
})

describe("GET /docs", () => {
  it.scopedLive("serves the HTML docs page without a key", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const docs = yield* fetchText(gateway, "/docs")
      expect(docs.status).toBe(200)
      expect(docs.contentType).toContain("text/html")
      expect(docs.text.trimStart().toLowerCase()).toMatch(/^<!doctype html>/)
      expect(docs.text).toContain("<title>llm-proxy</title>")
      expect(docs.text).toContain("/v1/chat/completions")
    }))
})

describe("GET /docs page", () => {
  it.scopedLive("embeds the served OpenAPI document and loads the Scalar bundle from the gateway itself, not a CDN or an inlined copy", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const docs = yield* fetchText(gateway, "/docs")
      const served = yield* fetchText(gateway, "/openapi.json")
      const embedded = /<script id="api-reference" type="application\/json"[^>]*>(.*?)<\/script>/s.exec(docs.text)?.[1]
      expect(embedded).toBeDefined()
      expect(JSON.parse(embedded ?? "null")).toEqual(JSON.parse(served.text))
      // the package is installed (a devDependency): the page loads its bundle from the gateway's own versioned URL
      expect(scalarBundle?.version).toBe("1.39.3")
      const scripts = [...docs.text.matchAll(/<script[^>]*\ssrc="([^"]*)"/g)].map((match) => match[1])
      expect(scripts).toEqual([`/docs/scalar-api-reference-${scalarBundle?.version}.js`])
      expect(docs.text).not.toMatch(/https?:\/\//)
      // the page stays small: the ~3 MB bundle is a separate, cacheable file
      expect(docs.text.length).toBeLessThan(200_000)
    }))
})
