/**
 * The governance store on Redis (ioredis 5): exact across any number of replicas. Each admission is one Lua script,
 * so one atomic step and one round trip, on Redis's own clock. Every key expires, and the keys one API key's
 * admission touches share one hash tag, so the layout works on Redis Cluster as well.
 *
 * Key layout (`p` is the prefix, `k` the key id, `d` the UTC day, each URI-encoded so that no brace breaks a tag):
 * - `{p:k:<k>}:req`   hash epoch second → requests admitted; pruned past the window, expires 2 × window after the last
 * - `{p:k:<k>}:tok`   hash epoch second → tokens finished; likewise
 * - `{p:k:<k>}:lease` sorted set lease → expiry (ms); expires a lease ttl after the last admit or renew
 * - `{p:k:<k>}:spend` hash `d:YYYY-MM-DD` / `m:YYYY-MM` → nano-dollars; expires a day after the month ends
 * - `{p:u:<d>}:keys`  set of the key ids with usage that day; expires `usageRetentionDays` after the day
 * - `{p:u:<d>}:k:<k>` hash `r:` / `p:` / `c:` / `s:` + model → requests, prompt, completion tokens, nano-dollars
 *
 * The gateway starts and keeps serving while Redis is down: the connection is made in the background, commands are
 * never queued while it is down (they fail at once with StoreError), every command times out, and ioredis reconnects
 * by itself when Redis comes back.
 */
import { Effect, Layer, Runtime } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import type { RedisOptions } from "ioredis"
import { Timer } from "../Timer.js"
import { dayMs, fromNanoUsd, toNanoUsd, utcDay } from "./Calendar.js"
import * as Scripts from "./RedisScripts.js"
import type { LuaScript } from "./RedisScripts.js"
import { Store, StoreError } from "./Store.js"
import type { EndedRequest, KeyLimits, LimitName, StoreService, UsageRecord, UsageRow } from "./Store.js"
import type { AdmissionCounts, StoreOptions } from "./Window.js"
import { admissionOf, newLease, resolveOptions } from "./Window.js"

/** Options of the Redis store. */
export interface RedisStoreOptions extends StoreOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). */
  readonly url: string
  /** Begins every key (default `llmp`), so that several gateways or test runs can share one Redis. */
  readonly prefix?: string | undefined
  /** How long one connection attempt may take (default 2000 ms). */
  readonly connectTimeoutMs?: number | undefined
  /** How long one command may take before it fails (default 1000 ms). */
  readonly commandTimeoutMs?: number | undefined
}

/** Spend outlives its month by this, so that a clock a little behind still finds it. */
const spendMarginMs = dayMs

const encode = encodeURIComponent

/** The keys of one API key: one hash tag, so one Cluster slot. */
export const keyKeys = (prefix: string, keyId: string) => {
  const tag = `{${encode(prefix)}:k:${encode(keyId)}}`
  return { requests: `${tag}:req`, tokens: `${tag}:tok`, leases: `${tag}:lease`, spend: `${tag}:spend` }
}

/** The keys of one UTC day's usage: another hash tag. */
export const usageKeys = (prefix: string, day: string) => {
  const tag = `{${encode(prefix)}:u:${encode(day)}}`
  return { keyIds: `${tag}:keys`, row: (keyId: string) => `${tag}:k:${encode(keyId)}` }
}

const refusalByCode: ReadonlyArray<LimitName | undefined> = [undefined, "budget", "max_parallel", "rpm", "tpm"]

/** A script's answer as `length` integers, or `undefined` when it is anything else. */
const integers = (reply: unknown, length: number): ReadonlyArray<number> | undefined => {
  if (!Array.isArray(reply)) return undefined
  const values: ReadonlyArray<unknown> = reply
  const numbers = values.filter((value): value is number => typeof value === "number" && Number.isFinite(value))
  return numbers.length === length && values.length === length ? numbers : undefined
}

const countsOf = (reply: unknown): AdmissionCounts | undefined => {
  const values = integers(reply, 6)
  if (values === undefined) return undefined
  const [code = -1, retryAfterMs = 0, requests = 0, requestsResetMs = 0, tokens = 0, tokensResetMs = 0] = values
  if (code < 0 || code >= refusalByCode.length) return undefined
  return { refusedBy: refusalByCode[code], retryAfterMs, requests, requestsResetMs, tokens, tokensResetMs }
}

/** A day's usage rows of one key, from its row hash (`r:` / `p:` / `c:` / `s:` + model). */
const rowsOf = (keyId: string, hash: Record<string, string>): ReadonlyArray<UsageRow> => {
  const byModel = new Map<string, { requests: number; prompt: number; completion: number; spendNano: number }>()
  for (const [field, value] of Object.entries(hash)) {
    const model = field.slice(2)
    const row = byModel.get(model) ?? { requests: 0, prompt: 0, completion: 0, spendNano: 0 }
    byModel.set(model, row)
    const amount = Number(value)
    if (field.startsWith("r:")) row.requests = amount
    else if (field.startsWith("p:")) row.prompt = amount
    else if (field.startsWith("c:")) row.completion = amount
    else if (field.startsWith("s:")) row.spendNano = amount
  }
  return [...byModel].map(([model, row]) => ({
    key: keyId,
    model,
    requests: row.requests,
    prompt_tokens: row.prompt,
    completion_tokens: row.completion,
    spend_usd: fromNanoUsd(row.spendNano)
  }))
}

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const isNoScript = (cause: unknown) => cause instanceof Error && cause.message.startsWith("NOSCRIPT")

/** One script with its keys and arguments. */
interface ScriptCall {
  readonly script: LuaScript
  readonly keys: ReadonlyArray<string>
  readonly args: ReadonlyArray<string | number>
}

const limitArg = (limit: number | undefined) => (limit === undefined ? "" : String(limit))

/** A Redis connection for the scope: quit when the scope closes (disconnected if quitting fails). */
export const scopedRedis = (url: string, redisOptions: RedisOptions): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => new Redis(url, redisOptions)), (redis) =>
    Effect.promise(() =>
      redis
        .quit()
        .catch(() => undefined)
        .finally(() => redis.disconnect())
    )
  )

/**
 * A Redis store, connected in the background (the scope quits the connection). Building it waits for the first
 * connection attempt to end but never fails: with Redis down, calls fail with StoreError until it is back.
 */
export const make = (options: RedisStoreOptions): Effect.Effect<StoreService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { windowSeconds, leaseTtlMs, parallelRetryMs, usageRetentionDays } = resolveOptions(options)
    const prefix = options.prefix ?? "llmp"
    const timer = yield* Timer
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())

    const redis = yield* scopedRedis(options.url, {
      connectTimeout: options.connectTimeoutMs ?? 2000,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      // While Redis is down a call fails at once instead of waiting in a queue.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // A command lost with the connection may have run: resending an admit could count it twice.
      autoResendUnfulfilledCommands: false,
      retryStrategy: (attempt) => Math.min(attempt * 200, 1000)
    })

    let reachable: boolean | undefined
    redis.on("ready", () => {
      // A Redis that restarted has lost its scripts: load them now rather than on the first NOSCRIPT.
      for (const { lua } of Scripts.all) redis.script("LOAD", lua).catch(() => undefined)
      if (reachable === false) runFork(Effect.logInfo("Governance store: Redis is reachable again"))
      reachable = true
    })
    redis.on("error", (error: Error) => {
      if (reachable !== false) {
        const message = `Governance store: Redis is unreachable (${error.message}); calls fail until it is back`
        runFork(Effect.logWarning(message))
      }
      reachable = false
    })

    // The first attempt either connects or fails; either way the gateway goes on.
    yield* Effect.async<void>((resume) => {
      if (redis.status === "ready") return resume(Effect.void)
      const stopListening = () => redis.off("ready", done).off("error", done).off("end", done)
      function done() {
        stopListening()
        resume(Effect.void)
      }
      redis.on("ready", done).on("error", done).on("end", done)
      return Effect.sync(stopListening)
    })

    const run = (script: LuaScript, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
      redis
        .evalsha(script.sha, keys.length, ...keys, ...args)
        .catch((cause: unknown) =>
          isNoScript(cause) ? redis.eval(script.lua, keys.length, ...keys, ...args) : Promise.reject(cause)
        )

    const call = <A>(what: string, attempt: () => Promise<A>) =>
      Effect.tryPromise({
        try: attempt,
        catch: (cause) => new StoreError({ message: `Redis store: ${what} failed: ${describe(cause)}`, cause })
      })

    const nonsense = (what: string, reply: unknown) =>
      new StoreError({ message: `Redis store: ${what} answered ${JSON.stringify(reply)}` })

    // Plain functions, not Effect.fn: a named Effect.fn captures a stack trace per call, measurable per request.
    const admit = (keyId: string, limits: KeyLimits) => {
      const keys = keyKeys(prefix, keyId)
      const lease = newLease()
      const args = [
        windowSeconds,
        limitArg(limits.rpm),
        limitArg(limits.tpm),
        limitArg(limits.maxParallel),
        limits.budget === undefined ? "" : toNanoUsd(limits.budget.usd),
        limits.budget?.period ?? "daily",
        lease,
        leaseTtlMs,
        parallelRetryMs
      ]
      return Effect.flatMap(
        call("admit", () => run(Scripts.admit, [keys.requests, keys.tokens, keys.leases, keys.spend], args)),
        (reply) => {
          const counts = countsOf(reply)
          return counts === undefined
            ? Effect.fail(nonsense("admit", reply))
            : Effect.succeed(admissionOf(limits, lease, counts))
        }
      )
    }

    const renew = (keyId: string, lease: string) =>
      Effect.asVoid(call("renew", () => run(Scripts.renew, [keyKeys(prefix, keyId).leases], [lease, leaseTtlMs])))

    /** The scripts one ended request runs: its key's windows and lease (when it touches them), and its usage row. */
    const finishCommands = (lease: string | undefined, usage: UsageRecord): ReadonlyArray<ScriptCall> => {
      const keys = keyKeys(prefix, usage.keyId)
      const tokens = usage.promptTokens + usage.completionTokens
      const spendNano = toNanoUsd(usage.spendUsd)
      // The usage day is this replica's: its keys must be named before the script runs (Cluster routing).
      const nowMs = timer.now()
      const dayKeys = usageKeys(prefix, utcDay(nowMs))
      const expireAtMs = (Math.floor(nowMs / dayMs) + usageRetentionDays + 1) * dayMs
      const keySide = lease !== undefined || (usage.countInWindows && (tokens > 0 || spendNano !== 0))
      const row: ScriptCall = {
        script: Scripts.recordUsage,
        keys: [dayKeys.keyIds, dayKeys.row(usage.keyId)],
        args: [usage.keyId, usage.model, usage.promptTokens, usage.completionTokens, spendNano, expireAtMs]
      }
      if (!keySide) return [row]
      const windows: ScriptCall = {
        script: Scripts.finishKey,
        keys: [keys.tokens, keys.leases, keys.spend],
        args: [windowSeconds, lease ?? "", usage.countInWindows ? tokens : 0, usage.countInWindows ? spendNano : 0, spendMarginMs]
      }
      return [windows, row]
    }

    /** Every ended request's scripts in one pipeline: one write, one round trip, however many requests. */
    const finishAll = (ended: ReadonlyArray<EndedRequest>) => {
      if (ended.length === 0) return Effect.void
      return call("finish", async () => {
        const calls = ended.flatMap(({ lease, usage }) => finishCommands(lease, usage))
        const pipeline = redis.pipeline()
        for (const { script, keys, args } of calls) pipeline.evalsha(script.sha, keys.length, ...keys, ...args)
        const replies = (await pipeline.exec()) ?? []
        // A Redis that lost its scripts (restarted, flushed) answers NOSCRIPT: those calls again, with their source.
        for (const [index, [error]] of replies.entries()) {
          if (error === null) continue
          const again = calls[index]
          if (!isNoScript(error) || again === undefined) throw error
          await run(again.script, again.keys, again.args)
        }
      })
    }

    const finish = (lease: string | undefined, usage: UsageRecord) => finishAll([{ lease, usage }])

    const figures = Effect.fn("RedisStore.figures")(function* (keyId: string, limits: KeyLimits) {
      const keys = keyKeys(prefix, keyId)
      const reply = yield* call("figures", () =>
        run(
          Scripts.figures,
          [keys.requests, keys.tokens, keys.leases, keys.spend],
          [windowSeconds, limits.budget?.period ?? "daily"]
        )
      )
      const values = integers(reply, 4)
      if (values === undefined) return yield* nonsense("figures", reply)
      const [requestsLastMinute = 0, tokensLastMinute = 0, inFlight = 0, spendNano = 0] = values
      return { requestsLastMinute, tokensLastMinute, inFlight, spendThisPeriodUsd: fromNanoUsd(spendNano) }
    })

    const usage = Effect.fn("RedisStore.usage")(function* (day: string, keyId?: string) {
      const dayKeys = usageKeys(prefix, day)
      const keyIds = keyId !== undefined ? [keyId] : yield* call("usage", () => redis.smembers(dayKeys.keyIds))
      const hashes = yield* call("usage", () => Promise.all(keyIds.map((id) => redis.hgetall(dayKeys.row(id)))))
      return keyIds.flatMap((id, index) => rowsOf(id, hashes[index] ?? {}))
    })

    return {
      kind: "redis",
      admit,
      renew,
      finish,
      finishAll,
      figures,
      usage,
      ping: call("ping", () => redis.ping()).pipe(Effect.asVoid)
    } satisfies StoreService
  })

/** The Redis store as the `Store` service; scoped: the connection closes with the layer. */
export const layer = (url: string, options?: Omit<RedisStoreOptions, "url">): Layer.Layer<Store> =>
  Layer.scoped(Store, make({ ...options, url }))
