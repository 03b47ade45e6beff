/**
 * A worker of a `WORKERS` > 1 group: today's gateway, plus its side of the IPC channel — it says when it is ready,
 * reports its metrics when the primary collects them, and answers `/metrics` with the whole group's figures.
 */
import { Context, Effect, Layer, Metric, Option, Runtime } from "effect"
import { serialize } from "node:v8"
import { ProxyConfig } from "../Config.js"
import * as Config from "../Config.js"
import { Lifecycle } from "../Http/Lifecycle.js"
import { renderPrometheus, renderSnapshot } from "../Metrics.js"
import type { FamilyData } from "../Metrics.js"
import * as Messages from "./Messages.js"
import type { FromWorker, GroupMetrics } from "./Messages.js"
import * as Snapshot from "./Snapshot.js"

/** The primary, as this worker reaches it; none outside a group. */
interface Group {
  readonly workers: number
  readonly ask: Effect.Effect<GroupMetrics | undefined>
}

let group: Group | undefined

const send = (message: FromWorker) => {
  // With a callback, a closed channel is reported to it instead of thrown or emitted.
  process.send?.(message, undefined, {}, () => {})
}

const gauge = (name: string, help: string, value: number): FamilyData => ({
  name,
  help,
  type: "gauge",
  bounds: [],
  series: [{ labels: [], value, buckets: [], sum: 0 }]
})

const groupFamilies = (workers: number, scraped: number): ReadonlyArray<FamilyData> => [
  gauge("llm_proxy_workers", "Worker processes the group runs (WORKERS)", workers),
  gauge("llm_proxy_workers_scraped", "Workers whose current figures are in this answer", scraped)
]

/** The Prometheus text of the group's answer, or of this worker alone when the primary gave none. */
const groupText = ({ ask, workers }: Group): Effect.Effect<string> =>
  Effect.flatMap(ask, (answer) => {
    if (answer !== undefined && answer.snapshot !== null) {
      const notes: Array<string> = []
      const missing = workers - answer.answered
      if (missing > 0) {
        notes.push(
          `# llm-proxy: ${answer.answered} of ${workers} workers answered within ${Messages.collectTimeoutMs} ms` +
            (answer.stale > 0 ? `; the counters include the last known figures of ${answer.stale} more` : "")
        )
      }
      if (answer.dropped > 0) notes.push(`# llm-proxy: ${answer.dropped} series left out (over ${Messages.maxMergedSeries})`)
      const { effect, families } = answer.snapshot
      return Effect.succeed(
        notes.map((note) => `${note}\n`).join("") +
          renderSnapshot([...families, ...groupFamilies(workers, answer.answered)], Snapshot.toPairs(effect))
      )
    }
    const reason = answer?.reason ?? `the primary did not answer within ${Messages.groupTimeoutMs} ms`
    return Effect.map(
      Snapshot.local,
      ({ effect, families }) =>
        `# llm-proxy: ${reason}: this worker's metrics only\n` +
        renderSnapshot([...families, ...groupFamilies(workers, 1)], Snapshot.toPairs(effect))
    )
  })

/** The `/metrics` text: this process's metrics, or in a worker of a group, the whole group's. */
export const metricsText: Effect.Effect<string> = Effect.suspend(() =>
  group === undefined ? Effect.map(Metric.snapshot, renderPrometheus) : groupText(group)
)

const ignore = () => {}

/**
 * The worker's side of the channel, built before the gateway so that a scrape finds it. Signal guards: after
 * its first SIGTERM/SIGINT the runtime stops listening, and a second one (a terminal's Ctrl-C reaches the whole
 * process group, then the primary forwards it) would kill the worker mid-drain; a SIGHUP before the registry
 * listens for it would kill it too.
 */
const link: Layer.Layer<never, never, ProxyConfig> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const { workers } = yield* ProxyConfig
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const pending = new Map<number, (answer: GroupMetrics) => void>()
    let nextId = 1

    const report = (id: number) =>
      Effect.map(Snapshot.local, (snapshot) =>
        send({
          _tag: "llm-proxy/MetricsReport",
          id,
          snapshot: serialize(snapshot).length > Messages.maxReportBytes ? null : snapshot
        })
      )

    const onMessage = (raw: unknown) => {
      const message = Messages.decodeFromPrimary(raw)
      if (Option.isNone(message)) return
      if (message.value._tag === "llm-proxy/MetricsCollect") {
        runFork(report(message.value.id))
        return
      }
      pending.get(message.value.id)?.(message.value)
    }

    const ask = Effect.async<GroupMetrics | undefined>((resume) => {
      const id = nextId++
      const timer = setTimeout(() => {
        pending.delete(id)
        resume(Effect.succeed(undefined))
      }, Messages.groupTimeoutMs)
      pending.set(id, (answer) => {
        clearTimeout(timer)
        pending.delete(id)
        resume(Effect.succeed(answer))
      })
      send({ _tag: "llm-proxy/GroupMetricsRequest", id })
      return Effect.sync(() => {
        clearTimeout(timer)
        pending.delete(id)
      })
    })

    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("message", onMessage)
        for (const signal of ["SIGHUP", "SIGINT", "SIGTERM"] as const) process.on(signal, ignore)
        group = { workers, ask }
      }),
      () =>
        Effect.sync(() => {
          group = undefined
          process.off("message", onMessage)
        })
    )
  })
)

/**
 * The gateway `app` as a worker of a group runs it: the link first, then the gateway; once it listens, each
 * response carries `x-llm-proxy-worker: <slot>` and the primary is told it is ready.
 */
export const serve = <E, R>(app: Layer.Layer<Lifecycle, E, R>) => {
  const slot = process.env[Messages.slotVariable] ?? "?"
  const ready = Layer.tap(app, (context) =>
    Effect.sync(() => {
      Context.get(context, Lifecycle).server.prependListener("request", (_request, response) => response.setHeader("x-llm-proxy-worker", slot))
      send({ _tag: "llm-proxy/Ready" })
    })
  )
  return Layer.provide(ready, link.pipe(Layer.provide(Config.layer)))
}
