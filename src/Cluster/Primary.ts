/**
 * The primary of a `WORKERS` > 1 group. It serves nothing: it forks the workers (the first alone, so that a
 * start-up failure is reported once, by that worker), replaces a worker that dies (after a backoff; 5 deaths
 * within 30 s end the group with exit 1), forwards SIGTERM and SIGINT and exits once every worker has drained,
 * forwards SIGHUP to the workers that are serving, and merges the workers' metrics when one of them is scraped.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { Effect, Option, Runtime, Schema } from "effect"
import cluster from "node:cluster"
import type { Worker } from "node:cluster"
import { serialize } from "node:v8"
import { loadSettings, ProxyConfig } from "../Config.js"
import type { ProxySettings } from "../Config.js"
import * as Logging from "../Logging.js"
import { readRegistryFile } from "../Router/RegistryFile.js"
import * as Messages from "./Messages.js"
import type { FromPrimary, GroupMetrics } from "./Messages.js"
import * as Snapshot from "./Snapshot.js"

/** A group that must not start, with the one line that says why. */
export class GroupRefused extends Schema.TaggedError<GroupRefused>()("GroupRefused", { message: Schema.String }) {}

/**
 * Without REDIS_URL each process counts a key's limits in its own memory: N workers would let N times the limit
 * through. Such a group is refused before any worker starts.
 */
export const refuseLocalLimits = (settings: ProxySettings) =>
  Effect.gen(function* () {
    if (settings.workers === 1 || Option.isSome(settings.redisUrl) || Option.isNone(settings.configFile)) return
    const file = yield* readRegistryFile(settings.configFile.value)
    const limited = file.keys.filter((key) => key.limits !== undefined && Object.keys(key.limits).length > 0).map((key) => key.id)
    if (limited.length === 0) return
    return yield* new GroupRefused({
      message:
        `WORKERS=${settings.workers} needs REDIS_URL: ${limited.length === 1 ? "key" : "keys"} ${limited.join(", ")} of CONFIG_FILE ` +
        `${settings.configFile.value} ${limited.length === 1 ? "has" : "have"} limits, and each worker would count them in its own memory ` +
        `(${settings.workers} times too loose)`
    })
  })

/** Deaths within `crashWindowMs` that end the group. */
const crashLimit = 5
const crashWindowMs = 30_000
/** The wait before a replacement: 250 ms, doubling with each recent death, at most 5 s. */
const backoffMs = (recentDeaths: number) => Math.min(5_000, 250 * 2 ** Math.max(0, recentDeaths - 1))
/** Past the grace period, how long the primary still waits for draining workers before it kills them. */
const forceAfterMs = 5_000

interface Slot {
  /** 1..WORKERS: the worker's `x-llm-proxy-worker`, kept by its replacement. */
  readonly number: number
  worker: Worker | undefined
  ready: boolean
  restart: ReturnType<typeof setTimeout> | undefined
  /** The worker's last reported metrics. */
  last: Snapshot.Snapshot | undefined
}

interface Collection {
  readonly requester: Worker
  readonly requestId: number
  readonly targets: ReadonlyArray<Worker>
  readonly waiting: Set<Worker>
  readonly fresh: Map<Worker, Snapshot.Snapshot>
  timer: ReturnType<typeof setTimeout> | undefined
}

type Log = (level: "info" | "warning" | "error", message: string, annotations?: Record<string, unknown>) => void

const sendTo = (worker: Worker, message: FromPrimary) => {
  if (worker.isConnected()) worker.send(message, () => {})
}

/** Runs the group until it stops; calls `done` with the exit code. Returns a cleanup for an interruption. */
const supervise = (settings: ProxySettings, log: Log, done: (code: number) => void): (() => void) => {
  cluster.setupPrimary({ serialization: "advanced" })
  const slots: Array<Slot> = Array.from({ length: settings.workers }, (_, index) => ({
    number: index + 1,
    worker: undefined,
    ready: false,
    restart: undefined,
    last: undefined
  }))
  let phase: "starting" | "serving" | "stopping" = "starting"
  let exitCode = 0
  let forceTimer: ReturnType<typeof setTimeout> | undefined
  const deaths: Array<number> = []
  /** The counters and histograms of workers that exited, so that the group's never go backwards. */
  let retired: Snapshot.Snapshot = Snapshot.emptySnapshot
  const collections = new Map<number, Collection>()
  let nextCollection = 1

  const live = () => slots.flatMap((slot) => (slot.worker === undefined ? [] : [slot.worker]))

  const fork = (slot: Slot) => {
    slot.restart = undefined
    slot.ready = false
    slot.last = undefined
    const worker = cluster.fork({ [Messages.slotVariable]: String(slot.number) })
    slot.worker = worker
    log("info", "worker started", { worker: slot.number, pid: worker.process.pid })
    worker.on("message", (raw: unknown) => onMessage(slot, worker, raw))
    worker.on("exit", (code: number | null, signal: string | null) => onExit(slot, worker, code, signal))
    // A send to a worker that just died fails here rather than as an uncaught error.
    worker.on("error", () => {})
  }

  const finish = (id: number, collection: Collection) => {
    if (!collections.delete(id)) return
    if (collection.timer !== undefined) clearTimeout(collection.timer)
    const parts: Array<Snapshot.Part> = [{ snapshot: retired, live: false }]
    let answered = 0
    let stale = 0
    for (const slot of slots) {
      // A worker that exited meanwhile is in `retired`, with its freshest figures.
      if (slot.worker === undefined || !collection.targets.includes(slot.worker)) continue
      const fresh = collection.fresh.get(slot.worker)
      if (fresh !== undefined) {
        parts.push({ snapshot: fresh, live: true })
        answered++
      } else if (slot.last !== undefined) {
        parts.push({ snapshot: slot.last, live: false })
        stale++
      }
    }
    const merged = Snapshot.merge(parts, Messages.maxMergedSeries)
    const answer: GroupMetrics = {
      _tag: "llm-proxy/GroupMetrics",
      id: collection.requestId,
      snapshot: merged.snapshot,
      workers: settings.workers,
      answered,
      stale,
      dropped: merged.dropped
    }
    sendTo(
      collection.requester,
      serialize(answer).length > Messages.maxGroupBytes
        ? { ...answer, snapshot: null, reason: `the group's metrics exceed ${Messages.maxGroupBytes} bytes` }
        : answer
    )
  }

  const collect = (requester: Worker, requestId: number) => {
    if (collections.size >= Messages.maxCollections) {
      const reason = `${Messages.maxCollections} scrapes are being merged already`
      sendTo(requester, { _tag: "llm-proxy/GroupMetrics", id: requestId, snapshot: null, workers: settings.workers, answered: 0, stale: 0, dropped: 0, reason })
      return
    }
    const id = nextCollection++
    const targets = slots.flatMap((slot) => (slot.worker !== undefined && slot.ready ? [slot.worker] : []))
    const collection: Collection = { requester, requestId, targets, waiting: new Set(targets), fresh: new Map(), timer: undefined }
    collections.set(id, collection)
    collection.timer = setTimeout(() => finish(id, collection), Messages.collectTimeoutMs)
    for (const target of targets) sendTo(target, { _tag: "llm-proxy/MetricsCollect", id })
    if (targets.length === 0) finish(id, collection)
  }

  const onMessage = (slot: Slot, worker: Worker, raw: unknown) => {
    if (slot.worker !== worker) return
    const decoded = Messages.decodeFromWorker(raw)
    if (Option.isNone(decoded)) return
    const message = decoded.value
    switch (message._tag) {
      case "llm-proxy/Ready": {
        slot.ready = true
        if (phase === "serving") log("info", "worker serving", { worker: slot.number, pid: worker.process.pid })
        if (phase !== "starting") return
        if (slot.number === 1) for (const other of slots.slice(1)) fork(other)
        if (slots.every((each) => each.ready)) {
          phase = "serving"
          log("info", "group serving", { workers: settings.workers, host: settings.host, port: settings.port })
        }
        return
      }
      case "llm-proxy/GroupMetricsRequest":
        return collect(worker, message.id)
      case "llm-proxy/MetricsReport": {
        const collection = collections.get(message.id)
        if (collection === undefined || !collection.waiting.delete(worker)) return
        if (message.snapshot !== null) {
          collection.fresh.set(worker, message.snapshot)
          slot.last = message.snapshot
        }
        if (collection.waiting.size === 0) finish(message.id, collection)
      }
    }
  }

  const allExited = () => {
    if (phase !== "stopping" || live().length > 0) return
    if (forceTimer !== undefined) clearTimeout(forceTimer)
    cleanup()
    done(exitCode)
  }

  const stopAll = (signal: "SIGTERM" | "SIGINT") => {
    if (phase === "stopping") return
    phase = "stopping"
    for (const slot of slots) {
      if (slot.restart !== undefined) clearTimeout(slot.restart)
      slot.restart = undefined
    }
    for (const worker of live()) worker.process.kill(signal)
    forceTimer = setTimeout(() => {
      log("error", "workers still running past the grace period: killing them", { workers: live().length, graceMs: settings.shutdownGraceMs })
      exitCode = 1
      for (const worker of live()) worker.process.kill("SIGKILL")
    }, settings.shutdownGraceMs + forceAfterMs)
    allExited()
  }

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return
    const wasReady = slot.ready
    slot.worker = undefined
    slot.ready = false
    if (slot.last !== undefined) {
      retired = Snapshot.merge([{ snapshot: retired, live: false }, { snapshot: slot.last, live: false }], Messages.maxMergedSeries).snapshot
      slot.last = undefined
    }
    for (const [id, collection] of collections) {
      if (collection.waiting.delete(worker) && collection.waiting.size === 0) finish(id, collection)
    }
    const about = { worker: slot.number, pid: worker.process.pid, code, signal }
    if (phase === "stopping") {
      if (code !== null && code !== 0) {
        exitCode = 1
        log("warning", "worker exited with an error while stopping", about)
      } else {
        log("info", "worker stopped", about)
      }
      return allExited()
    }
    if (phase === "starting" && !wasReady) {
      // It printed why (the same configuration would fail every worker the same way).
      log("error", "worker exited during start-up: stopping the group", about)
      exitCode = 1
      return stopAll("SIGTERM")
    }
    const now = Date.now()
    deaths.push(now)
    while (deaths.length > 0 && deaths[0]! <= now - crashWindowMs) deaths.shift()
    if (deaths.length >= crashLimit) {
      log("error", `workers died ${deaths.length} times within ${crashWindowMs / 1000} s: giving up`, about)
      exitCode = 1
      return stopAll("SIGTERM")
    }
    const delay = backoffMs(deaths.length)
    log("warning", "worker exited unexpectedly: replacing it", { ...about, restartInMs: delay })
    slot.restart = setTimeout(() => fork(slot), delay)
  }

  const onSignal = (signal: "SIGTERM" | "SIGINT") => () => {
    if (phase === "stopping") return
    log("info", `${signal}: stopping the workers`, { workers: live().length })
    stopAll(signal)
  }
  const onTerm = onSignal("SIGTERM")
  const onInt = onSignal("SIGINT")
  const onHup = () => {
    if (phase === "stopping") return
    // A worker still starting reads CONFIG_FILE anyway.
    const serving = slots.flatMap((slot) => (slot.worker !== undefined && slot.ready ? [slot.worker] : []))
    for (const worker of serving) worker.process.kill("SIGHUP")
    log("info", "SIGHUP forwarded to the workers", { workers: serving.length })
  }
  process.on("SIGTERM", onTerm)
  process.on("SIGINT", onInt)
  process.on("SIGHUP", onHup)

  const cleanup = () => {
    process.off("SIGTERM", onTerm)
    process.off("SIGINT", onInt)
    process.off("SIGHUP", onHup)
    for (const slot of slots) if (slot.restart !== undefined) clearTimeout(slot.restart)
    for (const collection of collections.values()) if (collection.timer !== undefined) clearTimeout(collection.timer)
    if (forceTimer !== undefined) clearTimeout(forceTimer)
  }

  fork(slots[0]!)
  return cleanup
}

/** Runs the group with the gateway's logging; succeeds with the process's exit code. */
const run = (settings: ProxySettings): Effect.Effect<number> =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const log: Log = (level, message, annotations = {}) =>
      runFork(
        (level === "info" ? Effect.logInfo(message) : level === "warning" ? Effect.logWarning(message) : Effect.logError(message)).pipe(
          Effect.annotateLogs(annotations)
        )
      )
    return yield* Effect.async<number>((resume) => {
      const cleanup = supervise(settings, log, (code) => resume(Effect.succeed(code)))
      return Effect.sync(cleanup)
    })
  }).pipe(Effect.provide(Logging.layer), Effect.provideService(ProxyConfig, settings))

/**
 * The primary's program: validate the settings (a bad value fails with the usual configuration error), refuse
 * limits without a shared store, then run the group. Succeeds with the exit code.
 */
export const main = Effect.flatMap(loadSettings, (settings) =>
  refuseLocalLimits(settings).pipe(Effect.provide(NodeFileSystem.layer), Effect.zipRight(run(settings)))
)
