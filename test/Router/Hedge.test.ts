/**
 * Hedged requests in the Router, on the TestClock (the Timer starts the hedges): an attempt that has produced nothing
 * (no completion, no first chunk) after `after_ms` gets a hedge on the next deployment (the same one when alone), up
 * to `max`; the first to produce wins and the others are interrupted; a failing hedge does not end a request whose
 * first attempt still runs; a caller's own mistake does; the request fails only when every attempt has.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Stream, TestClock } from "effect"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import { pullOf } from "../../src/Providers/ChunkSource.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import type { StreamProvider } from "../../src/Providers/Provider.js"
import { layerStatic } from "../../src/Router/Registry.js"
import type { StaticDeployment } from "../../src/Router/Registry.js"
import * as RouterModule from "../../src/Router/Router.js"
import * as Timer from "../../src/Timer.js"
import * as Metrics from "../../src/Metrics.js"

/** llm_proxy_hedges_total{model="m",outcome} now. */
const hedgesCounted = (outcome: string) => Metrics.hedges.series.get(`m\u0000${outcome}`)?.value ?? 0

const request: ChatCompletionRequest = { model: "m", messages: [{ role: "user", content: "hi" }] }

const completion = (text: string): ChatCompletion => ({
  id: "c",
  object: "chat.completion",
  created: 0,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop", logprobs: null }]
})

const chunk = (text: string): ChatCompletionChunk => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 0,
  model: "m",
  choices: [{ index: 0, delta: { content: text }, finish_reason: null }]
})

/** What one call of a fake does: answer after `afterMs` (never when undefined), or fail at once. */
type Behaviour = { readonly answer: string; readonly afterMs?: number } | ProviderError

interface Fake {
  readonly provider: StreamProvider
  readonly calls: Array<number>
  readonly interrupted: { count: number }
}

/** A provider whose n-th call follows `script[n]` (the last repeats); it notes when calls start and are interrupted. */
const fake = (script: ReadonlyArray<Behaviour>): Fake => {
  const calls: Array<number> = []
  const interrupted = { count: 0 }
  const next = Effect.flatMap(TestClock.currentTimeMillis, (now) => {
    calls.push(now)
    return Effect.succeed(script[Math.min(calls.length - 1, script.length - 1)]!)
  })
  const wait = (behaviour: Behaviour) =>
    behaviour instanceof ProviderError
      ? Effect.fail(behaviour)
      : (behaviour.afterMs === undefined ? Effect.never : Effect.sleep(behaviour.afterMs)).pipe(
          Effect.as(behaviour.answer),
          Effect.onInterrupt(() => Effect.sync(() => interrupted.count++))
        )
  return {
    calls,
    interrupted,
    provider: {
      complete: () => Effect.flatMap(next, (behaviour) => Effect.map(wait(behaviour), completion)),
      stream: () => Stream.unwrap(Effect.flatMap(next, (behaviour) => Effect.map(wait(behaviour), (text) => Stream.make(chunk(text)))))
    }
  }
}

const fail = (reason: "Unavailable" | "InvalidRequest") => new ProviderError({ reason, message: `scripted ${reason}`, provider: "fake" })

/** Deployments of `m` in a fixed order (weights so far apart that the weighted draw never reorders them). */
const ordered = (fakes: ReadonlyArray<Fake>, hedge: { after_ms: number; max: number }): ReadonlyArray<StaticDeployment> =>
  fakes.map((entry, index) => ({ name: "m", provider: entry.provider, weight: 10 ** (9 - 6 * index), hedge, providerKind: `p${index}` }))

const withRouter = <A, E>(deployments: ReadonlyArray<StaticDeployment>, body: (router: RouterModule.Router["Type"]) => Effect.Effect<A, E>) =>
  Effect.flatMap(RouterModule.Router, body).pipe(
    Effect.provide(
      RouterModule.layer.pipe(
        Layer.provide(layerStatic(deployments, { retry: { max_retries: 0, initial_delay_ms: 10, max_delay_ms: 10 } })),
        Layer.provide(Timer.layerTest)
      )
    )
  )

const settledAfter = <A, E>(fiber: Fiber.Fiber<A, E>, ms: number) =>
  Effect.zipRight(TestClock.adjust(ms), Effect.map(Fiber.poll(fiber), Option.isSome))

describe("hedged requests (TestClock)", () => {
  it.effect("a completion still pending after after_ms gets a hedge on the next deployment, which wins; the first is interrupted", () =>
    Effect.gen(function* () {
      const slow = fake([{ answer: "slow" }])
      const fast = fake([{ answer: "fast", afterMs: 50 }])
      yield* withRouter(ordered([slow, fast], { after_ms: 800, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(request))
          expect(yield* settledAfter(fiber, 799)).toBe(false)
          expect(fast.calls).toEqual([])
          expect(yield* settledAfter(fiber, 1)).toBe(false)
          expect(fast.calls).toEqual([800])
          expect(yield* settledAfter(fiber, 50)).toBe(true)
          const result = yield* Fiber.join(fiber)
          expect(result.completion.choices[0]?.message.content).toBe("fast")
          expect(result.attempts).toBe(2)
          expect(result.hedge).toMatchObject({ wonBy: 2, started: 2 })
          expect(result.hedge?.cancelled.map((deployment) => deployment.providerKind)).toEqual(["p0"])
          expect(slow.interrupted.count).toBe(1)
        })
      )
    }))

  it.effect("a stream without its first chunk after after_ms is hedged the same way", () =>
    Effect.gen(function* () {
      const slow = fake([{ answer: "slow" }])
      const fast = fake([{ answer: "fast", afterMs: 20 }])
      yield* withRouter(ordered([slow, fast], { after_ms: 300, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.stream(request))
          expect(yield* settledAfter(fiber, 320)).toBe(true)
          const routed = yield* Fiber.join(fiber)
          expect(routed.hedge?.wonBy).toBe(2)
          const first = yield* pullOf(routed.source)
          expect([...first][0]?.choices[0]?.delta.content).toBe("fast")
          expect(slow.interrupted.count).toBe(1)
          routed.source.close()
        })
      )
    }))

  it.effect("an answer before after_ms starts no hedge and says nothing of one", () =>
    Effect.gen(function* () {
      const first = fake([{ answer: "first", afterMs: 799 }])
      const second = fake([{ answer: "second", afterMs: 1 }])
      yield* withRouter(ordered([first, second], { after_ms: 800, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(request))
          yield* TestClock.adjust(2000)
          const result = yield* Fiber.join(fiber)
          expect(result.completion.choices[0]?.message.content).toBe("first")
          expect(result.hedge).toBeUndefined()
          expect(second.calls).toEqual([])
        })
      )
    }))

  it.effect("alone, a deployment is hedged with itself, up to max more attempts, one after_ms apart", () =>
    Effect.gen(function* () {
      const only = fake([{ answer: "a" }, { answer: "b" }, { answer: "c", afterMs: 5 }])
      yield* withRouter(ordered([only], { after_ms: 100, max: 2 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(request))
          expect(yield* settledAfter(fiber, 204)).toBe(false)
          expect(only.calls).toEqual([0, 100, 200])
          expect(yield* settledAfter(fiber, 1)).toBe(true)
          const result = yield* Fiber.join(fiber)
          expect(result.completion.choices[0]?.message.content).toBe("c")
          expect(result.hedge).toMatchObject({ wonBy: 3, started: 3 })
          expect(hedgesCounted("won-by-3")).toBeGreaterThanOrEqual(1)
          expect(result.hedge?.cancelled).toHaveLength(2)
          expect(only.interrupted.count).toBe(2)
          // no further hedge after max
          yield* TestClock.adjust(1000)
          expect(only.calls).toHaveLength(3)
        })
      )
    }))

  it.effect("a failing hedge does not end the request while the first attempt runs; the first wins", () =>
    Effect.gen(function* () {
      const slow = fake([{ answer: "slow", afterMs: 1000 }])
      const broken = fake([fail("Unavailable")])
      yield* withRouter(ordered([slow, broken], { after_ms: 200, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(request))
          yield* TestClock.adjust(1000)
          const result = yield* Fiber.join(fiber)
          expect(result.completion.choices[0]?.message.content).toBe("slow")
          expect(result.hedge?.wonBy).toBe(1)
          // the hedge failed on `broken`, then fell back to `slow` (its own attempt there was cancelled)
          expect(broken.calls).toEqual([200])
          expect(slow.calls).toEqual([0, 200])
        })
      )
    }))

  it.effect("a caller's own mistake in any attempt ends the request at once; every attempt failing ends it too", () =>
    Effect.gen(function* () {
      const failedBefore = hedgesCounted("failed")
      const slow = fake([{ answer: "slow" }])
      const refusing = fake([fail("InvalidRequest")])
      yield* withRouter(ordered([slow, refusing], { after_ms: 200, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.complete(request)))
          yield* TestClock.adjust(200)
          const error = yield* Fiber.join(fiber)
          expect(error._tag === "ProviderError" && error.reason).toBe("InvalidRequest")
          expect(slow.interrupted.count).toBe(1)
          expect(hedgesCounted("failed")).toBe(failedBefore + 1)
        })
      )
      const down = fake([fail("Unavailable")])
      yield* withRouter(ordered([down], { after_ms: 200, max: 1 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.complete(request)))
          // the first attempt failed before after_ms: no hedge is started after it
          yield* TestClock.adjust(1000)
          const error = yield* Fiber.join(fiber)
          expect(error._tag === "ProviderError" && error.reason).toBe("Unavailable")
          expect(down.calls).toHaveLength(1)
          // no hedge ran: nothing counted as a hedged request
          expect(hedgesCounted("failed")).toBe(failedBefore + 1)
        })
      )
    }))
})
