/**
 * The official `openai` SDK as the client of the whole gateway over a real socket: what an application sees.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import OpenAI from "openai"
import type { APIError, RateLimitError } from "openai"
import type { ChatCompletionChunk } from "openai/resources/chat/completions"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import * as Registry from "../../src/Router/Registry.js"
import { startGateway, testKey } from "../support/Gateway.js"
import { attempt, collect, contentOf } from "../support/Sdk.js"

const sdk = (baseUrl: string, apiKey = testKey) => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0, timeout: 5_000 })

/** A provider that always fails with `error`, counting its calls. */
const failing = (error: ProviderError, calls: { count: number }): StreamProvider => ({
  complete: () =>
    Effect.suspend(() => {
      calls.count++
      return Effect.fail(error)
    }),
  stream: () =>
    Stream.suspend(() => {
      calls.count++
      return Stream.fail(error)
    })
})

const noRetries = { retry: { max_retries: 0, initial_delay_ms: 1, max_delay_ms: 1 } }

/** A gateway whose only model `broken` fails with `error`. */
const brokenGateway = (error: ProviderError) =>
  Effect.gen(function* () {
    const calls = { count: 0 }
    const gateway = yield* startGateway({
      registry: Registry.layerStatic([{ name: "broken", providerKind: "custom", provider: failing(error, calls) }], noRetries),
      settings: { shutdownGraceMs: 100 }
    })
    return { client: sdk(gateway.baseUrl), calls }
  })

const ask = (client: OpenAI, model: string) =>
  attempt(() => client.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] }))

describe("the openai SDK against the gateway", () => {
  it.scopedLive("lists the models", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const page = yield* attempt(() => sdk(gateway.baseUrl).models.list())
      expect(page.data.map((model) => [model.id, model.object, model.owned_by])).toStrictEqual([["mock", "model", "mock"]])
      expect(typeof page.data[0]?.created).toBe("number")
    }))

  it.scopedLive("creates a chat completion, with the routing headers", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const { data, response } = yield* attempt(() =>
        sdk(gateway.baseUrl)
          .chat.completions.create({
            model: "mock",
            messages: [
              { role: "system", content: "be brief" },
              { role: "user", content: "ping pong" }
            ]
          })
          .withResponse()
      )
      expect(data.object).toBe("chat.completion")
      expect(data.model).toBe("mock")
      expect(data.choices[0]?.message).toMatchObject({ role: "assistant", content: "ping pong" })
      expect(data.choices[0]?.finish_reason).toBe("stop")
      expect(data.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 })
      expect(response.headers.get("x-llm-proxy-model")).toBe("mock")
      expect(response.headers.get("x-llm-proxy-provider")).toBe("mock")
      expect(response.headers.get("x-llm-proxy-attempts")).toBe("1")
    }))

  it.scopedLive("streams deltas and, with include_usage, ends with a usage chunk whose choices are empty", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const stream = yield* attempt(() =>
        sdk(gateway.baseUrl).chat.completions.create({
          model: "mock",
          messages: [{ role: "user", content: "one two three" }],
          stream: true,
          stream_options: { include_usage: true }
        })
      )
      const chunks = yield* attempt(() => collect(stream))
      expect(contentOf(chunks)).toBe("one two three")
      expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
      expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk" && chunk.model === "mock")).toBe(true)
      const last = chunks.at(-1)
      expect(last?.choices).toStrictEqual([])
      expect(last?.usage).toStrictEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 })
      expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("stop")
      expect(chunks.slice(0, -1).every((chunk) => chunk.usage === undefined || chunk.usage === null)).toBe(true)
    }))

  it.scopedLive("streams without a usage chunk when include_usage is not asked for", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const stream = yield* attempt(() =>
        sdk(gateway.baseUrl).chat.completions.create({ model: "mock", messages: [{ role: "user", content: "a b" }], stream: true })
      )
      const chunks = yield* attempt(() => collect(stream))
      expect(contentOf(chunks)).toBe("a b")
      expect(chunks.every((chunk) => chunk.choices.length === 1 && (chunk.usage === undefined || chunk.usage === null))).toBe(true)
    }))

  it.scopedLive("raises AuthenticationError 401 for a wrong key", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const error = yield* Effect.flip(ask(sdk(gateway.baseUrl, "not-the-key"), "mock"))
      expect(error).toBeInstanceOf(OpenAI.AuthenticationError)
      expect(error).toMatchObject({ status: 401, code: "invalid_api_key", type: "invalid_request_error" })
    }))

  it.scopedLive("raises NotFoundError 404 for an unknown model, on completions and models.retrieve", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const client = sdk(gateway.baseUrl)
      const error = yield* Effect.flip(ask(client, "no-such-model"))
      expect(error).toBeInstanceOf(OpenAI.NotFoundError)
      expect(error).toMatchObject({ status: 404, code: "model_not_found", param: "model" })
      expect((error as APIError).message).toContain("no-such-model")
      const retrieve = yield* Effect.flip(attempt(() => client.models.retrieve("no-such-model")))
      expect(retrieve).toBeInstanceOf(OpenAI.NotFoundError)
      const found = yield* attempt(() => client.models.retrieve("mock"))
      expect(found.id).toBe("mock")
    }))

  it.scopedLive("raises BadRequestError 400 naming the field for a schema violation", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const error = yield* Effect.flip(
        attempt(() =>
          sdk(gateway.baseUrl).chat.completions.create({ model: "mock", temperature: 7, messages: [{ role: "user", content: "x" }] })
        )
      )
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      expect(error).toMatchObject({ status: 400, type: "invalid_request_error", param: "temperature" })
    }))

  it.scopedLive("raises RateLimitError 429 with Retry-After when the provider is rate limited", () =>
    Effect.gen(function* () {
      const { calls, client } = yield* brokenGateway(
        new ProviderError({ reason: "RateLimited", message: "slow down", provider: "custom", status: 429, retryAfterMs: 2_000 })
      )
      const error = yield* Effect.flip(ask(client, "broken"))
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      expect(error).toMatchObject({ status: 429, code: "rate_limit_exceeded", type: "rate_limit_error", message: "429 slow down" })
      expect((error as RateLimitError).headers?.get("retry-after")).toBe("2")
      expect(calls.count).toBe(1)
    }))

  it.scopedLive("raises InternalServerError 5xx when the provider is unavailable", () =>
    Effect.gen(function* () {
      const { client } = yield* brokenGateway(
        new ProviderError({ reason: "Unavailable", message: "upstream down", provider: "custom", status: 503 })
      )
      const error = yield* Effect.flip(ask(client, "broken"))
      expect(error).toBeInstanceOf(OpenAI.InternalServerError)
      expect(error).toMatchObject({ status: 503, code: "upstream_unavailable", type: "upstream_error" })
      const streamed = yield* Effect.flip(
        attempt(() => client.chat.completions.create({ model: "broken", messages: [{ role: "user", content: "x" }], stream: true }))
      )
      expect(streamed).toBeInstanceOf(OpenAI.InternalServerError)
      expect(streamed).toMatchObject({ status: 503 })
    }))

  it.scopedLive("raises an APIError 502 for a provider failure without an upstream status", () =>
    Effect.gen(function* () {
      const { client } = yield* brokenGateway(new ProviderError({ reason: "Unavailable", message: "connection refused", provider: "custom" }))
      const error = yield* Effect.flip(ask(client, "broken"))
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect(error).toMatchObject({ status: 502, code: "upstream_unavailable" })
    }))

  it.scopedLive("throws an APIError from the stream iteration when the upstream fails after the stream began", () =>
    Effect.gen(function* () {
      const first = {
        id: "chatcmpl-1",
        object: "chat.completion.chunk" as const,
        created: 1,
        model: "half",
        choices: [{ index: 0, delta: { role: "assistant" as const, content: "partial" }, finish_reason: null, logprobs: null }]
      }
      const broken = new ProviderError({ reason: "Unavailable", message: "the response broke off", provider: "custom" })
      const provider: StreamProvider = {
        complete: () => Effect.fail(broken),
        stream: () => Stream.concat(Stream.make(first), Stream.fail(broken))
      }
      const gateway = yield* startGateway({
        registry: Registry.layerStatic([{ name: "half", provider }], noRetries),
        settings: { shutdownGraceMs: 100 }
      })
      const stream = yield* attempt(() =>
        sdk(gateway.baseUrl).chat.completions.create({ model: "half", messages: [{ role: "user", content: "x" }], stream: true })
      )
      const seen: Array<ChatCompletionChunk> = []
      const error = yield* Effect.flip(
        attempt(async () => {
          for await (const chunk of stream) seen.push(chunk)
        })
      )
      expect(contentOf(seen)).toBe("partial")
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect(error).toMatchObject({ code: "upstream_unavailable", type: "upstream_error" })
      expect((error as APIError).message).toContain("the response broke off")
    }))
})
