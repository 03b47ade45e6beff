/**
 * Redis for `--governance`: the server's own counters around a run (INFO commandstats, stats, cpu; CLIENT LIST),
 * the deletion of the bench's keys (SCAN + DEL under its REDIS_KEY_PREFIX), and a counting relay that sees one
 * gateway's Redis traffic alone: its commands by name and its round trips.
 *
 * The Redis may be shared (tests of others use it too), and its counters are the server's, not one client's: a
 * delta is marked `shared` when there is evidence that another client worked during the interval.
 */
import { Redis } from "ioredis"
import { createConnection, createServer } from "node:net"
import type { AddressInfo, Socket } from "node:net"
import { readFileSync } from "node:fs"
import { tcpSocketsOf, socketInodesOf } from "./proc.js"

/** The store's scripts: every command the gateway sends per request is one of these. */
const scriptCommands = ["evalsha", "eval", "evalsha_ro", "eval_ro"]
/** Commands this module sends itself while it watches. */
const ownCommands = new Set(["info", "client|list"])

export interface RedisSnapshot {
  readonly atMs: number
  /** cmdstat name → calls. */
  readonly calls: Readonly<Record<string, number>>
  readonly connectionsReceived: number
  /** used_cpu_user + used_cpu_sys of the server, seconds. */
  readonly cpuS: number
  readonly clients: ReadonlyArray<{ readonly addr: string; readonly age: number; readonly idle: number; readonly cmd: string }>
}

export interface RedisDelta {
  /**
   * Calls per command during the interval, the watcher's own INFO and CLIENT LIST left out. Commands that scripts
   * run (redis.call) are counted too, under their own names.
   */
  readonly calls: Readonly<Record<string, number>>
  /** evalsha + eval (+ their _ro forms): the store's scripts, the commands the gateway sends. */
  readonly scriptCalls: number
  /** The other commands: those the scripts ran, and any other client's. */
  readonly otherCalls: number
  /** CPU the Redis server used, seconds. */
  readonly cpuS: number
  /** Whether another client may have added to these counts, and why. */
  readonly shared: boolean
  readonly sharedReasons: ReadonlyArray<string>
}

const parseInfo = (text: string): Map<string, string> => {
  const fields = new Map<string, string>()
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":")
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return fields
}

export class RedisWatch {
  private constructor(
    private readonly redis: Redis,
    readonly url: string,
    readonly port: number,
    /** The server's pid when it runs on this machine (its CPU is then not "other" CPU). */
    readonly localPid: number | undefined
  ) {}

  /** Connects (one attempt, 2 s); fails with a message naming the URL when Redis does not answer. */
  static async connect(url: string): Promise<RedisWatch> {
    const redis = new Redis(url, { connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true })
    redis.on("error", () => undefined)
    try {
      await redis.connect()
      await redis.ping()
    } catch (error) {
      redis.disconnect()
      throw new Error(`Redis at ${url} does not answer: ${error instanceof Error ? error.message : String(error)}`)
    }
    const server = parseInfo(await redis.info("server"))
    const pid = Number(server.get("process_id"))
    let localPid: number | undefined
    try {
      if (Number.isInteger(pid) && readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("redis")) localPid = pid
    } catch {
      // not on this machine (or no /proc)
    }
    // The port the gateway's sockets connect to: the URL's (a forwarded port may differ from Redis's tcp_port).
    return new RedisWatch(redis, url, Number(new URL(url).port || 6379), localPid)
  }

  async snapshot(): Promise<RedisSnapshot> {
    const info = parseInfo(String(await this.redis.call("INFO", "commandstats", "stats", "cpu")))
    const calls: Record<string, number> = {}
    for (const [field, value] of info) {
      if (!field.startsWith("cmdstat_")) continue
      const match = /(?:^|,)calls=(\d+)/.exec(value)
      if (match?.[1] !== undefined) calls[field.slice("cmdstat_".length)] = Number(match[1])
    }
    const clients = String(await this.redis.call("CLIENT", "LIST"))
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => {
        const fields = new Map(line.trim().split(" ").map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)] as const))
        return { addr: fields.get("addr") ?? "", age: Number(fields.get("age")), idle: Number(fields.get("idle")), cmd: fields.get("cmd") ?? "" }
      })
    return {
      atMs: Date.now(),
      calls,
      connectionsReceived: Number(info.get("total_connections_received")),
      cpuS: Number(info.get("used_cpu_user")) + Number(info.get("used_cpu_sys")),
      clients
    }
  }

  /** The address Redis sees for this watcher's own connection. */
  private ownAddress(): string | undefined {
    const stream = (this.redis as unknown as { stream?: Socket }).stream
    return stream?.localPort === undefined ? undefined : `${stream.localAddress ?? "127.0.0.1"}:${stream.localPort}`
  }

  /**
   * What happened between two snapshots. `gatewayPids` are the processes whose Redis connections are expected
   * (found through their sockets); any other client that connected or ran a command during the interval marks
   * the delta as shared.
   */
  delta(before: RedisSnapshot, after: RedisSnapshot, gatewayPids: ReadonlyArray<number>): RedisDelta {
    const calls: Record<string, number> = {}
    for (const [name, count] of Object.entries(after.calls)) {
      const added = count - (before.calls[name] ?? 0)
      if (added > 0 && !ownCommands.has(name)) calls[name] = added
    }
    const reasons: Array<string> = []
    const connected = after.connectionsReceived - before.connectionsReceived
    if (connected > 0) reasons.push(`${connected} connection(s) opened during the run`)
    const expected = new Set<string>()
    const own = this.ownAddress()
    if (own !== undefined) expected.add(own)
    for (const pid of gatewayPids) {
      for (const socket of tcpSocketsOf(socketInodesOf(pid))) {
        if (socket.remotePort === this.port) expected.add(`127.0.0.1:${socket.localPort}`)
      }
    }
    const intervalS = (after.atMs - before.atMs) / 1000
    const active = after.clients.filter((client) => !expected.has(client.addr) && client.idle <= intervalS && client.cmd !== "client|list")
    if (active.length > 0) reasons.push(`other clients active: ${active.map((client) => `${client.addr} (${client.cmd})`).join(", ")}`)
    const scriptCalls = scriptCommands.reduce((sum, name) => sum + (calls[name] ?? 0), 0)
    return {
      calls,
      scriptCalls,
      otherCalls: Object.values(calls).reduce((sum, count) => sum + count, 0) - scriptCalls,
      cpuS: after.cpuS - before.cpuS,
      shared: reasons.length > 0,
      sharedReasons: reasons
    }
  }

  /** Deletes every key under `prefix` (the gateway's keys all begin with `{<prefix>:`) with SCAN + DEL. */
  async deletePrefix(prefix: string): Promise<number> {
    let cursor = "0"
    let deleted = 0
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", `{${prefix}:*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) deleted += await this.redis.del(...keys)
    } while (cursor !== "0")
    return deleted
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect())
  }
}

/** What a relay saw from its clients: commands by name and round trips (sends that follow a reply). */
export interface RelayCounts {
  readonly roundTrips: number
  readonly calls: Readonly<Record<string, number>>
}

export interface Relay {
  readonly url: string
  readonly counts: () => RelayCounts
  readonly close: () => Promise<void>
}

/**
 * Reads the commands (RESP arrays of bulk strings, as ioredis sends them) at the start of `buffer`, calling
 * `onCommand` with each command's name; returns how many bytes were complete commands.
 */
const readCommands = (buffer: Buffer, onCommand: (name: string) => void): number => {
  let offset = 0
  while (offset < buffer.length) {
    const start = offset
    const lineEnd = buffer.indexOf("\r\n", offset)
    if (lineEnd < 0) return start
    if (buffer[offset] !== 0x2a) {
      // An inline command: one line.
      onCommand(buffer.toString("latin1", offset, lineEnd).split(" ")[0]?.toLowerCase() ?? "?")
      offset = lineEnd + 2
      continue
    }
    const count = Number(buffer.toString("latin1", offset + 1, lineEnd))
    offset = lineEnd + 2
    const words: Array<string> = []
    for (let index = 0; index < count; index++) {
      const headerEnd = buffer.indexOf("\r\n", offset)
      if (headerEnd < 0) return start
      const length = Number(buffer.toString("latin1", offset + 1, headerEnd))
      const dataStart = headerEnd + 2
      if (dataStart + length + 2 > buffer.length) return start
      if (index < 2) words.push(buffer.toString("latin1", dataStart, dataStart + length).toLowerCase())
      offset = dataStart + length + 2
    }
    // Redis names subcommands as "script|load", "client|list".
    const [name = "?", sub] = words
    onCommand(["script", "client", "config"].includes(name) && sub !== undefined ? `${name}|${sub}` : name)
  }
  return offset
}

/**
 * A TCP relay in front of Redis that counts, over all its connections, the commands clients send and their round
 * trips. A round trip is a burst of sends: it begins with a send and ends once the client has sent nothing for
 * `quietMs`; Redis's replies are held back until then. So commands written together (a pipeline) are one round
 * trip even when the client is preempted between its writes, and a command that needs the reply to another can
 * only come in a later round trip. Requests must be spaced more than `quietMs` apart, or two requests' commands
 * could share a burst. It adds a hop and a wait, so it serves a sequential count, never a throughput run.
 */
export const startRelay = (redisUrl: string, quietMs = 3): Promise<Relay> => {
  const target = new URL(redisUrl)
  const host = target.hostname === "" ? "127.0.0.1" : target.hostname
  const port = Number(target.port === "" ? 6379 : target.port)
  let roundTrips = 0
  const calls: Record<string, number> = {}
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = createConnection({ host, port })
    sockets.add(client).add(upstream)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    let burst: ReturnType<typeof setTimeout> | undefined
    let heldReplies: Array<Buffer> = []
    let pending: Buffer = Buffer.alloc(0)
    const endBurst = () => {
      burst = undefined
      for (const reply of heldReplies) client.write(reply)
      heldReplies = []
    }
    client.on("data", (data: Buffer) => {
      if (burst === undefined) roundTrips++
      else clearTimeout(burst)
      burst = setTimeout(endBurst, quietMs)
      upstream.write(data)
      pending = pending.length === 0 ? data : Buffer.concat([pending, data])
      const used = readCommands(pending, (name) => {
        calls[name] = (calls[name] ?? 0) + 1
      })
      pending = pending.subarray(used)
    })
    upstream.on("data", (data: Buffer) => {
      if (burst === undefined) client.write(data)
      else heldReplies.push(data)
    })
    const end = () => {
      if (burst !== undefined) clearTimeout(burst)
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on("close", end).on("error", end)
    upstream.on("close", end).on("error", end)
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port: relayPort } = server.address() as AddressInfo
      const url = new URL(redisUrl)
      url.hostname = "127.0.0.1"
      url.port = String(relayPort)
      resolve({
        url: url.toString(),
        counts: () => ({ roundTrips, calls: { ...calls } }),
        close: () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
}
