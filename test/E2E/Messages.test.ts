/**
 * POST /v1/messages and /v1/messages/count_tokens end to end over real sockets, with the official Anthropic SDK as
 * the client (what Claude Code is built on): against the mock, a fake Anthropic upstream (native: the body and the
 * answer passed through, thinking signatures and unknown fields intact), a fake OpenAI-compatible upstream and a fake
 * Gemini upstream (translated, streaming and tools included); errors before and after a stream began; a fallback
 * from an Anthropic deployment to an OpenAI-compatible one; both mounts.
 */
import AnthropicSdk from "@anthropic-ai/sdk"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Anthropic, deploymentOf, Gemini, json, OpenAi, registryFromDocument, sse, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply, UpstreamCall } from "../support/FakeUpstreams.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { Mount } from "../support/Gateway.js"
import { call, postRaw, readThenAbort as readStreamThenAbort } from "../support/Http.js"
import { attempt } from "../support/Sdk.js"

const sdk = (baseUrl: string, apiKey = testKey) => new AnthropicSdk({ baseURL: baseUrl, apiKey, maxRetries: 0, timeout: 20_000 })

const upstreamKey = "sk-ant-upstream-secret-0123456789"

const withUpstreamKey = Effect.acquireRelease(
  Effect.sync(() => {
    process.env["E2E_MESSAGES_KEY"] = upstreamKey
  }),
  () => Effect.sync(() => delete process.env["E2E_MESSAGES_KEY"])
)

interface Upstreams {
  readonly anthropic: FakeUpstream
  readonly openai: FakeUpstream
  readonly gemini: FakeUpstream
}

/** A gateway over a fake Anthropic (`claude`), OpenAI-compatible (`gpt`), Gemini (`gemini`) and the mock. */
const gatewayOver = (scripts: { readonly anthropic?: ReadonlyArray<Reply>; readonly openai?: ReadonlyArray<Reply>; readonly gemini?: ReadonlyArray<Reply> }, mount: Mount, extraModels: ReadonlyArray<Record<string, unknown>> = []) =>
  Effect.gen(function* () {
    yield* withUpstreamKey
    const anthropic = yield* startUpstream("anthropic", scripts.anthropic ?? [Anthropic.message([{ type: "text", text: "from claude" }])])
    const openai = yield* startUpstream("openai", scripts.openai ?? [OpenAi.completion()])
    const gemini = yield* startUpstream("gemini", scripts.gemini ?? [Gemini.googleAiUnary("unary-success-basic-reply-short.json")])
    const gateway = yield* startGateway({
      mount,
      registry: registryFromDocument({
        models: [
          deploymentOf("claude", anthropic, { model: "claude-sonnet-4-5", api_key_env: "E2E_MESSAGES_KEY" }),
          deploymentOf("gpt", openai, { model: "gpt-4.1", api_key_env: "E2E_MESSAGES_KEY" }),
          deploymentOf("gemini", gemini, { model: "gemini-2.5-flash", api_key_env: "E2E_MESSAGES_KEY" }),
          { name: "mock", provider: "mock" },
          ...extraModels
        ],
        settings: { retry: { max_retries: 0, initial_delay_ms: 1, max_delay_ms: 1 } }
      })
    })
    return { gateway, upstreams: { anthropic, openai, gemini } satisfies Upstreams }
  })

const userTurn = (text: string) => ({ role: "user" as const, content: text })

/** Parses an SSE body into its events (name and parsed data). */
const eventsOf = (text: string): ReadonlyArray<{ readonly event: string; readonly data: Record<string, unknown> }> =>
  text
    .split("\n\n")
    .filter((frame) => frame.trim().length > 0)
    .map((frame) => {
      const lines = frame.split("\n")
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? ""
      const data = lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "{}"
      return { event, data: JSON.parse(data) as Record<string, unknown> }
    })

/** A Messages stream is well formed: message_start first and once, blocks one at a time with contiguous indexes, message_stop last. */
const expectWellFormed = (events: ReadonlyArray<{ readonly event: string; readonly data: Record<string, unknown> }>) => {
  const names = events.map((event) => event.event).filter((name) => name !== "ping")
  expect(names[0]).toBe("message_start")
  expect(names.filter((name) => name === "message_start")).toHaveLength(1)
  expect(names.at(-1)).toBe("message_stop")
  expect(names.at(-2)).toBe("message_delta")
  let open: number | undefined
  let next = 0
  for (const { data, event } of events) {
    if (event === "content_block_start") {
      expect(open).toBeUndefined()
      expect(data["index"]).toBe(next)
      open = next++
    } else if (event === "content_block_delta") {
      expect(data["index"]).toBe(open)
    } else if (event === "content_block_stop") {
      expect(data["index"]).toBe(open)
      open = undefined
    }
  }
  expect(open).toBeUndefined()
}

const messagesUrl = (baseUrl: string) => `${baseUrl}/v1/messages`

describe.each(mounts)("POST /v1/messages, %s mount", (mount) => {
  it.scopedLive("the mock: messages.create, messages.stream().finalMessage() and countTokens through the Anthropic SDK", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver({}, mount)
      const client = sdk(gateway.baseUrl)
      const created = yield* attempt(() => client.messages.create({ model: "mock", max_tokens: 100, messages: [userTurn("Hello from the Anthropic SDK")] }))
      expect(created.type).toBe("message")
      expect(created.role).toBe("assistant")
      expect(created.model).toBe("mock")
      expect(created.id).toMatch(/^msg_/)
      expect(created.content).toEqual([{ type: "text", text: "Hello from the Anthropic SDK" }])
      expect(created.stop_reason).toBe("end_turn")
      expect(created.usage.output_tokens).toBeGreaterThan(0)
      const streamed = yield* attempt(() => client.messages.stream({ model: "mock", max_tokens: 100, messages: [userTurn("one two three four")] }).finalMessage())
      expect(streamed.content).toEqual([{ type: "text", text: "one two three four" }])
      expect(streamed.stop_reason).toBe("end_turn")
      expect(streamed.usage.output_tokens).toBeGreaterThan(0)
      // the request's id, as Anthropic's API names it (the SDK surfaces it)
      expect(created._request_id).toMatch(/^[\w.:-]+$/)
      const count = yield* attempt(() => client.messages.countTokens({ model: "mock", messages: [userTurn("How many tokens is this?")] }))
      expect(count.input_tokens).toBeGreaterThan(5)
      // the mock cut short by max_tokens: max_tokens
      const cut = yield* attempt(() => client.messages.create({ model: "mock", max_tokens: 2, messages: [userTurn("one two three four five")] }))
      expect(cut.stop_reason).toBe("max_tokens")
    }))

  it.scopedLive("the stream is Anthropic's event grammar, with the public model, and count_tokens says it is an estimate", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver({}, mount)
      const answer = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "mock", max_tokens: 50, stream: true, messages: [userTurn("a b c")] }), { "x-api-key": testKey })
      expect(answer.status).toBe(200)
      expect(answer.headers.get("content-type")).toContain("text/event-stream")
      expect(answer.headers.get("request-id")).toBe(answer.headers.get("x-request-id"))
      const events = eventsOf(answer.text)
      expectWellFormed(events)
      expect((events[0]!.data["message"] as Record<string, unknown>)["model"]).toBe("mock")
      const counted = yield* postRaw(`${gateway.baseUrl}/v1/messages/count_tokens`, JSON.stringify({ model: "mock", messages: [userTurn("hi")] }), { "x-api-key": testKey })
      expect(counted.status).toBe(200)
      expect(counted.headers.get("x-llm-proxy-token-count")).toBe("estimated")
      expect(Object.keys(JSON.parse(counted.text) as object)).toEqual(["input_tokens"])
    }))

  it.scopedLive("errors are Anthropic's envelope: 401 (x-api-key wrong), 400 naming the field, 404 for an unknown model", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver({}, mount)
      const envelope = (text: string) => JSON.parse(text) as { type: string; error: { type: string; message: string } }
      const unauthorized = yield* call(messagesUrl(gateway.baseUrl), {
        method: "POST",
        headers: { "x-api-key": "wrong", "content-type": "application/json" },
        body: JSON.stringify({ model: "mock", max_tokens: 5, messages: [userTurn("hi")] })
      })
      expect(unauthorized.status).toBe(401)
      expect(envelope(unauthorized.text)).toEqual({ type: "error", error: { type: "authentication_error", message: "Incorrect API key provided" } })
      const missing = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "mock", messages: [userTurn("hi")] }))
      expect(missing.status).toBe(400)
      expect(envelope(missing.text).error.type).toBe("invalid_request_error")
      expect(envelope(missing.text).error.message).toContain("max_tokens")
      const notJson = yield* postRaw(messagesUrl(gateway.baseUrl), "{nope")
      expect(notJson.status).toBe(400)
      expect(envelope(notJson.text).type).toBe("error")
      const unknown = yield* attempt(() => sdk(gateway.baseUrl).messages.create({ model: "nope", max_tokens: 5, messages: [userTurn("hi")] })).pipe(Effect.flip)
      expect(unknown).toBeInstanceOf(AnthropicSdk.NotFoundError)
      expect((unknown as InstanceType<typeof AnthropicSdk.APIError>).error).toMatchObject({ type: "error", error: { type: "not_found_error" } })
      // Bearer (Claude Code's ANTHROPIC_AUTH_TOKEN) works too; other routes keep OpenAI's envelope
      const bearer = new AnthropicSdk({ baseURL: gateway.baseUrl, authToken: testKey, apiKey: null, maxRetries: 0 })
      expect((yield* attempt(() => bearer.messages.create({ model: "mock", max_tokens: 20, messages: [userTurn("ok")] }))).content).toEqual([{ type: "text", text: "ok" }])
      const chat401 = yield* call(`${gateway.baseUrl}/v1/chat/completions`, { method: "POST", headers: { "x-api-key": "wrong", "content-type": "application/json" }, body: "{}" })
      expect(JSON.parse(chat401.text)).toMatchObject({ error: { code: "invalid_api_key" } })
      // an unknown /v1/ route names the Messages endpoints among those served
      const lost = yield* call(`${gateway.baseUrl}/v1/messagez`, { method: "POST", headers: { "x-api-key": testKey, "content-type": "application/json" }, body: "{}" })
      expect(lost.status).toBe(404)
      expect(JSON.parse(lost.text)).toMatchObject({ error: { code: "unknown_url" } })
      expect(lost.text).toContain("POST /v1/messages, POST /v1/messages/count_tokens")
    }))

  it.scopedLive("native to Anthropic: the body goes as sent (model replaced, thinking signatures and unknown fields intact), the answer comes back as sent", () =>
    Effect.gen(function* () {
      const upstreamMessage = {
        id: "msg_upstream_1",
        type: "message",
        role: "assistant",
        model: "claude-sonnet-4-5",
        content: [
          { type: "thinking", thinking: "Let me think.", signature: "EqQBCkYIBxgCKkD/sig==" },
          { type: "text", text: "Forty-two.", citations: null },
          { type: "server_tool_use", id: "srvtoolu_1", name: "web_search", input: { query: "x" } }
        ],
        stop_reason: "end_turn",
        stop_sequence: null,
        usage: { input_tokens: 20, output_tokens: 7, cache_creation_input_tokens: 3, cache_read_input_tokens: 100, service_tier: "standard" },
        container: null,
        future_field: { nested: [1, 2, 3] }
      }
      const { gateway, upstreams } = yield* gatewayOver({ anthropic: [json(upstreamMessage)] }, mount)
      const request = {
        model: "claude",
        max_tokens: 2048,
        system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
        thinking: { type: "enabled", budget_tokens: 1024 },
        tools: [{ type: "web_search_20250305", name: "web_search", max_uses: 2 }],
        messages: [
          userTurn("What is the answer?"),
          {
            role: "assistant",
            content: [
              { type: "thinking", thinking: "Earlier thought.", signature: "c2lnbmF0dXJlIGJ5dGVz+/==" },
              { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix/LafPsn4a" },
              { type: "text", text: "Thinking..." }
            ]
          },
          { role: "user", content: [{ type: "text", text: "Go on", cache_control: { type: "ephemeral", ttl: "1h" } }] }
        ],
        metadata: { user_id: "u-1" },
        some_future_parameter: { enabled: true }
      }
      const answer = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify(request), {
        "x-api-key": testKey,
        authorization: "",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
      })
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.text)).toEqual({ ...upstreamMessage, model: "claude" })
      expect(answer.headers.get("x-llm-proxy-provider")).toBe("anthropic")
      const [forwarded] = yield* upstreams.anthropic.awaitCalls(1)
      expect(forwarded!.path).toBe("/v1/messages")
      expect(forwarded!.body).toEqual({ ...request, model: "claude-sonnet-4-5" })
      // the signed blocks byte for byte
      const sent = JSON.stringify((forwarded!.body as typeof request).messages[1])
      expect(sent).toBe(JSON.stringify(request.messages[1]))
      expect(forwarded!.headers["x-api-key"]).toBe(upstreamKey)
      expect(forwarded!.headers["anthropic-version"]).toBe("2023-06-01")
      expect(forwarded!.headers["anthropic-beta"]).toBe("interleaved-thinking-2025-05-14,context-1m-2025-08-07")
      expect(forwarded!.headerValues).not.toContain(testKey)
      expect(forwarded!.headerValues.join(" ")).not.toContain(testKey)
    }))

  it.scopedLive("native stream: Anthropic's events passed through (model renamed), the SDK's finalMessage, thinking with its signature", () =>
    Effect.gen(function* () {
      const frames = [
        `event: message_start\ndata: {"type":"message_start","message":{"id":"msg_t","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":4}}}\n\n`,
        `event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n`,
        `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm."}}\n\n`,
        `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBsig=="}}\n\n`,
        `event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n`,
        `event: ping\ndata: {"type": "ping"}\n\n`,
        ...Anthropic.recordedStreamFrames("basic_response.txt").slice(1).map((frame) => frame.replace('"index":0', '"index":1'))
      ]
      const { gateway, upstreams } = yield* gatewayOver({ anthropic: [sse(frames)] }, mount)
      const final = yield* attempt(() =>
        sdk(gateway.baseUrl)
          .messages.stream({ model: "claude", max_tokens: 2048, thinking: { type: "enabled", budget_tokens: 1024 }, messages: [userTurn("hi")] }, { headers: { "anthropic-beta": "interleaved-thinking-2025-05-14" } })
          .finalMessage()
      )
      expect(final.model).toBe("claude")
      expect(final.content).toEqual([
        { type: "thinking", thinking: "Hmm.", signature: "EqQBsig==" },
        { type: "text", text: "Hello there!" }
      ])
      expect(final.stop_reason).toBe("end_turn")
      const [forwarded] = yield* upstreams.anthropic.awaitCalls(1)
      expect(forwarded!.json["stream"]).toBe(true)
      expect(forwarded!.headers["anthropic-beta"]).toBe("interleaved-thinking-2025-05-14")
      // raw: every upstream event relayed unchanged but for message_start's model
      const raw = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 10, stream: true, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      const relayed = eventsOf(raw.text)
      const sentByUpstream = eventsOf(frames.join(""))
      expect(relayed.map((event) => event.event)).toEqual(sentByUpstream.map((event) => event.event))
      expect(relayed.slice(1)).toEqual(sentByUpstream.slice(1))
      expect(relayed[0]!.data).toEqual({ ...sentByUpstream[0]!.data, message: { ...(sentByUpstream[0]!.data["message"] as object), model: "claude" } })
    }))

  it.scopedLive("native stream of recorded Anthropic tool use: relayed event for event, the SDK's finalMessage has the parsed input", () =>
    Effect.gen(function* () {
      const frames = Anthropic.recordedStreamFrames("tool_use_response.txt")
      const { gateway } = yield* gatewayOver({ anthropic: [sse(frames)] }, mount)
      const final = yield* attempt(() => sdk(gateway.baseUrl).messages.stream({ model: "claude", max_tokens: 300, messages: [userTurn("weather?")] }).finalMessage())
      const toolUse = final.content.find((block) => block.type === "tool_use")
      expect(toolUse).toMatchObject({ type: "tool_use", id: "toolu_01NRLabsLyVHZPKxbKvkfSMn", name: "get_weather" })
      expect(typeof (toolUse as { input: unknown }).input).toBe("object")
      expect(final.stop_reason).toBe("tool_use")
      const raw = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 300, stream: true, messages: [userTurn("weather?")] }), { "x-api-key": testKey })
      const relayed = eventsOf(raw.text)
      const sent = eventsOf(frames.join(""))
      expect(relayed.slice(1)).toEqual(sent.slice(1))
      expectWellFormed(relayed)
    }))

  it.scopedLive("native errors: before the stream an Anthropic 529 stays a 529 overloaded_error; after it began, an error event the SDK raises", () =>
    Effect.gen(function* () {
      const started = Anthropic.recordedStreamFrames("basic_response.txt").slice(0, 3)
      const { gateway } = yield* gatewayOver(
        {
          anthropic: [
            Anthropic.error(529, "overloaded_error", "Overloaded"),
            sse([...started, `event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded mid-stream"}}\n\n`])
          ]
        },
        mount
      )
      const client = sdk(gateway.baseUrl)
      const before = yield* attempt(() => client.messages.create({ model: "claude", max_tokens: 5, messages: [userTurn("hi")] })).pipe(Effect.flip)
      expect(before).toBeInstanceOf(AnthropicSdk.APIError)
      expect((before as InstanceType<typeof AnthropicSdk.APIError>).status).toBe(529)
      expect((before as InstanceType<typeof AnthropicSdk.APIError>).error).toMatchObject({ type: "error", error: { type: "overloaded_error" } })
      const after = yield* attempt(() => client.messages.stream({ model: "claude", max_tokens: 5, messages: [userTurn("hi")] }).finalMessage()).pipe(Effect.flip)
      expect(String(after)).toContain("Overloaded mid-stream")
    }))

  it.scopedLive("native count_tokens: Anthropic's own count, from its /v1/messages/count_tokens", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver({ anthropic: [json({ input_tokens: 4242 })] }, mount)
      const count = yield* attempt(() => sdk(gateway.baseUrl).messages.countTokens({ model: "claude", messages: [userTurn("count me")], system: "sys" }))
      expect(count.input_tokens).toBe(4242)
      const [forwarded] = yield* upstreams.anthropic.awaitCalls(1)
      expect(forwarded!.path).toBe("/v1/messages/count_tokens")
      expect(forwarded!.body).toEqual({ model: "claude-sonnet-4-5", messages: [userTurn("count me")], system: "sys" })
      const raw = yield* postRaw(`${gateway.baseUrl}/v1/messages/count_tokens`, JSON.stringify({ model: "claude", messages: [userTurn("x")] }), { "x-api-key": testKey })
      expect(raw.headers.get("x-llm-proxy-token-count")).toBe("upstream")
    }))

  it.scopedLive("translated to OpenAI-compatible: a two-turn tool-use round trip with the SDK's tool_use and tool_result blocks", () =>
    Effect.gen(function* () {
      const { gateway, upstreams } = yield* gatewayOver(
        {
          openai: [
            OpenAi.completion({ toolCalls: [{ id: "call_weather_1", name: "get_weather", arguments: '{"city":"Paris"}' }], usage: { prompt_tokens: 30, completion_tokens: 9, total_tokens: 39 } }),
            OpenAi.completion({ content: "It is sunny in Paris." })
          ]
        },
        mount
      )
      const client = sdk(gateway.baseUrl)
      const tools = [{ name: "get_weather", description: "Weather of a city", input_schema: { type: "object" as const, properties: { city: { type: "string" } }, required: ["city"] } }]
      const first = yield* attempt(() =>
        client.messages.create({
          model: "gpt",
          max_tokens: 300,
          system: "You help.",
          tools,
          tool_choice: { type: "any", disable_parallel_tool_use: true },
          stop_sequences: ["STOP"],
          metadata: { user_id: "user-7" },
          messages: [userTurn("Weather in Paris?")]
        })
      )
      expect(first.stop_reason).toBe("tool_use")
      expect(first.content).toEqual([{ type: "tool_use", id: "call_weather_1", name: "get_weather", input: { city: "Paris" } }])
      expect(first.usage).toMatchObject({ input_tokens: 30, output_tokens: 9 })
      const [translated] = yield* upstreams.openai.awaitCalls(1)
      expect(translated!.json).toMatchObject({
        model: "gpt-4.1",
        messages: [
          { role: "system", content: "You help." },
          { role: "user", content: "Weather in Paris?" }
        ],
        tools: [{ type: "function", function: { name: "get_weather", description: "Weather of a city", parameters: tools[0]!.input_schema } }],
        tool_choice: "required",
        parallel_tool_calls: false,
        max_completion_tokens: 300,
        stop: ["STOP"],
        user: "user-7"
      })
      const second = yield* attempt(() =>
        client.messages.create({
          model: "gpt",
          max_tokens: 300,
          tools,
          messages: [
            userTurn("Weather in Paris?"),
            { role: "assistant", content: first.content },
            { role: "user", content: [{ type: "tool_result", tool_use_id: "call_weather_1", content: [{ type: "text", text: "sunny, 24C" }] }, { type: "text", text: "Summarise." }] }
          ]
        })
      )
      expect(second.content).toEqual([{ type: "text", text: "It is sunny in Paris." }])
      expect(second.stop_reason).toBe("end_turn")
      const calls = yield* upstreams.openai.awaitCalls(2)
      expect(calls[1]!.json["messages"]).toEqual([
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_weather_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
        { role: "tool", tool_call_id: "call_weather_1", content: "sunny, 24C" },
        { role: "user", content: "Summarise." }
      ])
      expect(calls.every((upstreamCall: UpstreamCall) => upstreamCall.headers["authorization"] === `Bearer ${upstreamKey}`)).toBe(true)
    }))

  it.scopedLive("thinking and top_k to a model that refuses them: asked again without each, streamed or not", () =>
    Effect.gen(function* () {
      const refusedEffort = OpenAi.error(400, "Unsupported parameter: 'reasoning_effort' is not supported with this model.", { param: "reasoning_effort", code: "unsupported_parameter" })
      const refusedTopK = OpenAi.error(400, "Unrecognized request argument supplied: top_k", { param: null })
      const { gateway, upstreams } = yield* gatewayOver({ openai: [refusedEffort, refusedTopK, OpenAi.completion({ content: "no thinking here" })] }, mount)
      const body = { model: "gpt", max_tokens: 4000, top_k: 5, thinking: { type: "enabled", budget_tokens: 2048 }, messages: [userTurn("hi")] }
      const answer = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify(body), { "x-api-key": testKey })
      expect(answer.status).toBe(200)
      expect((JSON.parse(answer.text) as { content: unknown }).content).toEqual([{ type: "text", text: "no thinking here" }])
      const calls = yield* upstreams.openai.awaitCalls(3)
      expect(calls[0]!.json).toMatchObject({ reasoning_effort: "low", top_k: 5 })
      expect(calls[1]!.json).not.toHaveProperty("reasoning_effort")
      expect(calls[1]!.json["top_k"]).toBe(5)
      expect(calls[2]!.json).not.toHaveProperty("top_k")
      // a refusal of anything else is the client's answer, as it was
      upstreams.openai.setScript([OpenAi.error(400, "messages: bad", { param: "messages" })])
      const refused = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ ...body, stream: true }), { "x-api-key": testKey })
      expect(refused.status).toBe(400)
      expect(upstreams.openai.calls).toHaveLength(4)
    }))

  it.scopedLive("translated streams: text and tool calls as well-formed Messages events; the SDK's finalMessage parses the tool input", () =>
    Effect.gen(function* () {
      const base = { id: "chatcmpl-s", object: "chat.completion.chunk", created: 1, model: "gpt-4.1" }
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
      const frames = [
        chunk({ role: "assistant", content: "" }),
        chunk({ reasoning_content: "Thinking about it." }),
        chunk({ content: "Let me check." }),
        chunk({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "lookup", arguments: "" } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] }),
        chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "lookup", arguments: '{"q":"y"}' } }] }),
        chunk({}, "tool_calls"),
        `data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 40, completion_tokens: 12, total_tokens: 52, prompt_tokens_details: { cached_tokens: 10 } } })}\n\n`,
        "data: [DONE]\n\n"
      ]
      const { gateway, upstreams } = yield* gatewayOver({ openai: [sse(frames)] }, mount)
      const final = yield* attempt(() => sdk(gateway.baseUrl).messages.stream({ model: "gpt", max_tokens: 100, messages: [userTurn("look it up")] }).finalMessage())
      expect(final.content).toEqual([
        { type: "thinking", thinking: "Thinking about it.", signature: "" },
        { type: "text", text: "Let me check." },
        { type: "tool_use", id: "call_a", name: "lookup", input: { q: "x" } },
        { type: "tool_use", id: "call_b", name: "lookup", input: { q: "y" } }
      ])
      expect(final.stop_reason).toBe("tool_use")
      expect(final.usage).toMatchObject({ input_tokens: 30, output_tokens: 12, cache_read_input_tokens: 10 })
      const [sent] = yield* upstreams.openai.awaitCalls(1)
      expect(sent!.json).toMatchObject({ stream: true, stream_options: { include_usage: true } })
      upstreams.openai.setScript([sse(frames)])
      const raw = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "gpt", max_tokens: 100, stream: true, messages: [userTurn("again")] }), { "x-api-key": testKey })
      const events = eventsOf(raw.text)
      expectWellFormed(events)
      expect(events.filter((event) => event.event === "content_block_start").map((event) => (event.data["content_block"] as { type: string }).type)).toEqual(["thinking", "text", "tool_use", "tool_use"])
    }))

  it.scopedLive("translated errors: an upstream 400 before the stream is a 400 invalid_request_error; a reset after it began is an error event", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver(
        { openai: [OpenAi.error(400, "This model's maximum context length is exceeded", { code: "context_length_exceeded" }), sse(OpenAi.streamFrames(["a", "b", "c"]).slice(0, 2), { then: "destroy" })] },
        mount
      )
      const client = sdk(gateway.baseUrl)
      const before = yield* attempt(() => client.messages.create({ model: "gpt", max_tokens: 5, messages: [userTurn("hi")] })).pipe(Effect.flip)
      expect(before).toBeInstanceOf(AnthropicSdk.BadRequestError)
      expect((before as InstanceType<typeof AnthropicSdk.APIError>).error).toMatchObject({ type: "error", error: { type: "invalid_request_error", message: expect.stringContaining("maximum context length") } })
      const raw = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "gpt", max_tokens: 5, stream: true, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      expect(raw.status).toBe(200)
      const events = eventsOf(raw.text)
      expect(events[0]!.event).toBe("message_start")
      expect(events.at(-1)).toMatchObject({ event: "error", data: { type: "error", error: { type: "api_error" } } })
    }))

  it.scopedLive("translated to Gemini: create and stream through the SDK", () =>
    Effect.gen(function* () {
      const { gateway } = yield* gatewayOver(
        { gemini: [Gemini.googleAiUnary("unary-success-basic-reply-short.json"), Gemini.googleAiStream("streaming-success-basic-reply-short.txt")] },
        mount
      )
      const client = sdk(gateway.baseUrl)
      const created = yield* attempt(() => client.messages.create({ model: "gemini", max_tokens: 100, messages: [userTurn("hi")] }))
      expect(created.content.length).toBeGreaterThan(0)
      expect(created.content[0]!.type).toBe("text")
      expect(created.model).toBe("gemini")
      const streamed = yield* attempt(() => client.messages.stream({ model: "gemini", max_tokens: 100, messages: [userTurn("hi")] }).finalMessage())
      expect(streamed.content[0]!.type).toBe("text")
      expect((streamed.content[0] as { text: string }).text.length).toBeGreaterThan(0)
      expect(streamed.stop_reason).toBe("end_turn")
    }))

  it.scopedLive("a fallback from an Anthropic deployment to an OpenAI-compatible one translates for that attempt", () =>
    Effect.gen(function* () {
      yield* withUpstreamKey
      const anthropic = yield* startUpstream("anthropic", [Anthropic.error(503, "overloaded_error", "down")])
      const openai = yield* startUpstream("openai", [OpenAi.completion({ content: "from the fallback" })])
      const withFallback = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [
            { ...deploymentOf("claude", anthropic, { model: "claude-sonnet-4-5", api_key_env: "E2E_MESSAGES_KEY" }), fallbacks: ["gpt"] },
            deploymentOf("gpt", openai, { model: "gpt-4.1", api_key_env: "E2E_MESSAGES_KEY" })
          ],
          settings: { retry: { max_retries: 0 } }
        })
      })
      const answer = yield* attempt(() => sdk(withFallback.baseUrl).messages.create({ model: "claude", max_tokens: 20, messages: [userTurn("hi")] }))
      expect(answer.content).toEqual([{ type: "text", text: "from the fallback" }])
      expect(answer.model).toBe("gpt")
      expect(anthropic.calls).toHaveLength(1)
      expect(openai.calls[0]!.json["messages"]).toEqual([{ role: "user", content: "hi" }])
    }))

  it.scopedLive("a streamed fallback the other way: a failing OpenAI-compatible deployment, then an Anthropic one, natively", () =>
    Effect.gen(function* () {
      yield* withUpstreamKey
      const openai = yield* startUpstream("openai", [OpenAi.error(503, "down", { type: "server_error" })])
      const anthropic = yield* startUpstream("anthropic", [Anthropic.recordedStream("basic_response.txt")])
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [
            { ...deploymentOf("gpt", openai, { model: "gpt-4.1", api_key_env: "E2E_MESSAGES_KEY" }), fallbacks: ["claude"] },
            deploymentOf("claude", anthropic, { model: "claude-sonnet-4-5", api_key_env: "E2E_MESSAGES_KEY" })
          ],
          settings: { retry: { max_retries: 0 } }
        })
      })
      const final = yield* attempt(() => sdk(gateway.baseUrl).messages.stream({ model: "gpt", max_tokens: 20, messages: [userTurn("hi")] }).finalMessage())
      expect(final.model).toBe("claude")
      expect(final.content).toEqual([{ type: "text", text: "Hello there!" }])
      expect(final.usage).toMatchObject({ input_tokens: 11, output_tokens: 6 })
      expect(openai.calls[0]!.json).toMatchObject({ model: "gpt-4.1", stream: true })
      expect(anthropic.calls[0]!.json).toEqual({ model: "claude-sonnet-4-5", max_tokens: 20, messages: [userTurn("hi")], stream: true })
    }))
})

describe.each(mounts)("POST /v1/messages at its bounds, %s mount", (mount) => {
  /** A gateway whose `claude` (native) and `gpt` (translated) are served by the given upstreams. */
  const bounded = (anthropic: ReadonlyArray<Reply>, openai: ReadonlyArray<Reply>, timeouts: Record<string, number> = {}, settings: Record<string, number> = {}) =>
    Effect.gen(function* () {
      const claude = yield* startUpstream("anthropic", anthropic)
      const gpt = yield* startUpstream("openai", openai)
      const gateway = yield* startGateway({
        mount,
        registry: registryFromDocument({
          models: [deploymentOf("claude", claude), deploymentOf("gpt", gpt)],
          settings: { retry: { max_retries: 0 }, timeouts }
        }),
        settings: { shutdownGraceMs: 100, ...settings }
      })
      return { gateway, claude, gpt }
    })

  /** Reads a stream request until `text` arrives, then aborts it. */
  const readThenAbort = (baseUrl: string, model: string, text: string) =>
    readStreamThenAbort(messagesUrl(baseUrl), { "x-api-key": testKey }, { model, max_tokens: 50, stream: true, messages: [userTurn("hi")] }, text)

  it.scopedLive("a client that leaves mid-stream closes the upstream connection, native and translated", () =>
    Effect.gen(function* () {
      const anthropicFrames = Anthropic.recordedStreamFrames("basic_response.txt")
      const { claude, gateway, gpt } = yield* bounded(
        [sse(anthropicFrames.slice(0, 4), { then: "stall" })],
        [sse(OpenAi.streamFrames(["one", "two", "three"]).slice(0, 2), { then: "stall" })]
      )
      yield* readThenAbort(gateway.baseUrl, "claude", "Hello")
      const [native] = yield* claude.awaitCalls(1)
      yield* Effect.promise(() => native!.closed).pipe(Effect.timeout("3 seconds"))
      expect(native!.closedByClient).toBe(true)
      yield* readThenAbort(gateway.baseUrl, "gpt", "one")
      const [translated] = yield* gpt.awaitCalls(1)
      yield* Effect.promise(() => translated!.closed).pipe(Effect.timeout("3 seconds"))
      expect(translated!.closedByClient).toBe(true)
    }))

  it.scopedLive("silence after the commit is filled with ping events; a stall past first_token_ms ends with a timeout_error event; no first event is a 504", () =>
    Effect.gen(function* () {
      const frames = Anthropic.recordedStreamFrames("basic_response.txt")
      // the recorded stream without its own ping, 150 ms between two frames; then one that stalls; then one that never starts
      const { gateway } = yield* bounded(
        [sse([frames[0]!, frames[1]!, ...frames.slice(3)], { gapMs: 150 }), sse(frames.slice(0, 2), { then: "stall" }), sse([], { then: "stall" })],
        [OpenAi.completion()],
        { first_token_ms: 400 },
        { sseKeepaliveMs: 60 }
      )
      const slow = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 5, stream: true, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      const slowEvents = eventsOf(slow.text)
      expect(slowEvents.filter((event) => event.event === "ping").length).toBeGreaterThan(0)
      expectWellFormed(slowEvents)
      const stalled = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 5, stream: true, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      expect(stalled.status).toBe(200)
      expect(eventsOf(stalled.text).at(-1)).toMatchObject({ event: "error", data: { type: "error", error: { type: "timeout_error" } } })
      const never = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 5, stream: true, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      expect(never.status).toBe(504)
      expect(JSON.parse(never.text)).toMatchObject({ type: "error", error: { type: "timeout_error" } })
    }))

  it.scopedLive("the body limit, the nesting bound, a wrong method and Claude Code's ?beta=true", () =>
    Effect.gen(function* () {
      const { gateway } = yield* bounded([Anthropic.message([{ type: "text", text: "beta ok" }])], [OpenAi.completion()], {}, { maxBodyBytes: 4096 })
      const tooLarge = yield* postRaw(messagesUrl(gateway.baseUrl), JSON.stringify({ model: "claude", max_tokens: 5, messages: [userTurn("x".repeat(5000))] }), { "x-api-key": testKey })
      expect(tooLarge.status).toBe(413)
      expect(JSON.parse(tooLarge.text)).toMatchObject({ type: "error", error: { type: "request_too_large" } })
      const deep = yield* postRaw(`${messagesUrl(gateway.baseUrl)}/count_tokens`, `{"model":"claude","messages":${"[".repeat(150)}${"]".repeat(150)}}`, { "x-api-key": testKey })
      expect(deep.status).toBe(400)
      expect(JSON.parse(deep.text)).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
      const wrongMethod = yield* call(messagesUrl(gateway.baseUrl), { headers: { "x-api-key": testKey } })
      expect(wrongMethod.status).toBe(405)
      expect(JSON.parse(wrongMethod.text)).toMatchObject({ type: "error", error: { type: "invalid_request_error" } })
      const beta = yield* postRaw(`${messagesUrl(gateway.baseUrl)}?beta=true`, JSON.stringify({ model: "claude", max_tokens: 5, messages: [userTurn("hi")] }), { "x-api-key": testKey })
      expect(beta.status).toBe(200)
      expect((JSON.parse(beta.text) as { content: unknown }).content).toEqual([{ type: "text", text: "beta ok" }])
    }))
})
