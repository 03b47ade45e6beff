/**
 * POST /v1/responses, GET and DELETE /v1/responses/{id} end to end over real sockets, with the official openai SDK
 * as the client, on both mounts: against the mock, a fake OpenAI-compatible chat upstream, a fake Anthropic and a
 * fake Gemini upstream (translated), and a fake native Responses upstream (`api: responses`: the body and the answer
 * passed through); `responses.create`, `responses.stream(...).finalResponse()`, function tool round trips with
 * `previous_response_id` and with the input replayed, `text.format` json_schema, a chain of turns, retrieve and
 * delete, another key's 404, a fallback from a native deployment to a translated one, a failure after the stream
 * began. Every response object and every event the tests see is checked against OpenAI's published schema.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI from "openai"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { Anthropic, deploymentOf, Gemini, hang, OpenAi, registryFromDocument, resetAfter, Responses, sse, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply, Script, UpstreamCall } from "../support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { Mount } from "../support/Gateway.js"
import { call, postRaw, readThenAbort as readStreamThenAbort } from "../support/Http.js"
import { expectCreateResponseConforms, expectResponseConforms, expectResponseEventConforms } from "../support/ResponsesSpec.js"
import { attempt } from "../support/Sdk.js"

const otherSecret = `sk-llmp-other-${"z".repeat(24)}`

const sdk = (baseUrl: string, apiKey = testKey) => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0, timeout: 20_000 })

/** Scripts that answer JSON or a stream, as the call asks. */
const byStream = (unary: Reply, streamed: Reply) => (call: UpstreamCall) => (call.stream ? streamed : unary)

interface Upstreams {
  readonly openai: FakeUpstream
  readonly anthropic: FakeUpstream
  readonly gemini: FakeUpstream
  readonly native: FakeUpstream
  readonly broken: FakeUpstream
}

/**
 * A gateway over the mock, a chat upstream (`gpt`), Anthropic (`claude`), Gemini (`gemini`), a native Responses
 * upstream (`native`) and a native one that always fails (`native-broken`, falling back to `gpt`).
 */
const gatewayOver = (mount: Mount, openaiScript?: Script, nativeScript?: Script) =>
  Effect.gen(function* () {
    const openai = yield* startUpstream("openai", openaiScript ?? byStream(OpenAi.completion({ content: "Hello from gpt" }), OpenAi.stream(["Hello", " from", " gpt"])))
    const anthropic = yield* startUpstream("anthropic", byStream(Anthropic.message([{ type: "text", text: "from claude" }]), Anthropic.recordedStream("basic_response.txt")))
    const gemini = yield* startUpstream("gemini", byStream(Gemini.googleAiUnary("unary-success-basic-reply-short.json"), Gemini.googleAiStream("streaming-success-basic-reply-short.txt")))
    const native = yield* startUpstream("openai", nativeScript ?? byStream(Responses.response("Hi there"), Responses.stream(["Hi", " there"])))
    const broken = yield* startUpstream("openai", [OpenAi.error(500, "native upstream down", { type: "server_error" })])
    const gateway = yield* startGateway({
      mount,
      registry: registryFromDocument({
        models: [
          { name: "mock", provider: "mock" },
          deploymentOf("gpt", openai, { model: "gpt-4.1" }),
          deploymentOf("claude", anthropic, { model: "claude-sonnet-4-5" }),
          deploymentOf("gemini", gemini, { model: "gemini-2.5-flash" }),
          deploymentOf("native", native, { model: "gpt-4.1", api: "responses" }),
          deploymentOf("native-broken", broken, { model: "gpt-4.1", api: "responses", fallbacks: ["gpt"] })
        ],
        keys: [{ id: "other", key_sha256: sha256Hex(otherSecret) }],
        settings: { retry: { max_retries: 0, initial_delay_ms: 1, max_delay_ms: 1 } }
      })
    })
    return { gateway, upstreams: { openai, anthropic, gemini, native, broken } satisfies Upstreams }
  })

/** Streams a request with the SDK's helper, checks every event against the schema, and returns the final response. */
const streamed = (client: OpenAI, params: Parameters<OpenAI["responses"]["stream"]>[0]) =>
  attempt(async () => {
    const stream = client.responses.stream(params)
    const events: Array<OpenAI.Responses.ResponseStreamEvent> = []
    stream.on("event", (event) => events.push(event))
    const final = await stream.finalResponse()
    return { events, final }
  })

const eventTypes = (events: ReadonlyArray<{ readonly type: string }>) => events.map((event) => event.type)

describe.each(mounts)("Responses API through the gateway, %s mount", (mount) => {
  it.scopedLive("responses.create and responses.stream against every kind of deployment, each answer and event as OpenAI's schema has it", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver(mount)
      const client = sdk(gateway.baseUrl)
      for (const model of ["mock", "gpt", "claude", "gemini", "native"]) {
        const created = yield* attempt(() => client.responses.create({ model, input: "Say hello to the gateway", store: false }))
        expectResponseConforms(created)
        expect(created.model).toBe(model)
        expect(created.status).toBe("completed")
        expect(created.output_text.length).toBeGreaterThan(0)
        expect(created.id).toMatch(/^resp_/)
        const { events, final } = yield* streamed(client, { model, input: "Say hello to the gateway", store: false })
        for (const event of events) expectResponseEventConforms(event)
        expectResponseConforms(final)
        expect(final.model).toBe(model)
        expect(final.status).toBe("completed")
        expect(final.output_text.length).toBeGreaterThan(0)
        expect(eventTypes(events).slice(0, 2)).toEqual(["response.created", "response.in_progress"])
        expect(eventTypes(events).at(-1)).toBe("response.completed")
        expect(eventTypes(events)).toContain("response.output_text.delta")
        expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, index) => index))
      }
      expect(upstreams.openai.calls.map((call) => call.path)).toEqual(["/v1/chat/completions", "/v1/chat/completions"])
      // The native upstream got the body as sent, only the model replaced, and its answer came back as sent.
      expect(upstreams.native.calls.map((call) => call.path)).toEqual(["/v1/responses", "/v1/responses"])
      expect(upstreams.native.calls[0]!.json).toMatchObject({ model: "gpt-4.1", input: "Say hello to the gateway", store: false })
      for (const upstreamCall of upstreams.native.calls) expectCreateResponseConforms(upstreamCall.json)
      expect(upstreams.native.calls[1]!.json).toMatchObject({ model: "gpt-4.1", stream: true })
      const native = JSON.parse((yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "native", input: "x", store: false, unknown_field: 1 }))).text) as Record<string, unknown>
      expectResponseConforms(native)
      expect(native["upstream_extra"]).toEqual({ kept: true })
      expect(native["model"]).toBe("native")
      expect(upstreams.native.calls[2]!.json["unknown_field"]).toBe(1)
    }))

  it.scopedLive("a function tool round trip with previous_response_id, a chain of turns, and the same with the input replayed", () =>
    Effect.gen(function* () {
      const tool = { type: "function" as const, name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } }, strict: false }
      const { gateway, upstreams } = yield* gatewayOver(mount, [
        OpenAi.completion({ toolCalls: [{ id: "call_w1", name: "get_weather", arguments: "{\"city\":\"Paris\"}" }] }),
        OpenAi.completion({ content: "It is sunny in Paris." }),
        OpenAi.completion({ content: "You asked about Paris." }),
        OpenAi.completion({ toolCalls: [{ id: "call_w2", name: "get_weather", arguments: "{\"city\":\"Rome\"}" }] }),
        OpenAi.completion({ content: "Rome is warm." })
      ])
      const client = sdk(gateway.baseUrl)
      const first = yield* attempt(() => client.responses.create({ model: "gpt", instructions: "Use tools.", input: "Weather in Paris?", tools: [tool] }))
      expectResponseConforms(first)
      const call = first.output.find((item) => item.type === "function_call")
      expect(call).toMatchObject({ type: "function_call", call_id: "call_w1", name: "get_weather", arguments: "{\"city\":\"Paris\"}" })
      const second = yield* attempt(() =>
        client.responses.create({ model: "gpt", previous_response_id: first.id, input: [{ type: "function_call_output", call_id: "call_w1", output: "sunny" }], tools: [tool] })
      )
      expectResponseConforms(second)
      expect(second.output_text).toBe("It is sunny in Paris.")
      expect(second.previous_response_id).toBe(first.id)
      expect(upstreams.openai.calls[1]!.json["messages"]).toEqual([
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_w1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }] },
        { role: "tool", tool_call_id: "call_w1", content: "sunny" }
      ])
      // A third turn continues the chain: the whole conversation goes upstream.
      const third = yield* attempt(() => client.responses.create({ model: "gpt", previous_response_id: second.id, input: "What did I ask?" }))
      expectResponseConforms(third)
      expect(third.output_text).toBe("You asked about Paris.")
      expect(upstreams.openai.calls[2]!.json["messages"]).toEqual([
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_w1", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }] },
        { role: "tool", tool_call_id: "call_w1", content: "sunny" },
        { role: "assistant", content: "It is sunny in Paris." },
        { role: "user", content: "What did I ask?" }
      ])
      // The same round trip with the whole input replayed by the client, nothing stored.
      const replayFirst = yield* attempt(() => client.responses.create({ model: "gpt", input: "Weather in Rome?", tools: [tool], store: false }))
      expectResponseConforms(replayFirst)
      const replayed = yield* attempt(() =>
        client.responses.create({
          model: "gpt",
          store: false,
          tools: [tool],
          input: [{ role: "user", content: "Weather in Rome?" }, ...(replayFirst.output as Array<OpenAI.Responses.ResponseInputItem>), { type: "function_call_output", call_id: "call_w2", output: "warm" }]
        })
      )
      expectResponseConforms(replayed)
      expect(replayed.output_text).toBe("Rome is warm.")
      expect(upstreams.openai.calls[4]!.json["messages"]).toEqual([
        { role: "user", content: "Weather in Rome?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_w2", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Rome\"}" } }] },
        { role: "tool", tool_call_id: "call_w2", content: "warm" }
      ])
      // store: false kept nothing
      const missing = yield* attempt(() => client.responses.retrieve(replayFirst.id)).pipe(Effect.flip)
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
    }))

  it.scopedLive("text.format json_schema reaches the upstream as response_format and is echoed", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver(mount, [OpenAi.completion({ content: "{\"answer\":42}" })])
      const client = sdk(gateway.baseUrl)
      const schema = { type: "object", properties: { answer: { type: "number" } }, required: ["answer"], additionalProperties: false }
      const response = yield* attempt(() =>
        client.responses.create({ model: "gpt", input: "The answer?", text: { format: { type: "json_schema", name: "answer", schema, strict: true } }, store: false })
      )
      expectResponseConforms(response)
      expect(JSON.parse(response.output_text)).toEqual({ answer: 42 })
      expect(response.text?.format).toMatchObject({ type: "json_schema", name: "answer" })
      expect(upstreams.openai.calls[0]!.json["response_format"]).toEqual({ type: "json_schema", json_schema: { name: "answer", schema, strict: true } })
    }))

  it.scopedLive("retrieve and delete a stored response (a stream is stored once done); another key, an unknown id and a deleted one are 404", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver(mount)
      const client = sdk(gateway.baseUrl)
      const other = sdk(gateway.baseUrl, otherSecret)
      const created = yield* attempt(() => client.responses.create({ model: "mock", input: "keep me" }))
      expectResponseConforms(created)
      const retrieved = yield* attempt(() => client.responses.retrieve(created.id))
      expectResponseConforms(retrieved)
      expect(retrieved).toEqual(created)
      const { final } = yield* streamed(client, { model: "gpt", input: "stream me" })
      const streamedBack = yield* attempt(() => client.responses.retrieve(final.id))
      expectResponseConforms(streamedBack)
      expect(streamedBack.output_text).toBe("Hello from gpt")
      // Another key sees none of them, and cannot continue from them.
      expect(yield* attempt(() => other.responses.retrieve(created.id)).pipe(Effect.flip)).toBeInstanceOf(OpenAI.NotFoundError)
      expect(yield* attempt(() => other.responses.delete(created.id)).pipe(Effect.flip)).toBeInstanceOf(OpenAI.NotFoundError)
      const continued = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "mock", previous_response_id: created.id, input: "more" }), { authorization: `Bearer ${otherSecret}` })
      // OpenAI's answer to an unknown previous response: 400 previous_response_not_found
      expect(continued.status).toBe(400)
      expect(JSON.parse(continued.text)).toEqual({
        error: { message: `Previous response with id '${created.id}' not found.`, type: "invalid_request_error", param: "previous_response_id", code: "previous_response_not_found" }
      })
      // Deleting answers OpenAI's shape; then it is gone.
      const deleted = yield* call(`${gateway.baseUrl}/v1/responses/${created.id}`, { method: "DELETE", headers: { authorization: `Bearer ${testKey}` } })
      expect(deleted.status).toBe(200)
      expect(JSON.parse(deleted.text)).toEqual({ id: created.id, object: "response", deleted: true })
      const gone = yield* call(`${gateway.baseUrl}/v1/responses/${created.id}`, { headers: { authorization: `Bearer ${testKey}` } })
      expect(gone.status).toBe(404)
      expect(JSON.parse(gone.text)).toMatchObject({ error: { type: "invalid_request_error", code: "response_not_found" } })
      const unknown = yield* call(`${gateway.baseUrl}/v1/responses/resp_nope`, { method: "DELETE", headers: { authorization: `Bearer ${testKey}` } })
      expect(unknown.status).toBe(404)
      expect((yield* call(`${gateway.baseUrl}/v1/responses/resp_nope`)).status).toBe(401)
    }))

  it.scopedLive("a native deployment that fails falls back to a translated one; other tool types and bad fields are 400 naming them", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver(mount)
      const client = sdk(gateway.baseUrl)
      const created = yield* attempt(() => client.responses.create({ model: "native-broken", input: "hello", store: false }))
      expectResponseConforms(created)
      expect(created.output_text).toBe("Hello from gpt")
      expect(created.model).toBe("gpt")
      expect(upstreams.broken.calls[0]!.json).toMatchObject({ model: "gpt-4.1", input: "hello" })
      expect(upstreams.broken.calls.map((call) => call.path)).toEqual(["/v1/responses"])
      const { events, final } = yield* streamed(client, { model: "native-broken", input: "hello", store: false })
      for (const event of events) expectResponseEventConforms(event)
      expectResponseConforms(final)
      expect(final.output_text).toBe("Hello from gpt")
      const rawFallback = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "native-broken", input: "hello", store: false }))
      expect(rawFallback.headers.get("x-llm-proxy-model")).toBe("gpt")
      expect(rawFallback.headers.get("x-llm-proxy-attempts")).toBe("2")
      const webSearch = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", input: "x", tools: [{ type: "function", name: "f" }, { type: "web_search" }] }))
      expect(webSearch.status).toBe(400)
      expect(JSON.parse(webSearch.text)).toMatchObject({ error: { type: "invalid_request_error", param: "tools[1].type" } })
      expect(JSON.parse(webSearch.text).error.message).toContain("web_search")
      const badTemperature = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", input: "x", temperature: 9 }))
      expect(badTemperature.status).toBe(400)
      expect(JSON.parse(badTemperature.text)).toMatchObject({ error: { type: "invalid_request_error", param: "temperature" } })
      const unknownModel = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "nope", input: "x" }))
      expect(unknownModel.status).toBe(404)
      expect(JSON.parse(unknownModel.text)).toMatchObject({ error: { code: "model_not_found" } })
      expect(upstreams.openai.calls).toHaveLength(3)
    }))

  it.scopedLive("a failure after the stream began: response.failed, then an error event the SDK raises as an APIError", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver(mount, [resetAfter(OpenAi.streamFrames(["Hel", "lo", " there"]), 2)])
      const client = sdk(gateway.baseUrl)
      const failure = yield* attempt(async () => {
        const stream = client.responses.stream({ model: "gpt", input: "x" })
        const events: Array<OpenAI.Responses.ResponseStreamEvent> = []
        stream.on("event", (event) => events.push(event))
        try {
          await stream.finalResponse()
          return { error: undefined, events }
        } catch (error) {
          return { error, events }
        }
      })
      expect(failure.error).toBeInstanceOf(OpenAI.APIError)
      for (const event of failure.events) expectResponseEventConforms(event)
      expect(eventTypes(failure.events).at(-1)).toBe("response.failed")
      const raw = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "gpt", input: "x", stream: true }))
      const frames = raw.text.split("\n\n").filter((frame) => frame.startsWith("event:"))
      const last = JSON.parse(frames.at(-1)!.split("\n")[1]!.slice(6)) as Record<string, unknown>
      expectResponseEventConforms(last)
      expect(last).toMatchObject({ type: "error", code: "upstream_unavailable", error: { type: "upstream_error" } })
      const previous = JSON.parse(frames.at(-2)!.split("\n")[1]!.slice(6)) as Record<string, unknown>
      expect(previous["type"]).toBe("response.failed")
      expect(last["sequence_number"]).toBe((previous["sequence_number"] as number) + 1)
    }))
  /** Reads a stream request until `text` arrives, then aborts it. */
  const readThenAbort = (baseUrl: string, model: string, text: string) =>
    readStreamThenAbort(`${baseUrl}/v1/responses`, { authorization: `Bearer ${testKey}` }, { model, input: "hi", stream: true }, text)

  it.scopedLive("a client that leaves mid-stream closes the upstream connection, native and translated", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver(
        mount,
        [sse(OpenAi.streamFrames(["one", "two", "three"]).slice(0, 2), { then: "stall" })],
        [sse(Responses.streamFrames(["uno", "dos"]).slice(0, 5), { then: "stall" })]
      )
      yield* readThenAbort(gateway.baseUrl, "native", "uno")
      const [native] = yield* upstreams.native.awaitCalls(1)
      yield* Effect.promise(() => native!.closed).pipe(Effect.timeout("3 seconds"))
      expect(native!.closedByClient).toBe(true)
      yield* readThenAbort(gateway.baseUrl, "gpt", "one")
      const [translated] = yield* upstreams.openai.awaitCalls(1)
      yield* Effect.promise(() => translated!.closed).pipe(Effect.timeout("3 seconds"))
      expect(translated!.closedByClient).toBe(true)
    }))

  it.scopedLive("the request's deadline holds: a native upstream that never answers is a 504, a silent stream too", () =>
    Effect.gen(function* () {
      const silent = yield* startUpstream("openai", (upstreamCall) => (upstreamCall.stream ? sse([], { then: "stall" }) : hang))
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [deploymentOf("native", silent, { api: "responses" })],
          settings: { retry: { max_retries: 0 }, timeouts: { request_ms: 400, first_token_ms: 300 } }
        })
      })
      const started = performance.now()
      const unary = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "native", input: "x" }))
      expect(unary.status).toBe(504)
      expect(JSON.parse(unary.text)).toMatchObject({ error: { type: "timeout_error", code: "upstream_timeout" } })
      const streamedAnswer = yield* postRaw(`${gateway.baseUrl}/v1/responses`, JSON.stringify({ model: "native", input: "x", stream: true }))
      expect(streamedAnswer.status).toBe(504)
      expect(performance.now() - started).toBeLessThan(5000)
    }))
})
