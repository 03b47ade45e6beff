/**
 * Deadlines of upstream work, kept with one plain timer each (no fiber per wait): an attempt's, the wait for a
 * stream's first chunk, and each idle gap after it.
 */
import { Effect, Fiber } from "effect"
import type { TimerService } from "../Timer.js"
import type { ProviderError } from "./ProviderError.js"

/** When a step must be over (milliseconds on `timer`), and the failure it then ends with. */
export interface Deadline {
  readonly at: number
  readonly timer: TimerService
  readonly onTimeout: () => ProviderError
}

/**
 * An async step that settles once: by its own outcome, by the deadline (which aborts it and fails with the
 * deadline's timeout), or by interruption (which aborts it). `start` begins the step and returns how to abort it.
 */
export const bounded = <A>(
  deadline: Deadline | undefined,
  start: (settle: (outcome: Effect.Effect<A, ProviderError>) => void, isSettled: () => boolean) => () => void
): Effect.Effect<A, ProviderError> =>
  Effect.async<A, ProviderError>((resume) => {
    let settled = false
    let cancelTimer: (() => void) | undefined
    const settle = (outcome: Effect.Effect<A, ProviderError>) => {
      if (settled) return
      settled = true
      cancelTimer?.()
      resume(outcome)
    }
    const abort = start(settle, () => settled)
    if (deadline !== undefined && !settled) {
      cancelTimer = deadline.timer.after(deadline.at - deadline.timer.now(), () => {
        abort()
        settle(Effect.fail(deadline.onTimeout()))
      })
    }
    return Effect.sync(() => {
      settled = true
      cancelTimer?.()
      abort()
    })
  })

/**
 * Any Effect ended by a deadline: it runs in a child fiber that the deadline (or the caller's interruption)
 * interrupts, and the interruption is awaited, so its finalizers have run when this fails. For work that cannot be
 * aborted from a callback (a provider written as Effects); the HTTP providers use `bounded` directly.
 */
export const within = <A>(effect: Effect.Effect<A, ProviderError>, deadline: Deadline | undefined): Effect.Effect<A, ProviderError> =>
  deadline === undefined
    ? effect
    : Effect.flatMap(Effect.fork(effect), (fiber) =>
        Effect.async<A, ProviderError>((resume) => {
          let settled = false
          const settle = (outcome: Effect.Effect<A, ProviderError>) => {
            if (settled) return
            settled = true
            cancelTimer()
            resume(outcome)
          }
          const cancelTimer = deadline.timer.after(deadline.at - deadline.timer.now(), () =>
            settle(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(deadline.onTimeout())))
          )
          fiber.addObserver((exit) => settle(exit))
          return Effect.suspend(() => {
            settled = true
            cancelTimer()
            return Fiber.interrupt(fiber)
          })
        })
      )
