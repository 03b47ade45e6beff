/**
 * The gateway configured the way CONFIG_FILE configures it (a YAML registry naming real upstream servers by
 * base_url and api_key_env), spoken to with the official openai SDK: Anthropic and Gemini answers come back in
 * OpenAI's shape, and an OpenAI-compatible upstream is a faithful pass-through.
 */
import { NodeFileSystem } from "@effect/platform-node"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import OpenAI from "openai"
import type { ChatCompletionChunk, ChatCompletionCreateParamsNonStreaming, ChatCompletionTool } from "openai/resources/chat/completions"
import * as Yaml from "yaml"
import { fromFile, holderOf, ModelRegistry } from "../../src/Router/Registry.js"
import { readRegistryFile } from "../../src/Router/RegistryFile.js"
import { startGateway, testKey } from "../support/Gateway.js"
import { Anthropic, Gemini, json, OpenAi, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply, UpstreamCall } from "../support/FakeUpstreams.js"
import { postChat } from "../support/Http.js"
import { attempt, collect, contentOf } from "../support/Sdk.js"
import { ssePayloads } from "../support/Sse.js"

const keys = {
  E2E_ANTHROPIC_KEY: "sk-ant-upstream-secret",
  E2E_GEMINI_KEY: "gemini-upstream-secret",
  E2E_OPENAI_KEY: "sk-openai-upstream-secret"
} as const

/** Sets the upstream keys in the environment for the scope, restoring what was there. */
const upstreamKeys = Effect.acquireRelease(
  Effect.sync(() => {
    const saved = Object.fromEntries(Object.keys(keys).map((name) => [name, process.env[name]]))
    Object.assign(process.env, keys)
    return saved
  }),
  (saved) =>
    Effect.sync(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      }
    })
)

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "llm-proxy-e2e-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

// --- the upstreams' answers, by the upstream model id the gateway asks for ---------------------------------------

const anthropicToolMessage = Anthropic.messageBody(
  [
    { type: "text", text: "I'll check the current weather in Paris for you." },
    { type: "tool_use", id: "toolu_01NRLabsLyVHZPKxbKvkfSMn", name: "get_weather", input: { location: "Paris" } }
  ],
  { usage: { input_tokens: 377, output_tokens: 65 } }
)

const anthropicScript = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "claude-text-upstream":
      return call.stream
        ? Anthropic.recordedStream("basic_response.txt")
        : Anthropic.message([{ type: "text", text: "Bonjour !" }], { usage: { input_tokens: 12, output_tokens: 4 } })
    case "claude-tools-upstream":
      return call.stream ? Anthropic.recordedStream("tool_use_response.txt") : json(anthropicToolMessage)
    default:
      return Anthropic.error(404, "not_found_error", `model: ${call.model}`)
  }
}

const functionCalling = Gemini.recording("Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream")
const textRecording = Gemini.recording("Chats_Tests_sendMessage_Google_AI_with_text_stream")

const geminiScript = (call: UpstreamCall): Reply => {
  switch (call.model) {
    case "gemini-text-upstream":
      return call.stream
        ? Gemini.recordedStream("Chats_Tests_sendMessage_Google_AI_with_text_stream")
        : Gemini.googleAiUnary("unary-success-basic-reply-short.json")
    case "gemini-tools-upstream":
      return call.stream
        ? Gemini.recordedStream("Chats_Tests_chats_function_calling_Google_AI_with_function_calling_stream")
        : json(functionCalling.interactions[0]!.response.bodySegments[0])
    default:
      return Gemini.error(404, `models/${call.model} is not found`, "NOT_FOUND")
  }
}

const openAiScript = (call: UpstreamCall): Reply => {
  if (call.json["recorded"] === "content-logprobs") return OpenAi.recordedStream("stream-content-logprobs.txt")
  return call.stream
    ? OpenAi.recordedStream("stream-works.txt")
    : OpenAi.completion(
        { model: "gpt-4o-2024-08-06", content: "pass-through", extra: { vendor_extra: { served_by: "fake" } } },
        { headers: { "x-upstream-only": "1" } }
      )
}

interface Setup {
  readonly client: OpenAI
  readonly baseUrl: string
  readonly anthropic: FakeUpstream
  readonly gemini: FakeUpstream
  readonly openai: FakeUpstream
}

/** Three upstreams, a YAML registry naming them, and the gateway serving it. */
const setup = Effect.gen(function* () {
  yield* upstreamKeys
  const anthropic = yield* startUpstream("anthropic", anthropicScript)
  const gemini = yield* startUpstream("gemini", geminiScript)
  const openai = yield* startUpstream("openai", openAiScript)
  const entry = (name: string, provider: string, model: string, upstream: FakeUpstream, keyEnv: string) => ({
    name,
    provider,
    model,
    base_url: upstream.baseUrl,
    api_key_env: keyEnv
  })
  const registryYaml = Yaml.stringify({
    models: [
      entry("claude", "anthropic", "claude-text-upstream", anthropic, "E2E_ANTHROPIC_KEY"),
      entry("claude-tools", "anthropic", "claude-tools-upstream", anthropic, "E2E_ANTHROPIC_KEY"),
      entry("gemini", "gemini", "gemini-text-upstream", gemini, "E2E_GEMINI_KEY"),
      entry("gemini-tools", "gemini", "gemini-tools-upstream", gemini, "E2E_GEMINI_KEY"),
      entry("gpt", "openai", "gpt-4o-upstream", openai, "E2E_OPENAI_KEY")
    ],
    settings: { retry: { max_retries: 0 } }
  })
  const dir = yield* tempDir
  const path = join(dir, "registry.yaml")
  writeFileSync(path, registryYaml)
  const registry = Layer.effect(ModelRegistry, Effect.flatMap(readRegistryFile(path), (file) => Effect.map(fromFile(file, 0), holderOf))).pipe(
    Layer.provide(Layer.merge(NodeFileSystem.layer, Transport.layer())),
    Layer.orDie
  )
  const gateway = yield* startGateway({ registry, settings: { shutdownGraceMs: 100 } })
  const client = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: testKey, maxRetries: 0, timeout: 5_000 })
  return { client, baseUrl: gateway.baseUrl, anthropic, gemini, openai } satisfies Setup
})

// --- helpers -------------------------------------------------------------------------------------------------

const finishReasons = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => (choice.finish_reason === null ? [] : [choice.finish_reason])))

/** Tool calls rebuilt from their streamed deltas, as the SDK's own helpers do. */
const toolCallsOf = (chunks: ReadonlyArray<ChatCompletionChunk>) => {
  const calls = new Map<number, { id: string; name: string; arguments: string }>()
  for (const chunk of chunks) {
    for (const choice of chunk.choices) {
      for (const delta of choice.delta.tool_calls ?? []) {
        const call = calls.get(delta.index) ?? { id: "", name: "", arguments: "" }
        call.id += delta.id ?? ""
        call.name += delta.function?.name ?? ""
        call.arguments += delta.function?.arguments ?? ""
        calls.set(delta.index, call)
      }
    }
  }
  return [...calls.values()]
}

const weatherTool: ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] }
  }
}

const divideTool: ChatCompletionTool = {
  type: "function",
  function: {
    name: "customDivide",
    description: "Custom divide function",
    parameters: { type: "object", properties: { numerator: { type: "number" }, denominator: { type: "number" } } }
  }
}

const user = (content: string) => [{ role: "user" as const, content }]

/** Each upstream saw its own key in its own header, and never the gateway's key or the client's Authorization. */
const expectOwnCredentialsOnly = (upstream: FakeUpstream) => {
  expect(upstream.calls.length).toBeGreaterThan(0)
  for (const call of upstream.calls) {
    expect(call.headerValues.some((value) => value.includes(testKey))).toBe(false)
    expect(call.headers["x-internal-auth"]).toBeUndefined()
    switch (upstream.dialect) {
      case "anthropic":
        expect(call.headers["x-api-key"]).toBe(keys.E2E_ANTHROPIC_KEY)
        expect(call.headers["authorization"]).toBeUndefined()
        expect(call.headers["x-goog-api-key"]).toBeUndefined()
        expect(call.headers["anthropic-version"]).toBe("2023-06-01")
        break
      case "gemini":
        expect(call.headers["x-goog-api-key"]).toBe(keys.E2E_GEMINI_KEY)
        expect(call.headers["authorization"]).toBeUndefined()
        expect(call.headers["x-api-key"]).toBeUndefined()
        break
      case "openai":
        expect(call.headers["authorization"]).toBe(`Bearer ${keys.E2E_OPENAI_KEY}`)
        expect(call.headers["x-api-key"]).toBeUndefined()
        break
    }
  }
}

// --- tests -----------------------------------------------------------------------------------------------------

describe("Anthropic upstream through the gateway, with the openai SDK", () => {
  it.scopedLive("completes in OpenAI's shape", () =>
    Effect.gen(function* () {
      const { anthropic, client } = yield* setup
      const { data, response } = yield* attempt(() =>
        client.chat.completions
          .create({ model: "claude", messages: [{ role: "system", content: "Reply in French." }, ...user("Hello")], max_tokens: 50 })
          .withResponse()
      )
      expect(data.object).toBe("chat.completion")
      expect(data.model).toBe("claude")
      expect(data.choices[0]?.message.content).toBe("Bonjour !")
      expect(data.choices[0]?.finish_reason).toBe("stop")
      expect(data.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 4, total_tokens: 16 })
      expect(response.headers.get("x-llm-proxy-provider")).toBe("anthropic")

      const [call] = anthropic.calls
      expect(call?.path).toBe("/v1/messages")
      expect(call?.json).toMatchObject({
        model: "claude-text-upstream",
        system: "Reply in French.",
        max_tokens: 50,
        messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }]
      })
      expectOwnCredentialsOnly(anthropic)
    }))

  it.scopedLive("streams a recorded reply with include_usage", () =>
    Effect.gen(function* () {
      const { anthropic, client } = yield* setup
      const stream = yield* attempt(() =>
        client.chat.completions.create({ model: "claude", messages: user("Hi"), stream: true, stream_options: { include_usage: true } })
      )
      const chunks = yield* attempt(() => collect(stream))
      expect(contentOf(chunks)).toBe("Hello there!")
      expect(finishReasons(chunks)).toStrictEqual(["stop"])
      expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
      expect(chunks.every((chunk) => chunk.model === "claude")).toBe(true)
      expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
      expect(chunks.at(-1)?.choices).toStrictEqual([])
      expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 })
      expect(anthropic.calls[0]?.json).toMatchObject({ stream: true, model: "claude-text-upstream" })
      expectOwnCredentialsOnly(anthropic)
    }))

  it.scopedLive("returns a tool call, not streamed", () =>
    Effect.gen(function* () {
      const { anthropic, client } = yield* setup
      const data = yield* attempt(() =>
        client.chat.completions.create({ model: "claude-tools", messages: user("Weather in Paris?"), tools: [weatherTool] })
      )
      const message = data.choices[0]?.message
      expect(message?.content).toBe("I'll check the current weather in Paris for you.")
      expect(message?.tool_calls).toHaveLength(1)
      const call = message?.tool_calls?.[0]
      expect(call?.type).toBe("function")
      expect(call?.id).toBe("toolu_01NRLabsLyVHZPKxbKvkfSMn")
      expect(call?.type === "function" ? call.function.name : undefined).toBe("get_weather")
      expect(call?.type === "function" ? JSON.parse(call.function.arguments) : undefined).toStrictEqual({ location: "Paris" })
      expect(data.choices[0]?.finish_reason).toBe("tool_calls")
      expect(data.usage).toMatchObject({ prompt_tokens: 377, completion_tokens: 65, total_tokens: 442 })
      // The tool went upstream in Anthropic's shape.
      expect(anthropic.calls[0]?.json["tools"]).toStrictEqual([
        { name: "get_weather", description: "Current weather in a city", input_schema: weatherTool.function.parameters }
      ])
      expectOwnCredentialsOnly(anthropic)
    }))

  it.scopedLive("streams a recorded tool call (input_json_delta) as tool_call deltas", () =>
    Effect.gen(function* () {
      const { anthropic, client } = yield* setup
      const stream = yield* attempt(() =>
        client.chat.completions.create({
          model: "claude-tools",
          messages: user("Weather in Paris?"),
          tools: [weatherTool],
          stream: true,
          stream_options: { include_usage: true }
        })
      )
      const chunks = yield* attempt(() => collect(stream))
      expect(contentOf(chunks)).toBe("I'll check the current weather in Paris for you.")
      const calls = toolCallsOf(chunks)
      expect(calls).toHaveLength(1)
      expect(calls[0]?.id).toBe("toolu_01NRLabsLyVHZPKxbKvkfSMn")
      expect(calls[0]?.name).toBe("get_weather")
      expect(JSON.parse(calls[0]?.arguments ?? "")).toStrictEqual({ location: "Paris" })
      expect(finishReasons(chunks)).toStrictEqual(["tool_calls"])
      expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 377, completion_tokens: 65, total_tokens: 442 })
      expectOwnCredentialsOnly(anthropic)
    }))
})

describe("Gemini upstream through the gateway, with the openai SDK", () => {
  it.scopedLive("completes in OpenAI's shape via :generateContent", () =>
    Effect.gen(function* () {
      const { client, gemini } = yield* setup
      const data = yield* attempt(() => client.chat.completions.create({ model: "gemini", messages: user("Where is Google?"), temperature: 0.3 }))
      expect(data.model).toBe("gemini")
      expect(data.choices[0]?.message.content).toBe(
        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
      )
      expect(data.choices[0]?.finish_reason).toBe("stop")
      expect(data.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 22, total_tokens: 29 })
      const [call] = gemini.calls
      expect(call?.path).toBe("/v1beta/models/gemini-text-upstream:generateContent")
      expect(call?.json).toMatchObject({
        contents: [{ role: "user", parts: [{ text: "Where is Google?" }] }],
        generationConfig: { temperature: 0.3 }
      })
      expect(call?.json).not.toHaveProperty("model")
      expectOwnCredentialsOnly(gemini)
    }))

  it.scopedLive("streams a recorded CRLF :streamGenerateContent?alt=sse reply with include_usage", () =>
    Effect.gen(function* () {
      const { client, gemini } = yield* setup
      const stream = yield* attempt(() =>
        client.chat.completions.create({
          model: "gemini",
          messages: user("why is the sky blue?"),
          stream: true,
          stream_options: { include_usage: true }
        })
      )
      const chunks = yield* attempt(() => collect(stream))
      const expected = textRecording.interactions[0]!.response.bodySegments
        .map((frame) => (frame as { candidates: Array<{ content: { parts: Array<{ text: string }> } }> }).candidates[0]!.content.parts[0]!.text)
        .join("")
      expect(expected.length).toBeGreaterThan(100)
      expect(contentOf(chunks)).toBe(expected)
      expect(finishReasons(chunks)).toStrictEqual(["stop"])
      expect(chunks.at(-1)?.choices).toStrictEqual([])
      expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 6, completion_tokens: 377, total_tokens: 383 })
      expect(gemini.calls[0]?.path).toBe("/v1beta/models/gemini-text-upstream:streamGenerateContent?alt=sse")
      expectOwnCredentialsOnly(gemini)
    }))

  it.scopedLive("returns a function call as a tool call, not streamed", () =>
    Effect.gen(function* () {
      const { client, gemini } = yield* setup
      const data = yield* attempt(() =>
        client.chat.completions.create({ model: "gemini-tools", messages: user("what is the result of 100/2"), tools: [divideTool] })
      )
      const call = data.choices[0]?.message.tool_calls?.[0]
      expect(data.choices[0]?.message.tool_calls).toHaveLength(1)
      expect(call?.type === "function" ? call.function.name : undefined).toBe("customDivide")
      expect(call?.type === "function" ? JSON.parse(call.function.arguments) : undefined).toStrictEqual({ numerator: 100, denominator: 2 })
      expect(call?.id).toMatch(/^call_/)
      expect(data.choices[0]?.finish_reason).toBe("tool_calls")
      expect(data.usage).toMatchObject({ prompt_tokens: 21, completion_tokens: 6, total_tokens: 27 })
      const tools = gemini.calls[0]?.json["tools"] as ReadonlyArray<{ functionDeclarations: ReadonlyArray<{ name: string }> }>
      expect(tools.flatMap((tool) => tool.functionDeclarations.map((declaration) => declaration.name))).toStrictEqual(["customDivide"])
      expectOwnCredentialsOnly(gemini)
    }))

  it.scopedLive("streams a recorded function call as one tool_call delta", () =>
    Effect.gen(function* () {
      const { client, gemini } = yield* setup
      const stream = yield* attempt(() =>
        client.chat.completions.create({
          model: "gemini-tools",
          messages: user("what is the result of 100/2"),
          tools: [divideTool],
          stream: true,
          stream_options: { include_usage: true }
        })
      )
      const chunks = yield* attempt(() => collect(stream))
      const calls = toolCallsOf(chunks)
      expect(calls).toHaveLength(1)
      expect(calls[0]?.name).toBe("customDivide")
      expect(calls[0]?.id).toMatch(/^call_/)
      expect(JSON.parse(calls[0]?.arguments ?? "")).toStrictEqual({ numerator: 100, denominator: 2 })
      expect(finishReasons(chunks)).toStrictEqual(["tool_calls"])
      expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 21, completion_tokens: 6, total_tokens: 27 })
      expectOwnCredentialsOnly(gemini)
    }))
})

describe("OpenAI-compatible upstream through the gateway", () => {
  it.scopedLive("forwards an unknown request field upstream and an unknown response field to the client", () =>
    Effect.gen(function* () {
      const { client, openai } = yield* setup
      const body = {
        model: "gpt",
        messages: user("hi"),
        top_p: 0.5,
        vendor_knob: { beam: 3, mode: "x" }
      } satisfies ChatCompletionCreateParamsNonStreaming & { readonly vendor_knob: unknown }
      const { data, response } = yield* attempt(() => client.chat.completions.create(body).withResponse())
      expect(data.choices[0]?.message.content).toBe("pass-through")
      expect(data.model).toBe("gpt")
      expect((data as unknown as Record<string, unknown>)["vendor_extra"]).toStrictEqual({ served_by: "fake" })
      expect(response.headers.get("x-llm-proxy-provider")).toBe("openai")
      expect(response.headers.get("x-upstream-only")).toBeNull()

      const [call] = openai.calls
      expect(call?.path).toBe("/v1/chat/completions")
      expect(call?.json).toMatchObject({ model: "gpt-4o-upstream", top_p: 0.5, vendor_knob: { beam: 3, mode: "x" } })
      expectOwnCredentialsOnly(openai)
    }))

  it.scopedLive("passes recorded openai-node streams through unchanged but for the public model name", () =>
    Effect.gen(function* () {
      const { baseUrl, client, openai } = yield* setup
      for (const [recording, marker] of [
        ["stream-works.txt", "works"],
        ["stream-content-logprobs.txt", "content-logprobs"]
      ] as const) {
        const answer = yield* postChat(baseUrl, {
          model: "gpt",
          messages: user("hi"),
          stream: true,
          stream_options: { include_usage: true },
          recorded: marker
        })
        expect(answer.status).toBe(200)
        expect(answer.headers.get("content-type")).toContain("text/event-stream")
        const expected = OpenAi.recordedText(recording).replaceAll('"model":"gpt-4o-2024-08-06"', '"model":"gpt"')
        // Same frames, same payloads (numbers may be re-serialised: -8.4e-6 and -0.0000084 are one value).
        expect(ssePayloads(answer.text)).toStrictEqual(ssePayloads(expected))
        expect(ssePayloads(answer.text).at(-1)).toBe("[DONE]")
      }

      // And the SDK reads the same content from it.
      const stream = yield* attempt(() =>
        client.chat.completions.create({ model: "gpt", messages: user("hi"), stream: true, stream_options: { include_usage: true } })
      )
      const chunks = yield* attempt(() => collect(stream))
      expect(contentOf(chunks)).toBe('{"city":"San Francisco","units":"c"}')
      expect(chunks.at(-1)?.usage).toStrictEqual({ prompt_tokens: 17, completion_tokens: 10, total_tokens: 27 })
      expect(openai.calls.map((call) => call.json["stream"])).toStrictEqual([true, true, true])
      expectOwnCredentialsOnly(openai)
    }))
})
