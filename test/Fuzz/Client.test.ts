/**
 * Nothing a client sends takes the gateway down: arbitrary bodies and headers, sent over real sockets to the whole
 * gateway (both mounts: the node:http fast path in front of the HttpApi, and the HttpApi alone), on the chat route
 * and the others. Every answer is a 2xx (a spec-valid chat.completion, or an SSE stream of spec-valid chunks ending
 * in [DONE]) or a 4xx in OpenAI's exact envelope; never a 5xx, never a dropped connection; and the gateway still
 * answers /health afterwards. Malformed framing (bare LF, TE+CL, huge headers…) is sent byte for byte.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { hugeString, invalidUtf8, jsonText, mutatedJson, nastyString } from "../support/FuzzArbitraries.js"
import { describeOutcome, rawRequest, requestBytes } from "../support/FuzzHttp.js"
import type { RawOutcome } from "../support/FuzzHttp.js"
import { expectAnthropicEnvelope, expectClientChunk, expectClientCompletion, expectEnvelope, fuzzRuns, runsOf } from "../support/FuzzSpec.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { GatewayOptions, Mount } from "../support/Gateway.js"

// ---------------------------------------------------------------------------------------------------------------
// What a client sends

const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }]

/** Valid chat requests covering the shapes the schema knows: what the mutations start from. */
const validRequests: ReadonlyArray<Record<string, unknown>> = [
  { model: "mock", messages: [{ role: "user", content: "Hello gateway" }] },
  {
    model: "mock",
    messages: [{ role: "system", content: "be brief" }, { role: "user", content: [{ type: "text", text: "one two three" }] }],
    stream: true,
    stream_options: { include_usage: true }
  },
  { model: "mock", messages: [{ role: "user", content: "pick one of these" }], n: 3, max_tokens: 2, temperature: 0.5, top_p: 1, stop: ["x"], seed: 1, user: "u" },
  {
    model: "mock",
    messages: [
      { role: "user", content: "weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny" }
    ],
    tools,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    stream: true
  },
  {
    model: "mock",
    messages: [
      { role: "developer", content: [{ type: "text", text: "x" }] },
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } },
          { type: "input_audio", input_audio: { data: "AAA", format: "wav" } },
          { type: "file", file: { file_id: "f" } },
          { type: "text", text: "describe" }
        ]
      }
    ],
    response_format: { type: "json_schema", json_schema: { name: "a", schema: { type: "object" } } },
    logprobs: true,
    top_logprobs: 2,
    frequency_penalty: -2,
    presence_penalty: 2,
    logit_bias: { "50256": -100 },
    parallel_tool_calls: true,
    max_completion_tokens: 5,
    tools,
    tool_choice: "auto",
    top_k: 3
  }
]

const utf8 = (text: string): Uint8Array => Buffer.from(text, "utf8")

/** Request bodies: mostly valid requests with edits anywhere, and every other kind of thing a client could send. */
const chatBodies: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...validRequests).chain((request) => mutatedJson(request)).map((body) => utf8(jsonText(body))) },
  { weight: 3, arbitrary: fc.constantFrom(...validRequests).map((body) => utf8(JSON.stringify(body))) },
  // truncated JSON
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...validRequests), fc.nat()).map(([body, at]) => {
      const text = utf8(JSON.stringify(body))
      return text.subarray(0, at % text.length)
    })
  },
  // invalid UTF-8 bytes somewhere in a valid request (inside strings, between tokens)
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...validRequests), fc.nat(), invalidUtf8).map(([body, at, bytes]) => {
      const text = Buffer.from(JSON.stringify(body))
      const cut = at % text.length
      return Buffer.concat([text.subarray(0, cut), bytes, text.subarray(cut)])
    })
  },
  // an empty body, whitespace, JSON of other shapes, plain text
  { weight: 1, arbitrary: fc.constantFrom("", " ", "\n", "null", "[]", "{}", "\"text\"", "0", "true", "{\"model\":\"mock\"}", "\ufeff{}").map(utf8) },
  { weight: 2, arbitrary: fc.oneof(fc.json(), fc.jsonValue().map((value) => JSON.stringify(value) ?? "null"), nastyString).map(utf8) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }) },
  // deep nesting, as a whole body and inside a message
  {
    weight: 2,
    arbitrary: fc.tuple(fc.integer({ min: 50, max: 20_000 }), fc.boolean(), fc.boolean()).map(([depth, inObjects, inMessage]) => {
      const open = inObjects ? "{\"a\":".repeat(depth) : "[".repeat(depth)
      const close = inObjects ? "}".repeat(depth) : "]".repeat(depth)
      return utf8(inMessage ? `{"model":"mock","messages":[{"role":"user","content":"x","extra":${open}1${close}}]}` : `${open}1${close}`)
    })
  },
  // many messages; duplicated keys (JSON.parse keeps the last); keys that name the prototype
  {
    weight: 1,
    arbitrary: fc.integer({ min: 100, max: 5000 }).map((count) =>
      utf8(JSON.stringify({ model: "mock", messages: Array.from({ length: count }, (_, index) => ({ role: index % 2 === 0 ? "user" : "assistant", content: `m${index}` })) }))
    )
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"model":"mock","model":"mock","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}',
      '{"model":"mock","messages":[{"role":"user","content":"a","role":"bot"}]}',
      '{"model":"mock","stream":true,"stream":false,"messages":[{"role":"user","content":"a"}]}',
      '{"__proto__":{"model":"mock","messages":[{"role":"user","content":"a"}]}}',
      '{"model":"mock","messages":[{"role":"user","content":"a"}],"__proto__":{"stream":true},"constructor":{"prototype":{"stream":true}}}',
      '{"model":"mock","messages":[{"role":"user","content":"a","__proto__":{"role":"system"}}]}',
      '{"model":"mock","messages":{"0":{"role":"user","content":"a"},"length":1}}'
    ).map(utf8)
  },
  // huge strings where a string is expected
  {
    weight: 1,
    arbitrary: hugeString(300_000).map((content) => utf8(JSON.stringify({ model: "mock", messages: [{ role: "user", content }] })))
  },
  {
    weight: 1,
    arbitrary: fc.tuple(hugeString(100_000), fc.constantFrom("model", "user", "name")).map(([text, field]) =>
      utf8(JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x", name: "n" }], [field]: text }))
    )
  }
)

const contentTypes: fc.Arbitrary<string | undefined> = fc.constantFrom(
  "application/json",
  "application/json",
  "application/json; charset=utf-8",
  undefined,
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=xyz",
  "application/xml",
  "",
  "*/*",
  "APPLICATION/JSON",
  "application/json; charset=latin1",
  "application/json, text/plain"
)

type Header = readonly [string, string]

/** How the client says who it is: mostly right (so that bodies are read), sometimes wrong, missing or doubled. */
const authHeaders: fc.Arbitrary<ReadonlyArray<Header>> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom<ReadonlyArray<Header>>([["x-internal-auth", testKey]], [["authorization", `Bearer ${testKey}`]]) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<ReadonlyArray<Header>>(
      [],
      [["x-internal-auth", "wrong"]],
      [["x-internal-auth", testKey], ["x-internal-auth", testKey]],
      [["authorization", `Bearer ${testKey}`], ["authorization", `Bearer ${testKey}`]],
      [["authorization", testKey]],
      [["authorization", "Basic dGVzdDp0ZXN0"]],
      [["authorization", "Bearer "]],
      [["authorization", `bearer     ${testKey}`]],
      [["x-internal-auth", ""]],
      [["x-internal-auth", `${testKey} `]],
      [["x-internal-auth", testKey], ["authorization", "Bearer wrong"]]
    )
  }
)

/** Header values as bytes a client can put on the wire (latin1), CR and LF excepted (framing is tested apart). */
const headerValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("", " ", "x".repeat(4000), "\u00ff\u00fe", "é", "gzip", "br", "chunked", "close", "keep-alive", "upgrade", "websocket", "text/event-stream", "*/*", "100-continue", "\t", "a\u0000b", "\u007f"),
  fc.string({ unit: "binary-ascii", maxLength: 60 }).map((text) => text.replace(/[\r\n]/g, "")),
  nastyString.map((text) => Buffer.from(text, "utf8").toString("latin1").replace(/[\r\n]/g, ""))
)

const headerName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "x-request-id",
    "accept",
    "accept-encoding",
    "content-encoding",
    "user-agent",
    "x-forwarded-for",
    "connection",
    "upgrade",
    "expect",
    "openai-organization",
    "openai-beta",
    "x-stainless-retry-count",
    "cookie",
    "range",
    "if-none-match",
    "te",
    "trailer",
    "host"
  ),
  fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 10 }).map((name) => name.replace(/[\r\n:]/g, "x"))
)

const extraHeaders: fc.Arbitrary<ReadonlyArray<Header>> = fc.array(fc.tuple(headerName, headerValue), { maxLength: 5 })

// ---------------------------------------------------------------------------------------------------------------
// What the gateway must answer

/** The frames of an SSE body as the gateway writes them: `data: <one line>` and a blank line each, nothing else. */
const ssePayloads = (body: string): ReadonlyArray<string> => {
  if (!/^(data: [^\r\n]*\n\n)*$/.test(body)) throw new Error(`an SSE body that is not data frames: ${body.slice(0, 300)}`)
  return body
    .split("\n\n")
    .filter((frame) => frame.length > 0)
    .map((frame) => frame.slice("data: ".length))
}

const headerOf = (outcome: Extract<RawOutcome, { _tag: "Response" }>, name: string): string => outcome.headers[name]?.[0] ?? ""

interface Tally {
  ok: number
  refused: number
}

/**
 * The property every answer to client input must have: a whole HTTP response, a 2xx that is what it claims (a chat
 * answer valid against OpenAI's schema on the chat route) or a 4xx in OpenAI's exact envelope; never a 5xx.
 */
const expectWellAnswered = (outcome: RawOutcome, chat: boolean, tally: Tally, head = false, anthropic = false): void => {
  if (outcome._tag !== "Response") throw new Error(`no answer: ${describeOutcome(outcome)}`)
  const context = describeOutcome(outcome)
  try {
    expect(outcome.status).toBeGreaterThanOrEqual(200)
    expect(outcome.status).toBeLessThan(500)
    expect([200, 204, 400, 401, 404, 405, 408, 411, 413, 417, 431]).toContain(outcome.status)
    const contentType = headerOf(outcome, "content-type")
    const text = outcome.body.toString("utf8")
    if (outcome.status >= 400) {
      tally.refused++
      if (head) return
      expect(contentType).toContain("application/json")
      // Anthropic's Messages API answers in Anthropic's envelope.
      if (anthropic) expectAnthropicEnvelope(text)
      else expectEnvelope(text)
      return
    }
    tally.ok++
    if (head || !chat) return
    if (contentType.includes("text/event-stream")) {
      const payloads = ssePayloads(text)
      expect(payloads.at(-1)).toBe("[DONE]")
      expect(payloads.length).toBeGreaterThan(1)
      for (const payload of payloads.slice(0, -1)) expectClientChunk(JSON.parse(payload))
      return
    }
    expect(contentType).toContain("application/json")
    expectClientCompletion(JSON.parse(text))
  } catch (error) {
    throw new Error(`${String(error)}\nanswer: ${context}`)
  }
}

/** The gateway in the current scope, with its port. */
const gatewayOn = (mount: Mount, settings: GatewayOptions["settings"] = {}) =>
  Effect.map(startGateway({ mount, settings }), (gateway) => ({ ...gateway, port: Number(new URL(gateway.baseUrl).port) }))

/** After a property: the gateway still answers its health check. */
const stillHealthy = (baseUrl: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${baseUrl}/health`)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: "ok" })
  })

const chatRequest = (body: Uint8Array, headers: ReadonlyArray<Header>, path = "/v1/chat/completions"): Buffer =>
  requestBytes(`POST ${path} HTTP/1.1`, [["host", "127.0.0.1"], ...headers, ["content-length", String(body.length)]], body)

const withContentType = (contentType: string | undefined): ReadonlyArray<Header> => (contentType === undefined ? [] : [["content-type", contentType]])

/** Both outcomes were seen (so the property reached the decoder and the answer, not only the refusals). */
const expectBothSeen = (tally: Tally, runs: number) => {
  if (runs < 30) return
  expect(tally.ok).toBeGreaterThan(0)
  expect(tally.refused).toBeGreaterThan(0)
}

for (const mount of mounts) {
  describe(`client input, ${mount} mount`, () => {
    it.scopedLive("any chat body, any content type, any key: a valid 2xx or a 4xx envelope", () =>
      Effect.gen(function* () {
        const gateway = yield* gatewayOn(mount)
        const tally: Tally = { ok: 0, refused: 0 }
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(chatBodies, contentTypes, authHeaders, async (body, contentType, auth) => {
              const outcome = await rawRequest(gateway.port, chatRequest(body, [...withContentType(contentType), ...auth]))
              expectWellAnswered(outcome, true, tally)
            }),
            { numRuns: fuzzRuns }
          )
        )
        expectBothSeen(tally, fuzzRuns)
        yield* stillHealthy(gateway.baseUrl)
      }))

    it.scopedLive("arbitrary and duplicated headers around a valid chat request: a valid 2xx or a 4xx envelope", () =>
      Effect.gen(function* () {
        const gateway = yield* gatewayOn(mount)
        const tally: Tally = { ok: 0, refused: 0 }
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              fc.constantFrom(...validRequests),
              authHeaders,
              extraHeaders,
              fc.boolean(),
              async (request, auth, extra, contentTypeLast) => {
                const body = utf8(JSON.stringify(request))
                const contentType: ReadonlyArray<Header> = [["content-type", "application/json"]]
                const headers = contentTypeLast ? [...auth, ...extra, ...contentType] : [...contentType, ...extra, ...auth]
                const outcome = await rawRequest(gateway.port, chatRequest(body, headers))
                expectWellAnswered(outcome, true, tally)
              }
            ),
            { numRuns: fuzzRuns }
          )
        )
        expectBothSeen(tally, fuzzRuns)
        yield* stillHealthy(gateway.baseUrl)
      }))

    it.scopedLive("any method on any path, with or without a body: a 2xx or a 4xx envelope", () =>
      Effect.gen(function* () {
        const gateway = yield* gatewayOn(mount)
        const tally: Tally = { ok: 0, refused: 0 }
        const paths = fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom("/health", "/v1/models", "/v1/models/mock", "/v1/llm/models", "/v1/chat/completions", "/metrics", "/openapi.json", "/docs") },
          fc.constantFrom(
            "/",
            "*",
            "/v1",
            "/v1/",
            "/v1/models/",
            "//v1/models",
            "/v1/models/%2e%2e",
            "/v1/models/%00",
            "/v1/models/%ZZ",
            "/v1/models/%C3%A9",
            "/v1/models/%ED%A0%80",
            "/v1/models/..%2f..%2fetc%2fpasswd",
            "/v1/chat/completions/",
            "/v1/chat/completions?x=1&x=2",
            "/health?%",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/messages",
            "http://127.0.0.1/v1/models"
          ),
          fc.tuple(fc.constantFrom("/v1/models/", "/v1/", "/", "/v1/chat/completions?"), fc.webSegment()).map(([prefix, segment]) => prefix + segment),
          fc.webPath().map((path) => (path.startsWith("/") ? path : `/${path}`)),
          fc.integer({ min: 1, max: 12_000 }).map((size) => `/v1/models/${"a".repeat(size)}`)
        )
        const methods = fc.oneof(
          { weight: 3, arbitrary: fc.constant("GET") },
          { weight: 1, arbitrary: fc.constant("POST") },
          { weight: 1, arbitrary: fc.constantFrom("PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "CONNECT", "get") }
        )
        const bodies = fc.option(chatBodies, { freq: 2 })
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(methods, paths, bodies, authHeaders, async (method, path, body, auth) => {
              const headers: Array<Header> = [["host", "127.0.0.1"], ...auth]
              if (body !== null) headers.push(["content-type", "application/json"], ["content-length", String(body.length)])
              const outcome = await rawRequest(gateway.port, requestBytes(`${method} ${path} HTTP/1.1`, headers, body ?? new Uint8Array()), { head: method === "HEAD" })
              const route = path.split("?")[0] ?? ""
              const chat = method === "POST" && route === "/v1/chat/completions"
              // Anthropic's envelope from the Messages routes; what Node's parser refuses (a lower-case method) or
              // CONNECT never reaches a route.
              const routed = method !== "CONNECT" && /^[A-Z]+$/.test(method)
              expectWellAnswered(outcome, chat, tally, method === "HEAD", routed && (route === "/v1/messages" || route.startsWith("/v1/messages/")))
            }),
            { numRuns: fuzzRuns }
          )
        )
        expectBothSeen(tally, fuzzRuns)
        yield* stillHealthy(gateway.baseUrl)
      }))

    it.scopedLive("bodies past MAX_BODY_BYTES are refused with 413, however long they say they are", () =>
      Effect.gen(function* () {
        const limit = 1024
        const gateway = yield* gatewayOn(mount, { maxBodyBytes: limit })
        const tally: Tally = { ok: 0, refused: 0 }
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.integer({ min: limit + 1, max: 256 * 1024 }), fc.boolean(), fc.constantFrom("/v1/chat/completions", "/v1/models"), async (size, sendAll, path) => {
              const body = utf8(JSON.stringify({ model: "mock", messages: [{ role: "user", content: "x".repeat(size) }] }))
              const head = requestBytes(`POST ${path} HTTP/1.1`, [["host", "127.0.0.1"], ["x-internal-auth", testKey], ["content-type", "application/json"], ["content-length", String(body.length)]])
              // Sending all of it, or only the head (a client waiting for an early answer).
              const outcome = await rawRequest(gateway.port, sendAll ? Buffer.concat([head, body]) : head)
              expectWellAnswered(outcome, true, tally)
              if (outcome._tag === "Response") expect(outcome.status).toBe(path === "/v1/models" ? 405 : 413)
            }),
            { numRuns: runsOf(0.4) }
          )
        )
        yield* stillHealthy(gateway.baseUrl)
      }))

    it.scopedLive("malformed framing (bare LF, TE+CL, huge or bad headers, broken chunks, truncation) is answered with the envelope", () =>
      Effect.gen(function* () {
        const gateway = yield* gatewayOn(mount)
        const tally: Tally = { ok: 0, refused: 0 }
        const okBody = JSON.stringify(validRequests[0])
        // Each part is well-formed about half the time, so that whole valid requests come through too.
        const requestLines = fc.oneof(
          fc.constantFrom("POST /v1/chat/completions HTTP/1.1", "GET /health HTTP/1.1", "GET /v1/models HTTP/1.1", "POST /v1/chat/completions HTTP/1.0"),
          fc.constantFrom(
          "POST /v1/chat/completions HTTP/2.0",
          "POST /v1/chat/completions HTTP/1.1 extra",
          "POST  /v1/chat/completions  HTTP/1.1",
          "POST /v1/chat/completions",
          "POST http://127.0.0.1/v1/chat/completions HTTP/1.1",
          "POST /v1/chat/comp\u00e9tions HTTP/1.1",
          "P\u00d6ST /v1/chat/completions HTTP/1.1",
          "\u0000\u0001\u0002",
          "GET / HTTP/1.1 GET / HTTP/1.1",
          ""
          )
        )
        type Framing = { readonly lines: ReadonlyArray<string>; readonly body: string }
        const framings: fc.Arbitrary<Framing> = fc.oneof(
          { weight: 30, arbitrary: fc.constant<Framing>({ lines: [`content-length: ${okBody.length}`], body: okBody }) },
          fc.constant<Framing>({ lines: [`content-length: ${okBody.length}`, "transfer-encoding: chunked"], body: `${okBody.length.toString(16)}\r\n${okBody}\r\n0\r\n\r\n` }),
          fc.constant<Framing>({ lines: ["transfer-encoding: chunked"], body: `${okBody.length.toString(16)}\r\n${okBody}\r\n0\r\n\r\n` }),
          fc.constant<Framing>({ lines: ["transfer-encoding: chunked, identity"], body: "0\r\n\r\n" }),
          fc.constant<Framing>({ lines: ["transfer-encoding: chunked"], body: "zz\r\nab\r\n0\r\n\r\n" }),
          fc.constant<Framing>({ lines: ["transfer-encoding: chunked"], body: "ffffffffffffffff\r\nab" }),
          fc.constant<Framing>({ lines: [`content-length: ${okBody.length}`, `content-length: ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: [`content-length: ${okBody.length}, ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: [`content-length: ${okBody.length + 20}`], body: okBody }),
          fc.constant<Framing>({ lines: [`content-length: ${okBody.length - 5}`], body: okBody }),
          fc.constant<Framing>({ lines: ["content-length: -1"], body: okBody }),
          fc.constant<Framing>({ lines: ["content-length: 0x10"], body: okBody }),
          fc.constant<Framing>({ lines: ["content-length: 99999999999999999999999"], body: okBody }),
          fc.constant<Framing>({ lines: [`content-length : ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: [` content-length: ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: ["expect: 100-continue", `content-length: ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: ["expect: 200-ok", `content-length: ${okBody.length}`], body: okBody }),
          fc.constant<Framing>({ lines: ["connection: upgrade", "upgrade: websocket", `content-length: ${okBody.length}`], body: okBody }),
          fc.integer({ min: 8 * 1024, max: 64 * 1024 }).map((size): Framing => ({ lines: [`x-big: ${"a".repeat(size)}`, `content-length: ${okBody.length}`], body: okBody })),
          fc.integer({ min: 100, max: 3000 }).map((count): Framing => ({ lines: [...Array.from({ length: count }, (_, index) => `x-h${index}: v`), `content-length: ${okBody.length}`], body: okBody })),
          fc.tuple(headerName, fc.string({ unit: "binary-ascii", maxLength: 30 })).map(([name, value]): Framing => ({ lines: [`${name}: ${value}`, `content-length: ${okBody.length}`], body: okBody }))
        )
        const endings = fc.oneof({ weight: 6, arbitrary: fc.constant("\r\n") }, { weight: 3, arbitrary: fc.constantFrom("\n", "\r", "\r\r\n", "\n\r") })
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(requestLines, framings, endings, fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }), async (requestLine, framing, ending, truncateAt) => {
              const lines = [requestLine, "host: 127.0.0.1", `x-internal-auth: ${testKey}`, "content-type: application/json", ...framing.lines]
              let bytes = Buffer.concat([Buffer.from(`${lines.join(ending)}${ending}${ending}`, "latin1"), Buffer.from(framing.body, "utf8")])
              if (truncateAt !== null) bytes = bytes.subarray(0, truncateAt % bytes.length)
              // The client is done sending: the gateway must answer what it got, not wait for the rest.
              const outcome = await rawRequest(gateway.port, bytes, { endAfterWrite: true })
              if (outcome._tag === "Closed" && bytes.toString("latin1").trim() === "") return
              expectWellAnswered(outcome, requestLine.startsWith("POST /v1/chat/completions HTTP/1.1"), tally)
              await Effect.runPromise(stillHealthy(gateway.baseUrl))
            }),
            { numRuns: fuzzRuns }
          )
        )
        expectBothSeen(tally, fuzzRuns)
      }))
  })
}
