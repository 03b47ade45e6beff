/**
 * The response cache through the whole gateway, over both mounts, against a fake upstream that counts its calls:
 * a second identical request is served from the cache in both directions (stream → JSON, JSON → stream) and a
 * stream is replayed chunk for chunk (reasoning, tool-call deltas, usage when asked); tenants are isolated unless
 * the model shares; Cache-Control no-cache / no-store; an interrupted or failed stream is never stored; the LRU
 * bound holds; a hit counts a request but no tokens; the openai SDK reads a replayed stream.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI from "openai"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { Mount } from "../support/Gateway.js"
import { deploymentOf, OpenAi, registryFromDocument, sse, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream, Reply } from "../support/FakeUpstreams.js"
import { call, chatRequest, postChat, postEmbeddings } from "../support/Http.js"
import { ssePayloads } from "../support/Sse.js"

const secretOf = (id: string) => `sk-llmp-${id}-${"y".repeat(24)}`
const keyEntry = (id: string) => ({ id, key_sha256: sha256Hex(secretOf(id)) })
const asKey = (id: string) => ({ authorization: `Bearer ${secretOf(id)}` })

const base = { id: "chatcmpl-cached-1", object: "chat.completion.chunk", created: 1_723_031_664, model: "upstream-model" }
const frame = (payload: unknown) => `data: ${JSON.stringify(payload)}\n\n`
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => frame({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })

/** A stream with everything a replay must keep: reasoning, content, a tool call split over deltas, usage. */
const richFrames = (text: string): ReadonlyArray<string> => [
  chunk({ role: "assistant", content: "" }),
  chunk({ reasoning_content: "Let me think" }),
  chunk({ reasoning_content: " about it." }),
  chunk({ content: text }),
  chunk({ content: " — done." }),
  chunk({ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "lookup", arguments: "" } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '"cats"}' } }] }),
  chunk({}, "tool_calls"),
  frame({ ...base, choices: [], usage: { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 } }),
  "data: [DONE]\n\n"
]

/** The n-th call's answer: a stream or a completion as asked, whose text names the call (a fresh answer shows). */
const numbered = (call: { readonly index: number; readonly stream: boolean }): Reply =>
  call.stream ? sse(richFrames(`answer ${call.index}`)) : OpenAi.completion({ content: `answer ${call.index}`, usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } })

const gatewayWith = (mount: Mount, upstream: FakeUpstream, settings: Record<string, unknown> = {}) =>
  startGateway({
    mount,
    registry: registryFromDocument({
      models: [
        { ...deploymentOf("cached", upstream), cache: { ttl_s: 600 } },
        { ...deploymentOf("shared", upstream), cache: { ttl_s: 600, shared: true } },
        deploymentOf("plain", upstream)
      ],
      keys: [keyEntry("team-a"), keyEntry("team-b")],
      settings: { retry: { max_retries: 0 }, ...settings }
    })
  })

const startCountingUpstream = startUpstream("openai", numbered)

/** The n-th embeddings call's answer: one vector per input whose first value names the call. */
const numberedEmbeddings = (call: { readonly index: number; readonly json: Record<string, unknown> }): Reply => {
  const input = call.json["input"]
  const count = Array.isArray(input) ? input.length : 1
  return OpenAi.embeddings(
    Array.from({ length: count }, (_, position) => [call.index + 0.5, position, -0.25]),
    { usage: { prompt_tokens: 3 * count, total_tokens: 3 * count } }
  )
}

/** The float vectors of an embeddings answer, whichever encoding it came in. */
const vectorsOf = (text: string): ReadonlyArray<ReadonlyArray<number>> =>
  (JSON.parse(text) as { readonly data: ReadonlyArray<{ readonly index: number; readonly embedding: ReadonlyArray<number> | string }> }).data
    .slice()
    .sort((a, b) => a.index - b.index)
    .map(({ embedding }) => {
      if (typeof embedding !== "string") return embedding
      const bytes = Buffer.from(embedding, "base64")
      return Array.from({ length: bytes.length / 4 }, (_, index) => bytes.readFloatLE(index * 4))
    })

const streamBody = (extra: Record<string, unknown> = {}) =>
  chatRequest("cached", { stream: true, stream_options: { include_usage: true }, temperature: 0, ...extra })

const dataChunks = (text: string) => ssePayloads(text).filter((payload) => payload !== "[DONE]")

for (const mount of mounts) {
  describe(`the response cache (${mount} mount)`, () => {
    it.scopedLive("a stream is stored and replayed chunk for chunk; the same request as JSON is assembled from it", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        const first = yield* postChat(gateway.baseUrl, streamBody())
        expect(first.status).toBe(200)
        expect(first.headers.get("x-llm-proxy-cache")).toBe("miss")
        expect(first.headers.get("age")).toBeNull()
        const second = yield* postChat(gateway.baseUrl, streamBody({ user: "someone-else", metadata: { run: "2" } }))
        expect(second.status).toBe(200)
        expect(second.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(Number(second.headers.get("age"))).toBeGreaterThanOrEqual(0)
        expect(second.headers.get("x-llm-proxy-provider")).toBe("cache")
        expect(second.headers.get("x-llm-proxy-attempts")).toBe("0")
        expect(upstream.calls).toHaveLength(1)
        // the same frames, reasoning, tool-call deltas and the usage chunk included
        expect(ssePayloads(second.text)).toEqual(ssePayloads(first.text))
        const replayed = dataChunks(second.text) as ReadonlyArray<{ readonly choices: ReadonlyArray<{ readonly delta: Record<string, unknown> }>; readonly model: string }>
        expect(replayed.some((c) => c.choices[0]?.delta["reasoning_content"] === "Let me think")).toBe(true)
        expect(replayed.every((c) => c.model === "cached")).toBe(true)

        // without include_usage, the usage chunk is not sent (as for any stream)
        const noUsage = yield* postChat(gateway.baseUrl, streamBody({ stream_options: null }))
        expect(noUsage.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(dataChunks(noUsage.text)).toHaveLength(dataChunks(first.text).length - 1)
        expect(dataChunks(noUsage.text).every((c) => (c as { usage?: unknown }).usage === undefined)).toBe(true)

        // the same request as JSON: one completion, assembled as OpenAI's SDKs accumulate a stream
        const json = yield* postChat(gateway.baseUrl, chatRequest("cached", { temperature: 0 }))
        expect(json.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(upstream.calls).toHaveLength(1)
        const completion = JSON.parse(json.text) as Record<string, unknown>
        expect(completion).toMatchObject({
          id: "chatcmpl-cached-1",
          object: "chat.completion",
          model: "cached",
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content: "answer 0 — done.",
                reasoning_content: "Let me think about it.",
                tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: '{"q":"cats"}' } }]
              },
              finish_reason: "tool_calls"
            }
          ],
          usage: { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 }
        })
      }))

    it.scopedLive("a stream recorded for a client that did not ask for usage keeps the usage chunk it did not send", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        // the writer serializes every chunk but the usage-only one, which the recording serializes itself
        const first = yield* postChat(gateway.baseUrl, streamBody({ stream_options: null }))
        expect(first.headers.get("x-llm-proxy-cache")).toBe("miss")
        const sent = dataChunks(first.text)
        expect(sent.every((c) => (c as { usage?: unknown }).usage === undefined)).toBe(true)
        const withUsage = yield* postChat(gateway.baseUrl, streamBody())
        expect(withUsage.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(upstream.calls).toHaveLength(1)
        const replayed = dataChunks(withUsage.text)
        expect(replayed.slice(0, -1)).toEqual(sent)
        expect(replayed.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 9, total_tokens: 16 } })
      }))

    it.scopedLive("embeddings are cached too: either encoding from one entry, per tenant, with the request controls", () =>
      Effect.gen(function* () {
        const upstream = yield* startUpstream("openai", numberedEmbeddings)
        const gateway = yield* gatewayWith(mount, upstream)
        const request = { model: "cached", input: ["a cat", "a dog"] }
        const first = yield* postEmbeddings(gateway.baseUrl, request, asKey("team-a"))
        expect(first.status).toBe(200)
        expect(first.headers.get("x-llm-proxy-cache")).toBe("miss")
        expect(vectorsOf(first.text)).toEqual([[0.5, 0, -0.25], [0.5, 1, -0.25]])
        // the same request written as base64, by another user of the same key: the stored answer
        const again = yield* postEmbeddings(gateway.baseUrl, { ...request, encoding_format: "base64", user: "u-2" }, asKey("team-a"))
        expect(again.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(again.headers.get("x-llm-proxy-provider")).toBe("cache")
        expect(Number(again.headers.get("age"))).toBeGreaterThanOrEqual(0)
        expect(vectorsOf(again.text)).toEqual(vectorsOf(first.text))
        expect(JSON.parse(again.text)).toMatchObject({ model: "cached", usage: { prompt_tokens: 6, total_tokens: 6 } })
        expect(upstream.calls).toHaveLength(1)
        // another input, another key, or no-store: the upstream answers
        const other = yield* postEmbeddings(gateway.baseUrl, { ...request, input: ["a cat"] }, asKey("team-a"))
        expect(other.headers.get("x-llm-proxy-cache")).toBe("miss")
        expect((yield* postEmbeddings(gateway.baseUrl, request, asKey("team-b"))).headers.get("x-llm-proxy-cache")).toBe("miss")
        const bypass = yield* postEmbeddings(gateway.baseUrl, request, { ...asKey("team-a"), "cache-control": "no-store" })
        expect(bypass.headers.get("x-llm-proxy-cache")).toBe("bypass")
        expect(vectorsOf(bypass.text)[0]?.[0]).toBe(3.5)
        expect(upstream.calls).toHaveLength(4)
        expect((yield* postEmbeddings(gateway.baseUrl, request, asKey("team-a"))).headers.get("x-llm-proxy-cache")).toBe("hit")
      }))

    it.scopedLive("a completion is stored and a stream request replays it as an upstream would stream it", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        const first = yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 1 }))
        expect(first.headers.get("x-llm-proxy-cache")).toBe("miss")
        const again = yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 1 }))
        expect(again.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(again.headers.get("x-llm-proxy-model")).toBe("cached")
        // the stored text, written as it was answered
        expect(again.text).toBe(first.text)
        const streamed = yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 1, stream: true, stream_options: { include_usage: true } }))
        expect(streamed.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(streamed.headers.get("content-type")).toContain("text/event-stream")
        expect(upstream.calls).toHaveLength(1)
        const payloads = ssePayloads(streamed.text)
        expect(payloads.at(-1)).toBe("[DONE]")
        const chunks = payloads.slice(0, -1) as ReadonlyArray<{ choices: ReadonlyArray<{ delta: { role?: string; content?: string }; finish_reason: string | null }>; usage?: unknown }>
        expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant")
        expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("answer 0")
        expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe("stop")
        expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 })
      }))

    it.scopedLive("tenants never share entries; a model with shared: true shares them", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        const body = chatRequest("cached", { seed: 2 })
        expect((yield* postChat(gateway.baseUrl, body, asKey("team-a"))).headers.get("x-llm-proxy-cache")).toBe("miss")
        const other = yield* postChat(gateway.baseUrl, body, asKey("team-b"))
        expect(other.headers.get("x-llm-proxy-cache")).toBe("miss")
        expect(JSON.parse(other.text).choices[0].message.content).toBe("answer 1")
        expect((yield* postChat(gateway.baseUrl, body, asKey("team-a"))).headers.get("x-llm-proxy-cache")).toBe("hit")
        expect((yield* postChat(gateway.baseUrl, body)).headers.get("x-llm-proxy-cache")).toBe("miss") // the operator is a tenant too
        expect(upstream.calls).toHaveLength(3)

        const sharedBody = chatRequest("shared", { seed: 2 })
        expect((yield* postChat(gateway.baseUrl, sharedBody, asKey("team-a"))).headers.get("x-llm-proxy-cache")).toBe("miss")
        const sharedHit = yield* postChat(gateway.baseUrl, sharedBody, asKey("team-b"))
        expect(sharedHit.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(JSON.parse(sharedHit.text).choices[0].message.content).toBe("answer 3")
        expect(upstream.calls).toHaveLength(4)
      }))

    it.scopedLive("Cache-Control: no-cache skips the lookup and stores the fresh answer; no-store neither reads nor writes", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        const body = chatRequest("cached", { seed: 3 })
        yield* postChat(gateway.baseUrl, body)
        const refreshed = yield* postChat(gateway.baseUrl, body, { "cache-control": "no-cache" })
        expect(refreshed.headers.get("x-llm-proxy-cache")).toBe("bypass")
        expect(JSON.parse(refreshed.text).choices[0].message.content).toBe("answer 1")
        const hit = yield* postChat(gateway.baseUrl, body)
        expect(hit.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(JSON.parse(hit.text).choices[0].message.content).toBe("answer 1")

        const private_ = chatRequest("cached", { seed: 4 })
        const notStored = yield* postChat(gateway.baseUrl, private_, { "cache-control": "private, No-Store" })
        expect(notStored.headers.get("x-llm-proxy-cache")).toBe("bypass")
        expect((yield* postChat(gateway.baseUrl, private_)).headers.get("x-llm-proxy-cache")).toBe("miss")
        // no-store does not read either
        const unread = yield* postChat(gateway.baseUrl, private_, { "cache-control": "no-store" })
        expect(unread.headers.get("x-llm-proxy-cache")).toBe("bypass")
        expect(upstream.calls).toHaveLength(5)
        // a model without a cache says nothing about one
        const plain = yield* postChat(gateway.baseUrl, chatRequest("plain"))
        expect(plain.headers.get("x-llm-proxy-cache")).toBeNull()
      }))

    it.scopedLive("a stream the client left, or that broke off, is never stored", () =>
      Effect.gen(function* () {
        const upstream = yield* startUpstream("openai", (call) =>
          call.index === 0
            ? sse(richFrames("cut").slice(0, 4), { then: "stall" })
            : call.index === 1
              ? sse(richFrames("broken").slice(0, 5), { then: "destroy" })
              : sse(richFrames(`whole ${call.index}`))
        )
        const gateway = yield* gatewayWith(mount, upstream)
        // the client leaves mid-stream
        const left = yield* Effect.promise(async () => {
          const controller = new AbortController()
          const response = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${testKey}`, "content-type": "application/json" },
            body: JSON.stringify(streamBody()),
            signal: controller.signal
          })
          const reader = response.body!.getReader()
          await reader.read()
          controller.abort()
          return response.headers.get("x-llm-proxy-cache")
        })
        expect(left).toBe("miss")
        yield* Effect.promise(() => upstream.calls[0]!.closed)
        // the upstream breaks off
        const broken = yield* postChat(gateway.baseUrl, streamBody())
        expect(broken.headers.get("x-llm-proxy-cache")).toBe("miss")
        expect(broken.text).toContain('"error"')
        // so the third is a miss too, and only this whole one is stored
        const whole = yield* postChat(gateway.baseUrl, streamBody())
        expect(whole.headers.get("x-llm-proxy-cache")).toBe("miss")
        const hit = yield* postChat(gateway.baseUrl, streamBody())
        expect(hit.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(ssePayloads(hit.text)).toEqual(ssePayloads(whole.text))
        expect(upstream.calls).toHaveLength(3)
      }))

    it.scopedLive("a hit counts a request for its key, but no tokens and no spend", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream)
        const body = chatRequest("cached", { seed: 5 })
        yield* postChat(gateway.baseUrl, body, asKey("team-a"))
        const hit = yield* postChat(gateway.baseUrl, body, asKey("team-a"))
        expect(hit.headers.get("x-llm-proxy-cache")).toBe("hit")
        expect(JSON.parse(hit.text).usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 })
        let rows: ReadonlyArray<{ requests: number; prompt_tokens: number; completion_tokens: number }> = []
        for (let attempt = 0; attempt < 100; attempt++) {
          const answer = yield* call(`${gateway.baseUrl}/admin/usage?key=team-a`, { headers: { authorization: `Bearer ${testKey}` } })
          rows = (JSON.parse(answer.text) as { rows: typeof rows }).rows
          if (rows[0]?.requests === 2) break
          yield* Effect.sleep("20 millis")
        }
        expect(rows).toEqual([expect.objectContaining({ model: "cached", requests: 2, prompt_tokens: 7, completion_tokens: 3 })])
        const metrics = yield* call(`${gateway.baseUrl}/metrics`, { headers: { authorization: `Bearer ${testKey}` } })
        expect(metrics.text).toContain('llm_proxy_cache_requests_total{model="cached",result="hit"}')
        expect(metrics.text).toContain('llm_proxy_cache_writes_total{model="cached",outcome="stored"}')
      }))

    it.scopedLive("the memory store keeps at most max_entries: the least recently used goes first", () =>
      Effect.gen(function* () {
        const upstream = yield* startCountingUpstream
        const gateway = yield* gatewayWith(mount, upstream, { cache: { max_entries: 3 } })
        for (const seed of [10, 11, 12]) yield* postChat(gateway.baseUrl, chatRequest("cached", { seed }))
        // 10 is used again: 11 is now the least recently used
        expect((yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 10 }))).headers.get("x-llm-proxy-cache")).toBe("hit")
        yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 13 }))
        expect((yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 11 }))).headers.get("x-llm-proxy-cache")).toBe("miss")
        expect((yield* postChat(gateway.baseUrl, chatRequest("cached", { seed: 13 }))).headers.get("x-llm-proxy-cache")).toBe("hit")
      }))
  })
}

describe("the response cache and the openai SDK", () => {
  it.scopedLive("the SDK reads a replayed stream as it read the original", () =>
    Effect.gen(function* () {
      const upstream = yield* startCountingUpstream
      const gateway = yield* gatewayWith("fast", upstream)
      const client = new OpenAI({ baseURL: `${gateway.baseUrl}/v1`, apiKey: secretOf("team-a"), maxRetries: 0 })
      const run = () =>
        Effect.promise(async () => {
          const stream = client.chat.completions.stream({
            model: "cached",
            messages: [{ role: "user", content: "hi" }],
            stream_options: { include_usage: true }
          })
          const chunks: Array<unknown> = []
          for await (const chunk of stream) chunks.push(chunk)
          return { chunks, completion: await stream.finalChatCompletion() }
        })
      const first = yield* run()
      const second = yield* run()
      expect(upstream.calls).toHaveLength(1)
      expect(second.chunks).toEqual(first.chunks)
      expect(second.completion.choices[0]?.message.tool_calls?.[0]?.function).toEqual({ name: "lookup", arguments: '{"q":"cats"}' })
      expect(second.completion.usage?.total_tokens).toBe(16)
    }))
})
