/** /proc readings of the gateway process (CPU and memory fall back to `ps` where there is no /proc). */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"

const clockTicks = (() => {
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
})()

/** CPU time (user + system, all threads) of `pid` in seconds. */
export const cpuSecondsOf = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields after the command name start at field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    const text = execFileSync("ps", ["-o", "cputime=", "-p", String(pid)], { encoding: "utf8" }).trim()
    const [days, clock] = text.includes("-") ? text.split("-") : ["0", text]
    const parts = (clock ?? "0").split(":").map(Number).reverse()
    return Number(days) * 86_400 + (parts[0] ?? 0) + (parts[1] ?? 0) * 60 + (parts[2] ?? 0) * 3_600
  }
}

/** The processes whose parent is `pid` (e.g. the workers a node:cluster primary forked); empty without /proc. */
export const childPidsOf = (pid: number): ReadonlyArray<number> => {
  const children: Array<number> = []
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
        // Field 4, after the state, is the parent's pid.
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
        if (parent === pid) children.push(Number(entry))
      } catch {
        // exited between the listing and the read
      }
    }
  } catch {
    // no /proc
  }
  return children
}

/** CPU seconds of `pid`, or 0 when it is gone (a worker that exited during a run). */
export const cpuSecondsOrZero = (pid: number): number => {
  try {
    return cpuSecondsOf(pid)
  } catch {
    return 0
  }
}

/** Resident set size and its high-water mark, in MB. */
export const memoryOf = (pid: number): { readonly rssMb: number; readonly hwmMb: number } => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN)
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 }
  } catch {
    const rss = Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)], { encoding: "utf8" }).trim()) / 1024
    return { rssMb: rss, hwmMb: Number.NaN }
  }
}

/**
 * Busy and steal CPU time of the whole machine (all cores) in seconds, from /proc/stat; used to spot other
 * work (tests, builds, noisy neighbours) running during a measurement.
 */
export const machineCpu = (): { readonly busyS: number; readonly stealS: number } | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? ""
    // irq and softirq time is left out: the benchmark's own loopback traffic is processed there and
    // is not charged to any process.
    const [user, nice, system, , , , , steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return {
      busyS: ((user ?? 0) + (nice ?? 0) + (system ?? 0)) / clockTicks,
      stealS: (steal ?? 0) / clockTicks
    }
  } catch {
    return undefined
  }
}

export const ownCpuSeconds = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/** The inodes of the sockets `pid` holds open (its `socket:[inode]` file descriptors); empty without /proc. */
export const socketInodesOf = (pid: number): ReadonlyArray<string> => {
  const inodes: Array<string> = []
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        if (match?.[1] !== undefined) inodes.push(match[1])
      } catch {
        // closed between the listing and the read
      }
    }
  } catch {
    // no /proc, or the process is gone
  }
  return inodes
}

export interface TcpSocket {
  readonly localPort: number
  readonly remotePort: number
  /** The kernel's state name, e.g. ESTABLISHED, CLOSE_WAIT, LISTEN. */
  readonly state: string
}

const tcpStates = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"]

/** The TCP sockets among `inodes`, from /proc/net/tcp and tcp6 (other sockets, e.g. pipes' unix sockets, are left out). */
export const tcpSocketsOf = (inodes: ReadonlyArray<string>): ReadonlyArray<TcpSocket> => {
  const wanted = new Set(inodes)
  const sockets: Array<TcpSocket> = []
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = ""
    try {
      text = readFileSync(table, "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/)
      const inode = fields[9]
      if (inode === undefined || !wanted.has(inode)) continue
      const port = (address: string | undefined) => parseInt(address?.split(":")[1] ?? "0", 16)
      sockets.push({ localPort: port(fields[1]), remotePort: port(fields[2]), state: tcpStates[parseInt(fields[3] ?? "0", 16)] ?? "?" })
    }
  }
  return sockets
}
