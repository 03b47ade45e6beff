/**
 * Hedged requests through the whole gateway, over both mounts, with real fake upstreams: a deployment that stalls
 * its first token beside one that answers — the client's time to first token is about `after_ms` plus the fast
 * one's, the stalled upstream sees its connection closed, `x-llm-proxy-hedged` says who won, and usage counts both
 * attempts' prompts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { sha256Hex } from "../../src/Governance/Keys.js"
import { mounts, startGateway, testKey } from "../support/Gateway.js"
import type { Mount } from "../support/Gateway.js"
import { deploymentOf, hang, OpenAi, registryFromDocument, sse, startUpstream } from "../support/FakeUpstreams.js"
import type { FakeUpstream } from "../support/FakeUpstreams.js"
import { call, chatRequest, postChat } from "../support/Http.js"
import { streamedContent } from "../support/Sse.js"

const secret = `sk-llmp-hedger-${"h".repeat(24)}`
const afterMs = 250

/** `hedged`: the stalling upstream first (a weight the draw never puts second), the fast one next. */
const gatewayWith = (mount: Mount, stalling: FakeUpstream, fast: FakeUpstream) =>
  startGateway({
    mount,
    registry: registryFromDocument({
      models: [
        { ...deploymentOf("hedged", stalling), weight: 1e9, hedge: { after_ms: afterMs, max: 1 } },
        { ...deploymentOf("hedged", fast), weight: 1e-9 }
      ],
      keys: [{ id: "hedger", key_sha256: sha256Hex(secret) }],
      settings: { retry: { max_retries: 0 } }
    })
  })

/** Posts a stream request and times its first content frame. */
const timedStream = (baseUrl: string) =>
  Effect.promise(async () => {
    const started = performance.now()
    const response = await fetch(`${baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify(chatRequest("hedged", { stream: true }))
    })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    let firstTokenMs: number | undefined
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      if (firstTokenMs === undefined && text.includes('"content":"tok')) firstTokenMs = performance.now() - started
    }
    return { headers: response.headers, text, firstTokenMs: firstTokenMs ?? Number.NaN }
  })

const usageRow = (baseUrl: string, done: (row: { requests: number; prompt_tokens: number; completion_tokens: number }) => boolean) =>
  Effect.gen(function* () {
    let row = { requests: 0, prompt_tokens: 0, completion_tokens: 0 }
    for (let attempt = 0; attempt < 100 && !done(row); attempt++) {
      const answer = yield* call(`${baseUrl}/admin/usage?key=hedger`, { headers: { authorization: `Bearer ${testKey}` } })
      row = (JSON.parse(answer.text) as { rows: Array<typeof row> }).rows[0] ?? row
      if (!done(row)) yield* Effect.sleep("20 millis")
    }
    return row
  })

for (const mount of mounts) {
  describe(`hedged requests (${mount} mount)`, () => {
    it.scopedLive("a stalled first token is hedged: first token at ~after_ms plus the fast one's, the stalled upstream closed, both prompts counted", () =>
      Effect.gen(function* () {
        const stalling = yield* startUpstream("openai", [sse([], { then: "stall" })])
        const fast = yield* startUpstream("openai", [OpenAi.stream(["tok1 ", "tok2"], { usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } }, { gapMs: 1 })])
        const gateway = yield* gatewayWith(mount, stalling, fast)
        const answer = yield* timedStream(gateway.baseUrl)
        expect(streamedContent(answer.text)).toBe("tok1 tok2")
        expect(answer.headers.get("x-llm-proxy-hedged")).toBe("won-by-2")
        expect(answer.headers.get("x-llm-proxy-attempts")).toBe("2")
        expect(answer.firstTokenMs).toBeGreaterThanOrEqual(afterMs)
        expect(answer.firstTokenMs).toBeLessThan(afterMs + 400)
        expect(stalling.calls).toHaveLength(1)
        expect(fast.calls).toHaveLength(1)
        // the stalled upstream's connection was closed as soon as the hedge won
        const closedAt = yield* Effect.promise(() => stalling.calls[0]!.closed)
        expect(stalling.calls[0]!.closedByClient).toBe(true)
        expect(closedAt - fast.calls[0]!.receivedAt).toBeLessThan(300)
        // usage: the winner's tokens, and the cancelled attempt's prompt
        const row = yield* usageRow(gateway.baseUrl, (candidate) => candidate.requests === 1)
        expect(row).toMatchObject({ requests: 1, prompt_tokens: 18, completion_tokens: 2 })
        const metrics = yield* call(`${gateway.baseUrl}/metrics`, { headers: { authorization: `Bearer ${testKey}` } })
        // (the metrics are the process's: other tests count there too)
        expect(metrics.text).toMatch(/llm_proxy_hedges_total\{model="hedged",outcome="won-by-2"\} [1-9]/)
        expect(metrics.text).toMatch(/llm_proxy_upstream_attempts_total\{model="hedged",provider="openai",outcome="cancelled"\} [1-9]/)
      }))

    it.scopedLive("a completion that does not come is hedged; one that comes in time is not", () =>
      Effect.gen(function* () {
        const stalling = yield* startUpstream("openai", (upstreamCall) => (upstreamCall.index === 0 ? hang : OpenAi.completion({ content: "slow but in time" })))
        const fast = yield* startUpstream("openai", [OpenAi.completion({ content: "from the hedge" })])
        const gateway = yield* gatewayWith(mount, stalling, fast)
        const started = performance.now()
        const hedged = yield* postChat(gateway.baseUrl, chatRequest("hedged"), { authorization: `Bearer ${secret}` })
        const tookMs = performance.now() - started
        expect(JSON.parse(hedged.text).choices[0].message.content).toBe("from the hedge")
        expect(hedged.headers.get("x-llm-proxy-hedged")).toBe("won-by-2")
        expect(tookMs).toBeGreaterThanOrEqual(afterMs)
        expect(tookMs).toBeLessThan(afterMs + 400)
        yield* Effect.promise(() => stalling.calls[0]!.closed)
        expect(stalling.calls[0]!.closedByClient).toBe(true)
        // in time: no hedge, no header
        const plain = yield* postChat(gateway.baseUrl, chatRequest("hedged"), { authorization: `Bearer ${secret}` })
        expect(JSON.parse(plain.text).choices[0].message.content).toBe("slow but in time")
        expect(plain.headers.get("x-llm-proxy-hedged")).toBeNull()
        expect(fast.calls).toHaveLength(1)
      }))
  })
}
