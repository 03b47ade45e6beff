import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startGateway } from "../support/Gateway.js"

describe("gateway over a real socket", () => {
  it.scoped("answers a chat completion from the mock model", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const response = yield* Effect.promise(() =>
        fetch(`${gateway.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { ...gateway.auth, "content-type": "application/json" },
          body: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "ping pong" }] })
        })
      )
      expect(response.status).toBe(200)
      const body = (yield* Effect.promise(() => response.json())) as { choices: Array<{ message: { content: string } }> }
      expect(body.choices[0]?.message.content).toBe("ping pong")
    }))
})
