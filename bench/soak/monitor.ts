/**
 * Readings of the gateway process during the soak, one a second: RSS (VmRSS) and open sockets (socket file
 * descriptors). Only what the verdict needs is kept: the samples of the window after the warm-up, the last
 * window, and the maxima.
 */
import { get as httpGet } from "node:http"
import { availableParallelism } from "node:os"
import { cpuSecondsOf, machineCpu, memoryOf, socketInodesOf } from "../proc.js"
import { median } from "../stats.js"

export interface Reading {
  readonly atS: number
  readonly rssMb: number
  readonly sockets: number
  /** CPU time the process has used so far, in seconds. */
  readonly cpuS: number
  /** CPU time the whole machine has been busy so far (all cores), in seconds. */
  readonly machineBusyS: number
}

export const readGateway = (pid: number, atS: number): Reading => {
  let cpuS = Number.NaN
  try {
    cpuS = cpuSecondsOf(pid)
  } catch {
    // the process is gone
  }
  return { atS, rssMb: memoryOf(pid).rssMb, sockets: socketInodesOf(pid).length, cpuS, machineBusyS: machineCpu()?.busyS ?? Number.NaN }
}

/** How fast `seconds` grew from one reading to a later one, in % of a second per second. */
const rate = (from: Reading | undefined, to: Reading | undefined, seconds: (reading: Reading) => number): number =>
  from === undefined || to === undefined || to.atS === from.atS ? Number.NaN : (100 * (seconds(to) - seconds(from))) / (to.atS - from.atS)

export class GatewayMonitor {
  /** RSS samples of [warm-up end, warm-up end + window). */
  private readonly warm: Array<number> = []
  /** The last `windowS` readings. */
  private readonly last: Array<Reading> = []
  maxRssMb = 0
  maxSockets = 0
  private first: Reading | undefined
  private latest: Reading | undefined

  /** Where the warm-up of the process being read ends, in seconds of load. */
  warmupEndS: number

  constructor(
    private pid: number,
    readonly warmupS: number,
    readonly windowS = 10
  ) {
    this.warmupEndS = warmupS
  }

  /** Reads a restarted gateway from now on: its own warm-up, its own windows (the maxima carry on). */
  follow(pid: number, atS: number): void {
    this.pid = pid
    this.warmupEndS = atS + this.warmupS
    this.warm.length = 0
    this.last.length = 0
  }

  read(atS: number): Reading {
    const reading = readGateway(this.pid, atS)
    this.first ??= reading
    this.latest = reading
    if (Number.isFinite(reading.rssMb)) this.maxRssMb = Math.max(this.maxRssMb, reading.rssMb)
    this.maxSockets = Math.max(this.maxSockets, reading.sockets)
    if (atS >= this.warmupEndS && atS < this.warmupEndS + this.windowS) this.warm.push(reading.rssMb)
    this.last.push(reading)
    if (this.last.length > this.windowS) this.last.shift()
    return reading
  }

  /** Median RSS of the window right after the warm-up. */
  get warmRssMb(): number {
    return median(this.warm)
  }

  /** The gateway's CPU use over the last window, % of one core. */
  get recentCpuPercent(): number {
    return this.recentRate((reading) => reading.cpuS)
  }

  /**
   * The whole machine's CPU use over the last window, % of all cores: near 100 the gateway competes for CPU (with
   * the load side, or with anything else running), and its latencies say little about itself.
   */
  get recentMachinePercent(): number {
    return this.recentRate((reading) => reading.machineBusyS) / availableParallelism()
  }

  /** The whole machine's CPU use over the whole load, % of all cores. */
  get overallMachinePercent(): number {
    return rate(this.first, this.latest, (reading) => reading.machineBusyS) / availableParallelism()
  }

  /** How fast `seconds` grew over the last window, in % of a second per second. */
  private recentRate(seconds: (reading: Reading) => number): number {
    return rate(this.last[0], this.last[this.last.length - 1], seconds)
  }

  /** Median RSS of the last window. */
  get endRssMb(): number {
    return median(this.last.map((reading) => reading.rssMb))
  }

}

/**
 * `GET /health` on a new connection, one at a time: how long the gateway takes to answer a newcomer while loaded
 * (a busy event loop or a starved accept shows here first).
 */
export class HealthProbe {
  /** The last answer: status and milliseconds, or what went wrong. */
  last = "-"
  maxMs = 0
  private busy = false

  constructor(
    private readonly url: string,
    private readonly timeoutMs = 60_000
  ) {}

  probe(): void {
    if (this.busy) return
    this.busy = true
    const started = performance.now()
    const done = (outcome: string) => {
      const ms = performance.now() - started
      this.maxMs = Math.max(this.maxMs, ms)
      this.last = `${outcome} in ${ms.toFixed(0)} ms`
      this.busy = false
    }
    const request = httpGet(this.url, { agent: false }, (response) => {
      response.resume()
      response.once("end", () => done(String(response.statusCode)))
      response.once("error", () => done("broken"))
    })
    request.setTimeout(this.timeoutMs, () => request.destroy(new Error("no answer")))
    request.once("error", (error) => done(error.message))
  }
}
