/**
 * The gate at shutdown: a request whose tokens are still being counted when the core's scope closes keeps them in
 * its usage row (the counts are awaited before the usage writer's last batch and before the tokenizer stops).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { make as makeGate } from "../../src/Core/Gate.js"
import * as MemoryStore from "../../src/Governance/MemoryStore.js"
import { Store } from "../../src/Governance/Store.js"
import { Tokenizer } from "../../src/Governance/Tokenizer.js"
import { operator } from "../../src/Http/Auth.js"
import { ModelRegistry } from "../../src/Router/Registry.js"
import * as Timer from "../../src/Timer.js"
import { registryFromDocument } from "../support/FakeUpstreams.js"

/** A tokenizer that takes `delayMs` per count and counts one token per character. */
const slowTokenizer = (delayMs: number) =>
  Layer.succeed(Tokenizer, {
    count: (texts: ReadonlyArray<string>) => Effect.as(Effect.sleep(`${delayMs} millis`), texts.map((text) => text.length))
  })

describe("Gate", () => {
  it.live("a count still running when the scope closes is awaited: the usage row has its tokens", () =>
    Effect.gen(function* () {
      const store = yield* MemoryStore.make()
      const scope = yield* Scope.make()
      const registry = registryFromDocument({ models: [{ name: "mock", provider: "mock" }] })
      const gate = yield* makeGate.pipe(
        Effect.provide(Layer.mergeAll(Layer.succeed(Store, store), slowTokenizer(100), registry, Layer.succeed(Timer.Timer, Timer.live))),
        Scope.extend(scope)
      )
      const holder = yield* Effect.provide(ModelRegistry, registry)
      const deployment = holder.current().lookup("mock")!.deployments[0]!
      yield* gate.admit("mock", operator, undefined, (pass) =>
        Effect.sync(() => pass.finishCounted(deployment, { texts: ["four"], overhead: 3 }, ["twelve chars"]))
      )
      // The count takes 100 ms; the scope closes at once, as a shutdown after the drain would.
      yield* Scope.close(scope, Exit.void)
      const rows = yield* store.usage(new Date().toISOString().slice(0, 10))
      expect(rows).toEqual([expect.objectContaining({ key: "operator", model: "mock", requests: 1, prompt_tokens: 7, completion_tokens: 12 })])
    }))
})
