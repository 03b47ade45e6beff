/**
 * The soak's load side: `connections` clients, each sending one request after another until stopped, with a
 * behaviour drawn per request: plain and streamed completions, clients that leave mid-answer, slow readers, and
 * malformed requests. Each response is checked as it is read (bench/soak/checks.ts) and counted in a `Tally`.
 */
import { Agent, request as httpRequest } from "node:http"
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from "node:http"
import { connect } from "node:net"
import type { Socket } from "node:net"
import { ResponseCheck } from "./checks.js"
import { Tally } from "./tally.js"

export interface TrafficOptions {
  readonly host: string
  readonly port: number
  /** The gateway's INTERNAL_API_KEY. */
  readonly apiKey: string
  /** The key the gateway uses upstream: a client must never see it. */
  readonly upstreamKey: string
  readonly connections: number
  /** Whether slow readers may ask for `soak-large`, the model that always streams 4 MB chunks. */
  readonly hugeChunks: boolean
}

type Behaviour =
  | "json"
  | "stream"
  | "stream-leave"
  | "json-leave"
  | "slow-stream"
  | "bad-json"
  | "deep-body"
  | "wrong-method"
  | "no-length"
  | "oversized"
  | "bad-key"
  | "unknown-model"
  | "garbage"

const behaviours: ReadonlyArray<readonly [Behaviour, number]> = [
  ["json", 24],
  ["stream", 24],
  ["stream-leave", 10],
  ["json-leave", 4],
  ["slow-stream", 8],
  ["bad-json", 1.5],
  ["deep-body", 1.5],
  ["wrong-method", 1.5],
  ["no-length", 1],
  ["oversized", 1],
  ["bad-key", 1.5],
  ["unknown-model", 1],
  ["garbage", 1]
]
const totalWeight = behaviours.reduce((sum, [, weight]) => sum + weight, 0)

const drawBehaviour = (): Behaviour => {
  let roll = Math.random() * totalWeight
  for (const [behaviour, weight] of behaviours) {
    roll -= weight
    if (roll < 0) return behaviour
  }
  return "json"
}

/** What a malformed request must get; anything else is a finding. */
const expectedStatus: Partial<Record<Behaviour, number>> = {
  "bad-json": 400,
  "deep-body": 400,
  "wrong-method": 405,
  "no-length": 411,
  oversized: 413,
  "bad-key": 401,
  "unknown-model": 404,
  garbage: 400
}

interface HeldBreak {
  readonly at: number
  readonly error: string
  readonly finding: string | undefined
}

const breakHoldMs = 2_000
const maxHeldBreaks = 10_000

/** No request should take longer: the registry's request_ms is 30 s. */
const clientTimeoutMs = 60_000
/** A slow reader takes this many bytes per second: four seconds for one of the upstream's 4 MB chunks. */
const slowReadBytesPerSecond = 1024 * 1024

const chatBody = (model: string, stream: boolean, includeUsage = false): string =>
  JSON.stringify({
    model,
    messages: [{ role: "user", content: "Hello, soak." }],
    max_tokens: 32,
    ...(stream ? { stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) } : {})
  })

const deepBodies = [
  `{"model":"soak","messages":[{"role":"user","content":"hi"}],"x_extra":${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
  `{"model":"soak","messages":${"[".repeat(100_000)}${"]".repeat(100_000)}}`
]
const badJsonBodies = [`{"model":"soak","messages":[{"role":"user","content":"hi"}`, "not json at all", `{"model":"soak",,}`, "\u0000\u0001\u0002"]
/** Not HTTP: nonsense, a negative length, the start of a TLS handshake. */
const garbageBytes: ReadonlyArray<readonly [string, string]> = [
  ["nonsense", "GARBAGE \u0000\u0001 nonsense\r\n\r\n"],
  ["negative length", "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -1\r\n\r\n"],
  ["TLS hello", "\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003"]
]
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)] as A
/** Half the traffic goes through the fallback chain (`soak`), half to a single deployment. */
const anyModel = () => (Math.random() < 0.5 ? "soak" : "soak-direct")

interface Plan {
  readonly method: string
  readonly headers: OutgoingHttpHeaders
  /** The body, written whole (with its length) unless `chunked` or `claimedLength` say otherwise. */
  readonly body?: string
  readonly chunked?: boolean
  /** A content-length larger than what is sent (the gateway must refuse before reading). */
  readonly claimedLength?: number
  /** A fresh connection, closed after the answer: the gateway may close it anyway. */
  readonly ownConnection?: boolean
  /** Leave after this many ms from sending, or after the first body piece when `leaveAfterFirstPiece`. */
  readonly leaveAfterMs?: number
  readonly leaveAfterFirstPiece?: boolean
  readonly slowRead?: boolean
}

export class Traffic {
  readonly tally = new Tally()
  private agent = new Agent()
  private readonly inFlight = new Set<{ readonly abort: () => void }>()
  private stopping = false
  private clients: Array<Promise<void>> = []
  /**
   * Broken connections are held for `breakHoldMs` before they count: a gateway that crashes breaks every
   * connection a moment before its exit is seen, and those belong to the crash.
   */
  private readonly heldBreaks: Array<HeldBreak> = []
  /** Slow readers take seconds per answer; uncapped they would end up holding nearly every connection. */
  private slowReaders = 0

  constructor(private readonly options: TrafficOptions) {}

  /** Starts the clients (again, after a `stop`); they run until `stop`. */
  start(): void {
    this.stopping = false
    this.agent = new Agent({ keepAlive: true, maxSockets: this.options.connections })
    this.clients = Array.from({ length: this.options.connections }, () => this.client())
  }

  /** Hangs up every request in flight and closes every connection; resolves once the clients are done. */
  async stop(): Promise<void> {
    const { agent, clients } = this
    if (!this.stopping) {
      this.stopping = true
      for (const exchange of this.inFlight) exchange.abort()
    }
    await Promise.all(clients)
    agent.destroy()
  }

  get inFlightCount(): number {
    return this.inFlight.size
  }

  private holdBreak(broken: HeldBreak): void {
    this.heldBreaks.push(broken)
    this.countBreaks()
  }

  /** Counts the breaks held long enough (every one held, with `all`): no crash came with them. */
  countBreaks(all = false): void {
    const { tally } = this
    const before = all ? Number.POSITIVE_INFINITY : performance.now() - breakHoldMs
    // The bound keeps the queue small whatever happens.
    while (this.heldBreaks.length > 0 && (this.heldBreaks[0]!.at < before || this.heldBreaks.length > maxHeldBreaks)) {
      const broken = this.heldBreaks.shift()!
      tally.clientErrors.add(broken.error)
      if (broken.finding !== undefined) tally.findings.add("connection broken on a well-behaved request", broken.finding)
    }
  }

  /** The gateway crashed: the breaks held are its doing. */
  blameBreaksOnCrash(): void {
    for (const broken of this.heldBreaks.splice(0)) this.tally.clientErrors.add(`${broken.error} (the gateway crashed)`)
  }

  private async client(): Promise<void> {
    const maxSlowReaders = Math.max(1, Math.floor(this.options.connections / 10))
    while (!this.stopping) {
      let behaviour = drawBehaviour()
      while (behaviour === "slow-stream" && this.slowReaders >= maxSlowReaders) behaviour = drawBehaviour()
      this.tally.behaviours.add(behaviour)
      if (behaviour === "slow-stream") this.slowReaders++
      try {
        await (behaviour === "garbage" ? this.garbage() : this.exchange(behaviour, this.plan(behaviour)))
      } finally {
        if (behaviour === "slow-stream") this.slowReaders--
      }
    }
  }

  private plan(behaviour: Behaviour): Plan {
    const headers = { authorization: `Bearer ${this.options.apiKey}`, "content-type": "application/json" }
    switch (behaviour) {
      case "json":
        return { method: "POST", headers, body: chatBody(anyModel(), false) }
      case "stream":
        return { method: "POST", headers, body: chatBody(anyModel(), true, Math.random() < 0.5) }
      case "stream-leave":
        return Math.random() < 0.8
          ? { method: "POST", headers, body: chatBody(anyModel(), true), leaveAfterFirstPiece: true, leaveAfterMs: Math.random() * 150 }
          : { method: "POST", headers, body: chatBody(anyModel(), true), leaveAfterMs: Math.random() * 50 }
      case "json-leave":
        return { method: "POST", headers, body: chatBody(anyModel(), false), leaveAfterMs: Math.random() * 100 }
      case "slow-stream":
        // Half of them get 4 MB chunks (the soak-large model), the rest whatever the upstream draws.
        return {
          method: "POST",
          headers,
          body: chatBody(this.options.hugeChunks && Math.random() < 0.5 ? "soak-large" : anyModel(), true, true),
          slowRead: true
        }
      case "bad-json":
        return { method: "POST", headers, body: pick(badJsonBodies) }
      case "deep-body":
        return { method: "POST", headers, body: pick(deepBodies) }
      case "wrong-method": {
        const method = pick(["GET", "PUT", "DELETE", "PATCH"])
        return method === "GET" || method === "DELETE" ? { method, headers } : { method, headers, body: chatBody("soak", false) }
      }
      case "no-length":
        return { method: "POST", headers, body: chatBody("soak", false), chunked: true, ownConnection: true }
      case "oversized":
        return { method: "POST", headers, body: "x".repeat(64 * 1024), claimedLength: 5 * 1024 * 1024, ownConnection: true }
      case "bad-key":
        return { method: "POST", headers: { ...headers, authorization: "Bearer not-the-key" }, body: chatBody("soak", false) }
      case "unknown-model":
        return { method: "POST", headers, body: chatBody("no-such-model", false) }
      case "garbage":
        // Sent raw by `garbage()`; this plan is never used.
        return { method: "POST", headers }
    }
  }

  /** One request and its answer, read and checked; resolves when it is over, whatever happened. */
  private exchange(behaviour: Behaviour, plan: Plan): Promise<void> {
    const { tally } = this
    const leaving = plan.leaveAfterMs !== undefined
    return new Promise((resolve) => {
      const check = new ResponseCheck(this.options.upstreamKey)
      const headers: OutgoingHttpHeaders = { ...plan.headers }
      if (plan.body !== undefined && plan.chunked !== true) headers["content-length"] = plan.claimedLength ?? Buffer.byteLength(plan.body)
      const request: ClientRequest = httpRequest({
        host: this.options.host,
        port: this.options.port,
        path: "/v1/chat/completions",
        method: plan.method,
        headers,
        agent: plan.ownConnection === true ? false : this.agent
      })
      let status: number | undefined
      let settled = false
      let leaveTimer: NodeJS.Timeout | undefined
      let slowTimer: NodeJS.Timeout | undefined
      const handle = { abort: () => request.destroy() }
      this.inFlight.add(handle)

      const settle = (record: () => void) => {
        if (settled) return
        settled = true
        clearTimeout(timeout)
        clearTimeout(leaveTimer)
        clearTimeout(slowTimer)
        this.inFlight.delete(handle)
        if (!this.stopping) {
          tally.done++
          record()
          for (const finding of check.findings) tally.findings.add(finding.name, `${behaviour}: ${finding.example}`)
        }
        if (!request.destroyed && (plan.ownConnection === true || leaving)) request.destroy()
        resolve()
      }
      const leave = () => settle(() => tally.streamEnds.add(status === undefined ? "left before headers" : "left"))
      const broken = (error: Error & { code?: string }) =>
        settle(() => {
          const phase = status === undefined ? "before headers" : "mid-body"
          // A slow reader may be cut at the gateway's deadline; anyone else should get a whole answer.
          const wellBehaved = plan.slowRead !== true && expectedStatus[behaviour] === undefined
          this.holdBreak({
            at: performance.now(),
            error: `${error.code ?? error.message} ${phase}${plan.slowRead === true ? " (slow reader)" : ""}`,
            finding: wellBehaved ? `${behaviour}: ${error.code ?? error.message} ${phase} (status ${String(status)})` : undefined
          })
        })
      const timeout = setTimeout(() => {
        settle(() => tally.findings.add("no answer within the client timeout", `${behaviour}: status ${String(status)} after ${clientTimeoutMs / 1000} s`))
        request.destroy()
      }, clientTimeoutMs)
      if (leaving && plan.leaveAfterFirstPiece !== true) {
        leaveTimer = setTimeout(() => {
          leave()
          request.destroy()
        }, plan.leaveAfterMs)
      }

      request.on("error", broken)
      // Should neither "end" nor "error" come (a close Node reports no other way), the exchange still ends.
      request.on("close", () => broken(Object.assign(new Error("closed"), { code: "closed without end" })))
      request.on("response", (response: IncomingMessage) => {
        status = response.statusCode ?? 0
        if (this.stopping) return
        tally.statuses.add(String(status))
        check.headers(status, response.rawHeaders)
        const expected = expectedStatus[behaviour]
        if (expected !== undefined && status !== expected) {
          tally.findings.add("unexpected status for a malformed request", `${behaviour} (${plan.method}) got ${status}, expected ${expected}`)
        }
        response.on("error", broken)
        response.on("data", (piece: Buffer) => {
          check.feed(piece)
          if (plan.leaveAfterFirstPiece === true && leaveTimer === undefined) {
            leaveTimer = setTimeout(() => {
              leave()
              request.destroy()
            }, plan.leaveAfterMs)
          }
          if (plan.slowRead === true) {
            response.pause()
            slowTimer = setTimeout(() => response.resume(), (1000 * piece.length) / slowReadBytesPerSecond)
          }
        })
        response.on("end", () =>
          settle(() => {
            const end = check.end()
            if (end === undefined) return
            tally.streamEnds.add(end)
            if (end === "cut") tally.findings.add("stream ended without [DONE] or error frame", `${behaviour}: status ${status}`)
          })
        )
      })

      if (plan.claimedLength !== undefined) request.write(plan.body ?? "")
      else if (plan.chunked === true) {
        request.write(plan.body ?? "")
        request.end()
      } else request.end(plan.body)
    })
  }

  /** Bytes that are not HTTP on a fresh connection: the answer should be Node's bare 400. */
  private garbage(): Promise<void> {
    return new Promise((resolve) => {
      const [variant, sent] = pick(garbageBytes)
      const socket: Socket = connect(this.options.port, this.options.host)
      let answer = ""
      let settled = false
      const handle = { abort: () => socket.destroy() }
      this.inFlight.add(handle)
      const finish = () => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.inFlight.delete(handle)
        socket.destroy()
        if (!this.stopping) {
          this.tally.done++
          const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1]
          // A reset can overtake the answer on its way (unread bytes on a closed socket): counted, not a finding.
          this.tally.statuses.add(status ?? `garbage (${variant}): ${failure ?? "closed without a status line"}`)
          if (status !== undefined && status !== "400") {
            this.tally.findings.add("unexpected status for a malformed request", `garbage (${variant}) got ${JSON.stringify(answer.slice(0, 80))}, expected 400`)
          }
        }
        resolve()
      }
      let failure: string | undefined
      const timer = setTimeout(() => {
        failure = "no answer in 10 s"
        finish()
      }, 10_000)
      socket.on("error", (error: Error & { code?: string }) => {
        failure = `${error.code ?? error.message} without a status line`
        finish()
      })
      socket.on("close", finish)
      socket.on("data", (piece: Buffer) => {
        // Only the status line matters.
        if (answer.length < 256) answer += piece.toString("latin1")
      })
      socket.write(sent)
    })
  }
}
