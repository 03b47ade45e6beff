/**
 * Timer: where the gateway's deadlines get their time. Every deadline (an attempt's, a stream's idle gap, the
 * request's) is one plain callback timer from this service, in production and in tests alike: the live timer is
 * `Date.now` and `setTimeout`; the test timer keeps the time of the Effect Clock it is built under (a TestClock),
 * so tests run exactly the code production runs and only the source of time differs.
 */
import { Context, Duration, Effect, Layer, Runtime } from "effect"

/** A source of time and of one-shot timers. */
export interface TimerService {
  /** Milliseconds since the epoch. */
  readonly now: () => number
  /** Calls `fire` once after `ms`; returns its cancellation (safe to call after it fired). */
  readonly after: (ms: number, fire: () => void) => () => void
}

/** setTimeout's largest delay; a longer one would fire at once. */
const maxTimerMs = 2 ** 31 - 1

/** `Date.now` and `setTimeout`. */
export const live: TimerService = {
  now: Date.now,
  after: (ms, fire) => {
    const timer = setTimeout(fire, Math.min(Math.max(0, ms), maxTimerMs))
    return () => clearTimeout(timer)
  }
}

/** The timer service; the live timer unless a layer provides another. */
export class Timer extends Context.Reference<Timer>()("llm-proxy/Timer", { defaultValue: (): TimerService => live }) {}

/**
 * A timer that keeps the time of the Effect Clock it is built under: with a TestClock, `TestClock.adjust` fires
 * its timers. Each pending timer is a sleeping fiber; production never pays for that.
 */
export const fromClock: Effect.Effect<TimerService> = Effect.gen(function* () {
  const clock = yield* Effect.clock
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  return {
    now: () => clock.unsafeCurrentTimeMillis(),
    after: (ms, fire) => {
      const fiber = runFork(Effect.zipRight(clock.sleep(Duration.millis(Math.max(0, ms))), Effect.sync(fire)))
      return () => fiber.unsafeInterruptAsFork(fiber.id())
    }
  }
})

/** For tests: timers on the current Effect Clock (a TestClock under `it.effect`). */
export const layerTest: Layer.Layer<Timer> = Layer.effect(Timer, fromClock)
