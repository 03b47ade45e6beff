import { describe, expect, it } from "@effect/vitest"
import { Channel, Chunk, Clock, Context, Effect, Either, Exit, Fiber, Layer, Option, Random, Stream, TestClock } from "effect"
import type { ModelNotFound } from "../../src/Errors.js"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from "../../src/OpenAi/Schemas.js"
import { ProviderError } from "../../src/Providers/Provider.js"
import { toProvider } from "../../src/Providers/Provider.js"
import type { StreamProvider, ProviderErrorReason } from "../../src/Providers/Provider.js"
import * as Timer from "../../src/Timer.js"
import { layerStatic, makeRegistry } from "../../src/Router/Registry.js"
import type { Deployment, StaticDeployment } from "../../src/Router/Registry.js"
import type { RouterSettings } from "../../src/Router/RegistryFile.js"
import * as RouterModule from "../../src/Router/Router.js"

type RouterService = Context.Tag.Service<typeof RouterModule.Router>

// ---------------------------------------------------------------------------------------------------------------
// Fakes

const requestFor = (model: string): ChatCompletionRequest => ({ model, messages: [{ role: "user", content: "hi" }] })

const completionOf = (model: string, text: string): ChatCompletion => ({
  id: "chatcmpl-fake",
  object: "chat.completion",
  created: 0,
  model,
  choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop", logprobs: null }]
})

const chunkOf = (model: string, text: string): ChatCompletionChunk => ({
  id: "chatcmpl-fake",
  object: "chat.completion.chunk",
  created: 0,
  model,
  choices: [{ index: 0, delta: { content: text }, finish_reason: null }]
})

const failure = (reason: ProviderErrorReason, retryAfterMs?: number): ProviderError =>
  new ProviderError({ reason, message: `scripted ${reason}`, provider: "fake", retryAfterMs })

/** One step of a script: fail with this error, or answer (the string is the answer's text). */
type Step = ProviderError | string

interface Call {
  /** TestClock milliseconds when the call started. */
  readonly at: number
  /** The model id the provider was asked for (the deployment's upstream model). */
  readonly model: string
}

interface Fake {
  readonly provider: StreamProvider
  readonly calls: Array<Call>
  /** How many of its streams have been finalized (upstream released). */
  readonly released: { count: number }
}

/** Every call of every fake, in order, by label. */
type Journal = Array<string>

/**
 * A Provider whose n-th call follows `complete[n]` / `stream(n)` (a completion script repeats its last step).
 * Answers carry the upstream model id, so the router's renaming shows.
 */
const makeFake = (
  label: string,
  behaviour: {
    readonly complete?: ReadonlyArray<Step>
    readonly stream?: (call: number, model: string) => Stream.Stream<ChatCompletionChunk, ProviderError>
  },
  journal: Journal = []
): Fake => {
  const calls: Array<Call> = []
  const released = { count: 0 }
  const record = (request: ChatCompletionRequest) =>
    Effect.map(Clock.currentTimeMillis, (at) => {
      calls.push({ at, model: request.model })
      journal.push(label)
      return calls.length - 1
    })
  const script = behaviour.complete ?? ["ok"]
  return {
    calls,
    released,
    provider: {
      complete: (request) =>
        Effect.flatMap(record(request), (call) => {
          const step = script[Math.min(call, script.length - 1)]!
          return typeof step === "string" ? Effect.succeed(completionOf(request.model, step)) : Effect.fail(step)
        }),
      stream: (request) =>
        Stream.unwrap(
          Effect.map(record(request), (call) =>
            (behaviour.stream ?? (() => Stream.make(chunkOf(request.model, "ok"))))(call, request.model)
          )
        ).pipe(Stream.ensuring(Effect.sync(() => released.count++)))
    }
  }
}

/** A stream that emits `texts` (each after `gapMs`, when given) and then follows `end`. */
const chunks = (
  model: string,
  texts: ReadonlyArray<string>,
  end: Stream.Stream<ChatCompletionChunk, ProviderError> = Stream.empty,
  gapMs = 0
): Stream.Stream<ChatCompletionChunk, ProviderError> =>
  Stream.concat(
    Stream.fromIterable(texts.map((text, index) => ({ text, index }))).pipe(
      Stream.mapEffect(({ index, text }) =>
        index > 0 && gapMs > 0 ? Effect.as(Effect.sleep(gapMs), chunkOf(model, text)) : Effect.succeed(chunkOf(model, text))
      )
    ),
    end
  )

/** A stream that writes `count` empty chunk batches, as a parser does while it reads keep-alives. */
const emptyBatches = (count: number): Stream.Stream<ChatCompletionChunk, ProviderError> =>
  Stream.fromChannel(
    Channel.writeAll(...Array.from({ length: count }, () => Chunk.empty<ChatCompletionChunk>()))
  )

const settingsWith = (
  retry: Partial<RouterSettings["retry"]> = {},
  timeouts: Partial<RouterSettings["timeouts"]> = {}
): Partial<RouterSettings> => ({
  retry: { max_retries: 2, initial_delay_ms: 200, max_delay_ms: 8000, ...retry },
  timeouts: { request_ms: 600_000, first_token_ms: 60_000, ...timeouts }
})

/** Runs `body` with a Router over the given deployments. */
const withRouter = <A, E>(
  deployments: ReadonlyArray<StaticDeployment>,
  settings: Partial<RouterSettings>,
  body: (router: RouterService) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.flatMap(RouterModule.Router, body).pipe(
    Effect.provide(RouterModule.layer.pipe(Layer.provide(layerStatic(deployments, settings)), Layer.provide(Timer.layerTest)))
  )

/**
 * Moves TestClock forward in small steps. One big `TestClock.adjust` may fire a later timer (a timeout) before a
 * fiber woken by an earlier one has reached its next suspension; real time never does that.
 */
const advance = (ms: number, step = 50): Effect.Effect<void> =>
  Effect.gen(function* () {
    let left = ms
    do {
      const by = Math.min(step, left)
      yield* TestClock.adjust(by)
      left -= by
    } while (left > 0)
  })

/** Lets forked fibers run up to `ms` more of TestClock, then says whether `fiber` has finished. */
const doneAfter = <A, E>(fiber: Fiber.Fiber<A, E>, ms: number) =>
  Effect.zipRight(advance(ms), Effect.map(Fiber.poll(fiber), Option.isSome))

const gaps = (calls: ReadonlyArray<Call>): ReadonlyArray<number> =>
  calls.slice(1).map((call, index) => call.at - calls[index]!.at)

const expectProviderError = (error: ModelNotFound | ProviderError, reason: ProviderErrorReason) => {
  expect(error._tag).toBe("ProviderError")
  if (error._tag === "ProviderError") expect(error.reason).toBe(reason)
}

// ---------------------------------------------------------------------------------------------------------------

describe("Router.complete: retries", () => {
  it.effect("waits 0.8x-1.2x of initial_delay_ms before the first retry", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { complete: [failure("Unavailable"), "fine"] })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(requestFor("a")))
          yield* advance(159)
          expect(fake.calls).toHaveLength(1)
          yield* advance(81)
          expect(fake.calls).toHaveLength(2)
          const result = yield* Fiber.join(fiber)
          expect(result.attempts).toBe(2)
          expect(result.completion.choices[0]?.message.content).toBe("fine")
        })
      )
    }))

  it.effect("doubles the delay for the next retry (several seeds)", () =>
    Effect.gen(function* () {
      for (const seed of [1, 2, 3, 4, 5]) {
        const fake = makeFake("a", { complete: [failure("Unavailable"), failure("RateLimited"), "fine"] })
        const result = yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(router.complete(requestFor("a")))
            yield* advance(1000)
            return yield* Fiber.join(fiber)
          })
        ).pipe(Effect.withRandom(Random.make(seed)))
        expect(result.attempts).toBe(3)
        const [first, second] = gaps(fake.calls)
        expect(first).toBeGreaterThanOrEqual(160)
        expect(first).toBeLessThanOrEqual(240)
        expect(second).toBeGreaterThanOrEqual(320)
        expect(second).toBeLessThanOrEqual(480)
      }
    }))

  it.effect("caps every delay at max_delay_ms", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        complete: [failure("Unavailable"), failure("Unavailable"), failure("Unavailable"), failure("Unavailable"), "fine"]
      })
      const result = yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({ max_retries: 4, initial_delay_ms: 200, max_delay_ms: 300 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(router.complete(requestFor("a")))
            yield* advance(1500)
            return yield* Fiber.join(fiber)
          })
      )
      expect(result.attempts).toBe(5)
      const [first, ...rest] = gaps(fake.calls)
      expect(first).toBeGreaterThanOrEqual(160)
      expect(first).toBeLessThanOrEqual(240)
      expect(rest).toHaveLength(3)
      for (const gap of rest) expect(gap).toBeCloseTo(300, 6)
    }))

  it.effect("waits exactly the upstream's retryAfterMs instead of the computed delay", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { complete: [failure("RateLimited", 5000), "fine"] })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.complete(requestFor("a")))
          yield* advance(4999)
          expect(fake.calls).toHaveLength(1)
          yield* advance(1)
          expect(fake.calls).toHaveLength(2)
          expect((yield* Fiber.join(fiber)).attempts).toBe(2)
        })
      )
    }))

  it.effect("takes a retryAfterMs shorter than the computed delay, and one longer than max_delay_ms", () =>
    Effect.gen(function* () {
      const short = makeFake("a", { complete: [failure("RateLimited", 10), "fine"] })
      const long = makeFake("b", { complete: [failure("Unavailable", 20_000), "fine"] })
      yield* withRouter(
        [
          { name: "a", provider: short.provider },
          { name: "b", provider: long.provider }
        ],
        settingsWith({ max_delay_ms: 8000 }),
        (router) =>
          Effect.gen(function* () {
            const a = yield* Effect.fork(router.complete(requestFor("a")))
            const b = yield* Effect.fork(router.complete(requestFor("b")))
            yield* advance(10)
            expect(short.calls).toHaveLength(2)
            yield* advance(19_989, 1000)
            expect(long.calls).toHaveLength(1)
            yield* advance(1)
            expect(long.calls).toHaveLength(2)
            yield* Fiber.join(a)
            yield* Fiber.join(b)
          })
      )
    }))

  it.effect("does not start a wait that would end past the request deadline", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { complete: [failure("RateLimited", 5000), "fine"] })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith({}, { request_ms: 3000 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
          expect(yield* doneAfter(fiber, 0)).toBe(true)
          expectProviderError(yield* Fiber.join(fiber), "RateLimited")
          expect(fake.calls).toHaveLength(1)
        })
      )
    }))

  it.effect("falls back at once when the Retry-After would end past the deadline", () =>
    Effect.gen(function* () {
      const journal: Journal = []
      const a = makeFake("a", { complete: [failure("RateLimited", 5000)] }, journal)
      const b = makeFake("b", { complete: ["from b"] }, journal)
      yield* withRouter(
        [
          { name: "a", provider: a.provider, fallbacks: ["b"] },
          { name: "b", provider: b.provider }
        ],
        settingsWith({}, { request_ms: 3000 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(router.complete(requestFor("a")))
            expect(yield* doneAfter(fiber, 0)).toBe(true)
            const result = yield* Fiber.join(fiber)
            expect(result.deployment.name).toBe("b")
            expect(b.calls[0]?.at).toBe(0)
            expect(journal).toEqual(["a", "b"])
          })
      )
    }))

  const notRetried: ReadonlyArray<ProviderErrorReason> = [
    "InvalidRequest",
    "Authentication",
    "NotFound",
    "ContentPolicy",
    "QuotaExhausted",
    "MalformedResponse"
  ]
  for (const reason of notRetried) {
    it.effect(`does not retry ${reason}`, () =>
      Effect.gen(function* () {
        const fake = makeFake("a", { complete: [failure(reason), "fine"] })
        yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
            yield* advance(2000)
            expectProviderError(yield* Fiber.join(fiber), reason)
            expect(fake.calls).toHaveLength(1)
          })
        )
      }))
  }

  for (const reason of ["RateLimited", "Unavailable", "Timeout"] as const) {
    it.effect(`retries ${reason} max_retries times, then reports it`, () =>
      Effect.gen(function* () {
        const fake = makeFake("a", { complete: [failure(reason)] })
        yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith({ max_retries: 2 }), (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
            yield* advance(2000)
            expectProviderError(yield* Fiber.join(fiber), reason)
            expect(fake.calls).toHaveLength(3)
          })
        )
      }))
  }

  it.effect("makes one call with max_retries 0", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { complete: [failure("Unavailable"), "fine"] })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith({ max_retries: 0 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
          yield* advance(2000)
          expectProviderError(yield* Fiber.join(fiber), "Unavailable")
          expect(fake.calls).toHaveLength(1)
        })
      )
    }))

  it.effect("answers at once without a retry", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {})
      const result = yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        router.complete(requestFor("a"))
      )
      expect(result.attempts).toBe(1)
      expect(fake.calls).toHaveLength(1)
    }))
})

describe("Router.complete: fallbacks", () => {
  it.effect("tries the model's deployments, then each fallback in order, and reports who served", () =>
    Effect.gen(function* () {
      const journal: Journal = []
      const a1 = makeFake("a1", { complete: [failure("Unavailable")] }, journal)
      const a2 = makeFake("a2", { complete: [failure("Timeout")] }, journal)
      const b = makeFake("b", { complete: [failure("Authentication")] }, journal)
      const c = makeFake("c", { complete: ["from c"] }, journal)
      const d = makeFake("d", {}, journal)
      const result = yield* withRouter(
        [
          { name: "a", provider: a1.provider, upstreamModel: "a-v1", fallbacks: ["b", "c"] },
          { name: "a", provider: a2.provider, upstreamModel: "a-v2", fallbacks: ["d"] },
          { name: "b", provider: b.provider },
          { name: "c", provider: c.provider, upstreamModel: "c-2025-01-01" },
          { name: "d", provider: d.provider }
        ],
        settingsWith({ max_retries: 0 }),
        (router) => router.complete(requestFor("a"))
      )
      expect(journal.slice(0, 2).sort()).toEqual(["a1", "a2"])
      expect(journal.slice(2)).toEqual(["b", "c"])
      expect(a1.calls[0]?.model).toBe("a-v1")
      expect(a2.calls[0]?.model).toBe("a-v2")
      expect(c.calls[0]?.model).toBe("c-2025-01-01")
      expect(result.deployment.name).toBe("c")
      expect(result.deployment.upstreamModel).toBe("c-2025-01-01")
      expect(result.completion.model).toBe("c")
      expect(result.completion.choices[0]?.message.content).toBe("from c")
      expect(result.attempts).toBe(4)
      expect(d.calls).toHaveLength(0)
    }))

  it.effect("retries each deployment before falling back, counting every attempt", () =>
    Effect.gen(function* () {
      const journal: Journal = []
      const a = makeFake("a", { complete: [failure("Unavailable")] }, journal)
      const b = makeFake("b", { complete: ["from b"] }, journal)
      yield* withRouter(
        [
          { name: "a", provider: a.provider, fallbacks: ["b"] },
          { name: "b", provider: b.provider }
        ],
        settingsWith({ max_retries: 1, initial_delay_ms: 0 }),
        (router) =>
          Effect.map(router.complete(requestFor("a")), (result) => {
            expect(journal).toEqual(["a", "a", "b"])
            expect(result.attempts).toBe(3)
            expect(result.completion.model).toBe("b")
          })
      )
    }))

  for (const reason of ["InvalidRequest", "NotFound", "ContentPolicy"] as const) {
    it.effect(`does not fall back on the caller's mistake ${reason}`, () =>
      Effect.gen(function* () {
        const a = makeFake("a", { complete: [failure(reason)] })
        const b = makeFake("b", {})
        const error = yield* withRouter(
          [
            { name: "a", provider: a.provider, fallbacks: ["b"] },
            { name: "b", provider: b.provider }
          ],
          settingsWith(),
          (router) => Effect.flip(router.complete(requestFor("a")))
        )
        expectProviderError(error, reason)
        expect(a.calls).toHaveLength(1)
        expect(b.calls).toHaveLength(0)
      }))
  }

  it.effect("reports the last failure when every candidate fails", () =>
    Effect.gen(function* () {
      const a = makeFake("a", { complete: [failure("Unavailable")] })
      const b = makeFake("b", { complete: [failure("QuotaExhausted")] })
      const error = yield* withRouter(
        [
          { name: "a", provider: a.provider, fallbacks: ["b"] },
          { name: "b", provider: b.provider }
        ],
        settingsWith({ max_retries: 0 }),
        (router) => Effect.flip(router.complete(requestFor("a")))
      )
      expectProviderError(error, "QuotaExhausted")
      expect(a.calls).toHaveLength(1)
      expect(b.calls).toHaveLength(1)
    }))

  it.effect("fails with ModelNotFound for an unknown name, without calling anyone", () =>
    Effect.gen(function* () {
      const a = makeFake("a", {})
      yield* withRouter([{ name: "a", provider: a.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const completeError = yield* Effect.flip(router.complete(requestFor("nope")))
          expect(completeError._tag).toBe("ModelNotFound")
          if (completeError._tag === "ModelNotFound") expect(completeError.model).toBe("nope")
          const streamError = yield* Effect.flip(router.stream(requestFor("a-v1")))
          expect(streamError._tag).toBe("ModelNotFound")
        })
      )
      expect(a.calls).toHaveLength(0)
    }))
})

describe("weighted load balancing", () => {
  const deployment = (name: string, weight: number): Deployment => ({
    name,
    providerKind: "custom",
    upstreamModel: name,
    weight,
    provider: toProvider(makeFake(name, {}).provider),
    price: undefined
  })

  it.effect("puts a 3:1 deployment first about 75% of the time", () =>
    Effect.gen(function* () {
      const heavy = deployment("heavy", 3)
      const light = deployment("light", 1)
      let heavyFirst = 0
      const draws = 20_000
      for (let i = 0; i < draws; i++) {
        const order = yield* RouterModule.weightedOrder([heavy, light])
        expect(order).toHaveLength(2)
        expect(new Set(order).size).toBe(2)
        if (order[0] === heavy) heavyFirst++
      }
      expect(heavyFirst / draws).toBeGreaterThan(0.73)
      expect(heavyFirst / draws).toBeLessThan(0.77)
    }).pipe(Effect.withRandom(Random.make(42))))

  it.effect("orders three deployments by weight, every one of them included", () =>
    Effect.gen(function* () {
      const ds = [deployment("x", 1), deployment("y", 2), deployment("z", 5)]
      const firsts = new Map<string, number>()
      for (let i = 0; i < 16_000; i++) {
        const order = yield* RouterModule.weightedOrder(ds)
        expect(order.map((d) => d.name).sort()).toEqual(["x", "y", "z"])
        firsts.set(order[0]!.name, (firsts.get(order[0]!.name) ?? 0) + 1)
      }
      expect((firsts.get("x") ?? 0) / 16_000).toBeCloseTo(1 / 8, 1)
      expect((firsts.get("y") ?? 0) / 16_000).toBeCloseTo(2 / 8, 1)
      expect((firsts.get("z") ?? 0) / 16_000).toBeCloseTo(5 / 8, 1)
    }).pipe(Effect.withRandom(Random.make("three"))))

  it.effect("draws from the Random service: the same seed gives the same orders", () =>
    Effect.gen(function* () {
      const ds = [deployment("p", 1), deployment("q", 1), deployment("r", 1)]
      const run = Effect.forEach(Array.from({ length: 50 }, (_, i) => i), () =>
        Effect.map(RouterModule.weightedOrder(ds), (order) => order.map((d) => d.name).join(""))
      )
      const first = yield* Effect.withRandom(run, Random.make(7))
      const again = yield* Effect.withRandom(run, Random.make(7))
      expect(again).toEqual(first)
      expect(new Set(first).size).toBeGreaterThan(1)
    }))

  it.effect("sends traffic to both deployments of a name, roughly by weight", () =>
    Effect.gen(function* () {
      const heavy = makeFake("heavy", {})
      const light = makeFake("light", {})
      const served = new Map<string, number>()
      yield* withRouter(
        [
          { name: "m", provider: heavy.provider, upstreamModel: "m-heavy", weight: 3 },
          { name: "m", provider: light.provider, upstreamModel: "m-light", weight: 1 }
        ],
        settingsWith(),
        (router) =>
          Effect.forEach(
            Array.from({ length: 400 }, (_, i) => i),
            () =>
              Effect.map(router.complete(requestFor("m")), (result) => {
                expect(result.completion.model).toBe("m")
                served.set(result.deployment.upstreamModel, (served.get(result.deployment.upstreamModel) ?? 0) + 1)
              }),
            { discard: true }
          )
      ).pipe(Effect.withRandom(Random.make(2024)))
      expect(heavy.calls.length + light.calls.length).toBe(400)
      expect(served.get("m-heavy")).toBe(heavy.calls.length)
      expect(heavy.calls.length).toBeGreaterThan(260)
      expect(heavy.calls.length).toBeLessThan(340)
      expect(light.calls.length).toBeGreaterThan(60)
    }))

  it("groups deployments by name and keeps fallbacks in first-seen order", () => {
    const registry = makeRegistry([
      { name: "m", provider: makeFake("1", {}).provider, fallbacks: ["x"] },
      { name: "n", provider: makeFake("2", {}).provider },
      { name: "m", provider: makeFake("3", {}).provider, weight: 4, fallbacks: ["y", "x"] }
    ])
    expect(registry.models.map((model) => model.name)).toEqual(["m", "n"])
    expect(registry.lookup("m")?.deployments.map((d) => d.weight)).toEqual([1, 4])
    expect(registry.lookup("m")?.fallbacks).toEqual(["x", "y"])
  })
})

describe("Router.stream", () => {
  const noDelay = settingsWith({ initial_delay_ms: 0 })

  const collect = (stream: Stream.Stream<ChatCompletionChunk, ProviderError>) =>
    Effect.map(Stream.runCollect(Stream.either(stream)), Chunk.toReadonlyArray)

  const texts = (items: ReadonlyArray<Either.Either<ChatCompletionChunk, ProviderError>>) =>
    items.map((item) => (Either.isRight(item) ? item.right.choices[0]?.delta.content : `error:${item.left.reason}`))

  it.effect("retries a stream that fails before its first chunk", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: (call, model) => (call === 0 ? Stream.fail(failure("Unavailable")) : chunks(model, ["one", "two"]))
      })
      yield* withRouter([{ name: "a", provider: fake.provider }], noDelay, (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(result.attempts).toBe(2)
          expect(texts(yield* collect(result.chunks))).toEqual(["one", "two"])
        })
      )
      expect(fake.calls).toHaveLength(2)
      expect(fake.released.count).toBe(2)
    }))

  it.effect("commits at the first chunk: a later failure is not retried and ends the chunks", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: (call, model) => chunks(model, [`one#${call}`, "two"], Stream.fail(failure("Unavailable")))
      })
      yield* withRouter([{ name: "a", provider: fake.provider }], noDelay, (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(result.attempts).toBe(1)
          expect(texts(yield* collect(result.chunks))).toEqual(["one#0", "two", "error:Unavailable"])
        })
      )
      expect(fake.calls).toHaveLength(1)
    }))

  it.effect("does not take empty chunk batches for the first token", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: (call, model) =>
          call === 0
            ? Stream.concat(emptyBatches(3), Stream.fail(failure("Unavailable")))
            : Stream.concat(emptyBatches(2), chunks(model, ["hello"]))
      })
      yield* withRouter([{ name: "a", provider: fake.provider }], noDelay, (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(result.attempts).toBe(2)
          expect(texts(yield* collect(result.chunks))).toEqual(["hello"])
        })
      )
      expect(fake.calls).toHaveLength(2)
    }))

  it.effect("times out empty batches that never become a token within first_token_ms", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: () => Stream.concat(emptyBatches(1), Stream.concat(Stream.fromEffect(Effect.sleep(5000)), Stream.never).pipe(Stream.drain))
      })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith({ max_retries: 0 }, { first_token_ms: 1000 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.stream(requestFor("a"))))
          expect(yield* doneAfter(fiber, 999)).toBe(false)
          expect(yield* doneAfter(fiber, 1)).toBe(true)
          expectProviderError(yield* Fiber.join(fiber), "Timeout")
        })
      )
      expect(fake.released.count).toBe(1)
    }))

  it.effect("commits a stream that ends without chunks", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: () => Stream.empty })
      yield* withRouter([{ name: "a", provider: fake.provider }], noDelay, (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(yield* collect(result.chunks)).toEqual([])
        })
      )
      expect(fake.calls).toHaveLength(1)
    }))

  it.effect("retries a stream whose first token misses first_token_ms, releasing the slow upstream", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: (call, model) => (call === 0 ? Stream.never : chunks(model, ["late but here"]))
      })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({ max_retries: 1, initial_delay_ms: 0 }, { first_token_ms: 1000 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(router.stream(requestFor("a")))
            yield* advance(999)
            expect(fake.calls).toHaveLength(1)
            expect(fake.released.count).toBe(0)
            yield* advance(1)
            expect(fake.calls).toHaveLength(2)
            expect(fake.released.count).toBe(1)
            const result = yield* Fiber.join(fiber)
            expect(result.attempts).toBe(2)
            expect(texts(yield* collect(result.chunks))).toEqual(["late but here"])
          })
      )
    }))

  it.effect("fails with Timeout when no attempt gets a first token in time", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: () => Stream.never })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({ max_retries: 0 }, { first_token_ms: 1000 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(Effect.flip(router.stream(requestFor("a"))))
            expect(yield* doneAfter(fiber, 1000)).toBe(true)
            expectProviderError(yield* Fiber.join(fiber), "Timeout")
          })
      )
    }))

  it.effect("ends the chunks with Timeout after an idle gap of first_token_ms, but not a shorter one", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: (_, model) => chunks(model, ["a", "b", "c"], Stream.never, 900) })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({}, { first_token_ms: 1000 }),
        (router) =>
          Effect.gen(function* () {
            const result = yield* router.stream(requestFor("a"))
            const fiber = yield* Effect.fork(collect(result.chunks))
            expect(yield* doneAfter(fiber, 900 + 900 + 999)).toBe(false)
            expect(yield* doneAfter(fiber, 1)).toBe(true)
            expect(texts(yield* Fiber.join(fiber))).toEqual(["a", "b", "c", "error:Timeout"])
          })
      )
      expect(fake.calls).toHaveLength(1)
      expect(fake.released.count).toBe(1)
    }))

  it.effect("fails with Timeout at request_ms before the commit", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: () => Stream.never })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({}, { request_ms: 5000, first_token_ms: 60_000 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(Effect.flip(router.stream(requestFor("a"))))
            expect(yield* doneAfter(fiber, 4999)).toBe(false)
            expect(yield* doneAfter(fiber, 1)).toBe(true)
            expectProviderError(yield* Fiber.join(fiber), "Timeout")
          })
      )
      expect(fake.released.count).toBe(1)
    }))

  it.effect("ends a committed stream with Timeout at request_ms, counted from the request's start", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", {
        stream: (_, model) =>
          Stream.concat(
            Stream.fromEffect(Effect.as(Effect.sleep(1500), chunkOf(model, "first"))),
            Stream.repeatEffect(Effect.as(Effect.sleep(1000), chunkOf(model, "tick")))
          )
      })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({}, { request_ms: 5000, first_token_ms: 2000 }),
        (router) =>
          Effect.gen(function* () {
            const connecting = yield* Effect.fork(router.stream(requestFor("a")))
            expect(yield* doneAfter(connecting, 1500)).toBe(true)
            const result = yield* Fiber.join(connecting)
            const fiber = yield* Effect.fork(collect(result.chunks))
            expect(yield* doneAfter(fiber, 3499)).toBe(false)
            expect(yield* doneAfter(fiber, 1)).toBe(true)
            const items = texts(yield* Fiber.join(fiber))
            expect(items).toEqual(["first", "tick", "tick", "tick", "error:Timeout"])
          })
      )
      expect(fake.released.count).toBe(1)
    }))

  it.effect("fails a non-streamed request with Timeout at request_ms", () =>
    Effect.gen(function* () {
      const slow: StreamProvider = { complete: () => Effect.never, stream: () => Stream.never }
      yield* withRouter([{ name: "a", provider: slow }], settingsWith({}, { request_ms: 5000 }), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
          expect(yield* doneAfter(fiber, 4999)).toBe(false)
          expect(yield* doneAfter(fiber, 1)).toBe(true)
          expectProviderError(yield* Fiber.join(fiber), "Timeout")
        })
      )
    }))

  it.effect("stops retrying at request_ms with Timeout", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { complete: [failure("Unavailable")] })
      yield* withRouter(
        [{ name: "a", provider: fake.provider }],
        settingsWith({ max_retries: 10, initial_delay_ms: 1000, max_delay_ms: 1000 }, { request_ms: 3500 }),
        (router) =>
          Effect.gen(function* () {
            const fiber = yield* Effect.fork(Effect.flip(router.complete(requestFor("a"))))
            expect(yield* doneAfter(fiber, 3500)).toBe(true)
            expectProviderError(yield* Fiber.join(fiber), "Timeout")
          })
      )
      expect(fake.calls.length).toBeGreaterThanOrEqual(3)
      expect(fake.calls.length).toBeLessThanOrEqual(5)
    }))

  it.effect("names the public model that served on every chunk, after a fallback", () =>
    Effect.gen(function* () {
      const journal: Journal = []
      const a = makeFake("a", { stream: () => Stream.fail(failure("Unavailable")) }, journal)
      const b = makeFake("b", { stream: (_, model) => chunks(model, ["x", "y", "z"]) }, journal)
      yield* withRouter(
        [
          { name: "a", provider: a.provider, fallbacks: ["b"] },
          { name: "b", provider: b.provider, upstreamModel: "b-upstream-7" }
        ],
        settingsWith({ max_retries: 0 }),
        (router) =>
          Effect.gen(function* () {
            const result = yield* router.stream(requestFor("a"))
            expect(result.deployment.name).toBe("b")
            expect(result.attempts).toBe(2)
            const items = yield* collect(result.chunks)
            expect(texts(items)).toEqual(["x", "y", "z"])
            for (const item of items) {
              expect(Either.isRight(item) && item.right.model).toBe("b")
            }
          })
      )
      expect(journal).toEqual(["a", "b"])
      expect(b.calls[0]?.model).toBe("b-upstream-7")
    }))

  it.effect("does not fall back when the stream fails with the caller's mistake", () =>
    Effect.gen(function* () {
      const a = makeFake("a", { stream: () => Stream.fail(failure("InvalidRequest")) })
      const b = makeFake("b", {})
      const error = yield* withRouter(
        [
          { name: "a", provider: a.provider, fallbacks: ["b"] },
          { name: "b", provider: b.provider }
        ],
        settingsWith(),
        (router) => Effect.flip(router.stream(requestFor("a")))
      )
      expectProviderError(error, "InvalidRequest")
      expect(a.calls).toHaveLength(1)
      expect(b.calls).toHaveLength(0)
    }))

  it.effect("keeps the upstream open after the commit and releases it when the consumer is interrupted", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: (_, model) => chunks(model, ["one"], Stream.never) })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(fake.released.count).toBe(0)
          const seen: Array<string> = []
          const fiber = yield* Effect.fork(
            Stream.runForEach(result.chunks, (chunk) => Effect.sync(() => seen.push(chunk.choices[0]?.delta.content ?? "")))
          )
          yield* advance(10)
          expect(seen).toEqual(["one"])
          expect(fake.released.count).toBe(0)
          const exit = yield* Fiber.interrupt(fiber)
          expect(Exit.isInterrupted(exit)).toBe(true)
          expect(fake.released.count).toBe(1)
        })
      )
    }))

  it.effect("releases the upstream when the caller is interrupted before the commit", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: () => Stream.never })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(router.stream(requestFor("a")))
          yield* advance(10)
          expect(fake.calls).toHaveLength(1)
          expect(fake.released.count).toBe(0)
          expect(Exit.isInterrupted(yield* Fiber.interrupt(fiber))).toBe(true)
          expect(fake.released.count).toBe(1)
        })
      )
    }))

  it.effect("releases the upstream when the consumer reads to the end", () =>
    Effect.gen(function* () {
      const fake = makeFake("a", { stream: (_, model) => chunks(model, ["one", "two"]) })
      yield* withRouter([{ name: "a", provider: fake.provider }], settingsWith(), (router) =>
        Effect.gen(function* () {
          const result = yield* router.stream(requestFor("a"))
          expect(fake.released.count).toBe(0)
          expect(texts(yield* collect(result.chunks))).toEqual(["one", "two"])
          expect(fake.released.count).toBe(1)
        })
      )
    }))
})

describe("Router.embed", () => {
  /** A provider whose n-th embeddings call follows `script[n]` (the last step repeats), recording the model asked for. */
  const embedder = (script: ReadonlyArray<ProviderError | "ok">, journal: Array<string>, label: string): StreamProvider => {
    let calls = 0
    return {
      complete: () => Effect.die("not a chat test"),
      stream: () => Stream.die("not a chat test"),
      embed: (request) =>
        Effect.suspend(() => {
          journal.push(`${label}:${request.model}`)
          const step = script[Math.min(calls++, script.length - 1)]!
          return step === "ok" ? Effect.succeed({ vectors: [[calls]], usage: undefined }) : Effect.fail(step)
        })
    }
  }
  const embedRequest = (model: string) => ({ model, input: "hello" })

  it.effect("takes the same route as chat: the upstream model, retries, then the fallback, counting every attempt", () =>
    Effect.gen(function* () {
      const journal: Array<string> = []
      const result = yield* withRouter(
        [
          { name: "a", upstreamModel: "a-up", provider: embedder([failure("Unavailable")], journal, "a"), fallbacks: ["b"] },
          { name: "b", upstreamModel: "b-up", provider: embedder(["ok"], journal, "b") }
        ],
        settingsWith({ max_retries: 1, initial_delay_ms: 0 }),
        (router) => router.embed(embedRequest("a"))
      )
      expect(journal).toEqual(["a:a-up", "a:a-up", "b:b-up"])
      expect(result.deployment.name).toBe("b")
      expect(result.attempts).toBe(3)
      expect(result.embeddings.vectors).toEqual([[1]])
    }))

  it.effect("a chat-only provider refuses embeddings once, as the caller's mistake: no retry, no fallback", () =>
    Effect.gen(function* () {
      const journal: Array<string> = []
      const chatOnly = makeFake("chat", {})
      const error = yield* withRouter(
        [
          { name: "chat", provider: chatOnly.provider, fallbacks: ["b"] },
          { name: "b", provider: embedder(["ok"], journal, "b") }
        ],
        settingsWith(),
        (router) => Effect.flip(router.embed(embedRequest("chat")))
      )
      expectProviderError(error, "InvalidRequest")
      if (error._tag === "ProviderError") expect(error.message).toContain("cannot embed")
      expect(journal).toEqual([])
      expect(chatOnly.calls).toHaveLength(0)
    }))

  it.effect("fails with ModelNotFound for an unknown name, and with Timeout at request_ms", () =>
    Effect.gen(function* () {
      const slow: StreamProvider = {
        complete: () => Effect.die("not a chat test"),
        stream: () => Stream.die("not a chat test"),
        embed: () => Effect.as(Effect.sleep("10 seconds"), { vectors: [[1]], usage: undefined })
      }
      yield* withRouter([{ name: "slow", provider: slow }], settingsWith({ max_retries: 0 }, { request_ms: 1000 }), (router) =>
        Effect.gen(function* () {
          expect((yield* Effect.flip(router.embed(embedRequest("nope"))))._tag).toBe("ModelNotFound")
          const fiber = yield* Effect.fork(Effect.flip(router.embed(embedRequest("slow"))))
          yield* advance(1100)
          expectProviderError(yield* Fiber.join(fiber), "Timeout")
        })
      )
    }))
})
