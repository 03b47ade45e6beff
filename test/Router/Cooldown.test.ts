/**
 * Cooldowns: a deployment that keeps failing goes to the back of its model's order for a while.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Stream, TestClock } from "effect"
import type { ChatCompletion, ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import type { StreamProvider, ProviderErrorReason } from "../../src/Providers/Provider.js"
import * as Timer from "../../src/Timer.js"
import * as Registry from "../../src/Router/Registry.js"
import type { RouterSettings } from "../../src/Router/RegistryFile.js"
import * as Router from "../../src/Router/Router.js"

const request: ChatCompletionRequest = { model: "m", messages: [{ role: "user", content: "hi" }] }

const completion = (model: string): ChatCompletion => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model,
  choices: [{ index: 0, message: { role: "assistant", content: "ok", refusal: null }, finish_reason: "stop", logprobs: null }]
})

/** A provider that counts its calls and fails with `reason`, or answers when `reason` is undefined. */
const counting = (reason: ProviderErrorReason | undefined) => {
  const calls = { count: 0 }
  const provider: StreamProvider = {
    complete: (req) =>
      Effect.suspend(() => {
        calls.count++
        return reason === undefined
          ? Effect.succeed(completion(req.model))
          : Effect.fail(new ProviderError({ reason, message: reason, provider: "test" }))
      }),
    stream: () => Stream.die("not used")
  }
  return { calls, provider }
}

const routerWith = (broken: StreamProvider, healthy: StreamProvider, cooldown: Partial<RouterSettings["cooldown"]>) =>
  Router.layer.pipe(
    Layer.provide(
      Registry.layerStatic(
        [
          // the broken one is drawn first all but once in a million
          { name: "m", provider: broken, weight: 1_000_000 },
          { name: "m", provider: healthy, weight: 1 }
        ],
        {
          retry: { max_retries: 0, initial_delay_ms: 0, max_delay_ms: 0 },
          timeouts: { request_ms: 60_000, first_token_ms: 60_000 },
          cooldown: { failures: 2, duration_ms: 10_000, ...cooldown }
        }
      )
    ),
    Layer.provide(Timer.layerTest)
  )

const completeOnce = Effect.flatMap(Router.Router, (router) => router.complete(request))

describe("deployment cooldowns", () => {
  it.effect("after `failures` failed requests in a row the deployment is tried last, until the cooldown ends", () => {
    const broken = counting("Unavailable")
    const healthy = counting(undefined)
    return Effect.gen(function* () {
      expect((yield* completeOnce).attempts).toBe(2)
      expect((yield* completeOnce).attempts).toBe(2)
      expect(broken.calls.count).toBe(2)
      // cooling: the healthy deployment answers at once and the broken one is not called
      const cooled = yield* completeOnce
      expect(cooled.attempts).toBe(1)
      expect(broken.calls.count).toBe(2)
      yield* TestClock.adjust(9_999)
      expect((yield* completeOnce).attempts).toBe(1)
      expect(broken.calls.count).toBe(2)
      yield* TestClock.adjust(2)
      expect((yield* completeOnce).attempts).toBe(2)
      expect(broken.calls.count).toBe(3)
    }).pipe(Effect.provide(routerWith(broken.provider, healthy.provider, {})))
  })

  it.effect("the caller's own mistakes do not cool a deployment down", () => {
    const refusing = counting("InvalidRequest")
    const healthy = counting(undefined)
    return Effect.gen(function* () {
      for (let index = 0; index < 4; index++) {
        const error = yield* Effect.flip(completeOnce)
        expect(error._tag === "ProviderError" && error.reason).toBe("InvalidRequest")
      }
      expect(refusing.calls.count).toBe(4)
      expect(healthy.calls.count).toBe(0)
    }).pipe(Effect.provide(routerWith(refusing.provider, healthy.provider, {})))
  })

  it.effect("failures: 0 turns cooldowns off", () => {
    const broken = counting("Unavailable")
    const healthy = counting(undefined)
    return Effect.gen(function* () {
      for (let index = 0; index < 5; index++) expect((yield* completeOnce).attempts).toBe(2)
      expect(broken.calls.count).toBe(5)
    }).pipe(Effect.provide(routerWith(broken.provider, healthy.provider, { failures: 0 })))
  })
})
