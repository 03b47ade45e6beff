/**
 * The OpenAI-compatible provider against a real fake upstream: what it sends of a conversation whose tool call ids
 * carry another dialect's state (a Gemini signature the gateway attached), e.g. after a fallback.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as OpenAiCompatible from "../../src/Providers/OpenAiCompatible/Provider.js"
import { carry } from "../../src/Providers/ToolCallCarriage.js"
import * as Transport from "../../src/Providers/Upstream/Transport.js"
import { OpenAi, startUpstream } from "../support/FakeUpstreams.js"

describe("OpenAI-compatible provider", () => {
  it.scopedLive("sends the plain ids of tool calls that carry another dialect's state", () =>
    Effect.gen(function* () {
      const upstream = yield* startUpstream("openai", [OpenAi.completion({ content: "ok" })])
      const provider = yield* OpenAiCompatible.make({ baseUrl: upstream.baseUrl, apiKey: Redacted.make("sk-x"), headers: {} })
      const carried = carry("call_gemini_1", { kind: "gemini", thoughtSignature: "c2lnbmF0dXJlLWJ5dGVz" })
      expect(carried).not.toBe("call_gemini_1")
      yield* provider.complete({
        model: "m",
        messages: [
          { role: "user", content: "weather?" },
          { role: "assistant", content: null, tool_calls: [{ id: carried, type: "function", function: { name: "weather", arguments: "{}" } }] },
          { role: "tool", tool_call_id: carried, content: "sunny" }
        ]
      })
      const sent = upstream.calls[0]?.body as { messages: ReadonlyArray<{ tool_calls?: ReadonlyArray<{ id: string }>; tool_call_id?: string }> }
      expect(sent.messages[1]?.tool_calls?.[0]?.id).toBe("call_gemini_1")
      expect(sent.messages[2]?.tool_call_id).toBe("call_gemini_1")
    }).pipe(Effect.provide(Transport.layer())))
})
