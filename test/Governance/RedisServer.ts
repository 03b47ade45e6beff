/**
 * Test support for the Redis store: a redis-server of the test's own (to stop and start again), and the clean-up of
 * a key prefix on a shared Redis.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { Redis } from "ioredis"

/** A TCP port nothing listens on right now. */
export const sparePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const spawnRedis = (port: number) =>
  Effect.async<ChildProcess, Error>((resume) => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    let output = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Ready to accept connections")) resume(Effect.succeed(child))
    })
    child.once("exit", (code) => resume(Effect.fail(new Error(`redis-server exited (${code}): ${output}`))))
    child.once("error", (error) => resume(Effect.fail(error)))
  })

const kill = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

/** A redis-server the test controls. */
export interface OwnRedis {
  readonly start: Effect.Effect<void, Error>
  /** Kills it (SIGKILL): connections drop at once. */
  readonly stop: Effect.Effect<void>
  /** Freezes it (SIGSTOP) or thaws it (SIGCONT): connections stay open and nothing answers. */
  readonly freeze: (frozen: boolean) => Effect.Effect<void>
}

/**
 * A redis-server on `port` that the test stops and starts at will; whatever runs is killed with the scope.
 */
export const ownRedis = (port: number): Effect.Effect<OwnRedis, never, Scope.Scope> =>
  Effect.gen(function* () {
    let running: ChildProcess | undefined
    const stop = Effect.suspend(() => (running === undefined ? Effect.void : kill(running))).pipe(
      Effect.tap(() => Effect.sync(() => (running = undefined)))
    )
    yield* Effect.addFinalizer(() => stop)
    const start = Effect.flatMap(spawnRedis(port), (child) => Effect.sync(() => void (running = child)))
    const freeze = (frozen: boolean) => Effect.sync(() => void running?.kill(frozen ? "SIGSTOP" : "SIGCONT"))
    return { start, stop, freeze }
  })

/** Deletes every key under `prefix` (the store's keys all begin with `{<prefix>:`). */
export const deleteKeys = async (url: string, prefix: string): Promise<number> => {
  const redis = new Redis(url)
  try {
    let cursor = "0"
    let deleted = 0
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `{${prefix}:*`, "COUNT", 1000)
      if (keys.length > 0) deleted += await redis.del(...keys)
      cursor = next
    } while (cursor !== "0")
    return deleted
  } finally {
    redis.disconnect()
  }
}

/** Every key under `prefix`. */
export const keysUnder = async (redis: Redis, prefix: string): Promise<ReadonlyArray<string>> => {
  const found: Array<string> = []
  let cursor = "0"
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `{${prefix}:*`, "COUNT", 1000)
    found.push(...keys)
    cursor = next
  } while (cursor !== "0")
  return found
}

/** A Redis on 127.0.0.1:6379 that tests share: never assumed empty, each test under a key prefix of its own. */
export const sharedRedis = "redis://127.0.0.1:6379"

/**
 * A key prefix of the test's own on the shared Redis (`llmp-test-<name>-<random>`); the keys `<prefix>:<kind>:*` the
 * test made are deleted with the scope.
 */
export const scopedTestPrefix = (name: string, kind: string) =>
  Effect.acquireRelease(
    Effect.sync(() => `llmp-test-${name}${crypto.randomUUID().slice(0, 8)}`),
    (prefix) =>
      Effect.promise(async () => {
        const redis = new Redis(sharedRedis)
        try {
          const keys = await redis.keys(`${prefix}:${kind}:*`)
          if (keys.length > 0) await redis.del(...keys)
        } finally {
          redis.disconnect()
        }
      })
  )

/** Runs `body` with a connection of its own to the shared Redis. */
export const withSharedRedis = <A>(body: (redis: Redis) => Promise<A>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Redis(sharedRedis)),
    (redis) => Effect.promise(() => body(redis)),
    (redis) => Effect.sync(() => redis.disconnect())
  )
