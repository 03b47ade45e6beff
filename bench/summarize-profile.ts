/**
 * Aggregates a V8 `.cpuprofile` (from `node --cpu-prof`) by self time: per function (name + script + line)
 * and per package / script.
 *
 *   tsx bench/summarize-profile.ts <file.cpuprofile | directory> [--top N] [--callers FUNCTION_NAME]
 *
 * With a directory, the newest `.cpuprofile` in it is used.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"

export interface SelfTimeRow {
  readonly functionName: string
  readonly location: string
  readonly selfMs: number
  readonly percent: number
}

export interface ProfileSummary {
  readonly file: string
  /** Busy time (all samples but "(idle)"); percentages are of this. */
  readonly totalMs: number
  readonly idleMs: number
  readonly sampleCount: number
  readonly window: string
  readonly functions: ReadonlyArray<SelfTimeRow>
  readonly packages: ReadonlyArray<{ readonly name: string; readonly selfMs: number; readonly percent: number }>
}

interface ProfileNode {
  readonly id: number
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly children: ReadonlyArray<number>
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const numberArray = (value: unknown, field: string): ReadonlyArray<number> => {
  if (!Array.isArray(value) || !value.every((item): item is number => typeof item === "number")) {
    throw new Error(`not a V8 CPU profile: "${field}" is not an array of numbers`)
  }
  return value
}

const parseNodes = (value: unknown): ReadonlyArray<ProfileNode> => {
  if (!Array.isArray(value)) throw new Error(`not a V8 CPU profile: "nodes" is not an array`)
  return value.map((node: unknown) => {
    if (!isRecord(node) || typeof node["id"] !== "number" || !isRecord(node["callFrame"])) {
      throw new Error("not a V8 CPU profile: a node lacks id or callFrame")
    }
    const frame = node["callFrame"]
    return {
      id: node["id"],
      functionName: typeof frame["functionName"] === "string" ? frame["functionName"] : "",
      url: typeof frame["url"] === "string" ? frame["url"] : "",
      lineNumber: typeof frame["lineNumber"] === "number" ? frame["lineNumber"] : -1,
      children: Array.isArray(node["children"]) ? node["children"].filter((child): child is number => typeof child === "number") : []
    }
  })
}

const cwdUrl = pathToFileURL(process.cwd()).href + "/"

/** A short script name: relative to the working directory, `node:` internals kept as they are. */
const shortUrl = (url: string): string => {
  if (url === "") return ""
  if (url.startsWith(cwdUrl)) return url.slice(cwdUrl.length)
  if (url.startsWith("file://")) return url.slice("file://".length)
  return url
}

/** The package (node_modules/<name> or @scope/name), `node:internal`, the app's own `dist/…` file, or the VM. */
const packageOf = (url: string, functionName: string): string => {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native / VM)"
  if (url.startsWith("node:")) return "node: internals"
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (match?.[1] !== undefined) return match[1]
  return shortUrl(url)
}

/**
 * A time window in the profile's clock: V8 stamps samples in microseconds of the monotonic clock, the one
 * `process.hrtime` reads, so another process on the same machine can name the window it loaded.
 */
export interface ProfileWindow {
  readonly startUs: number
  readonly endUs: number
}

/** `process.hrtime` in microseconds, comparable with the sample stamps of a profile. */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

/** Reads a `.cpuprofile`: its nodes (also by id), samples and time deltas. */
const loadProfile = (file: string) => {
  const raw: unknown = JSON.parse(readFileSync(file, "utf8"))
  if (!isRecord(raw)) throw new Error("not a V8 CPU profile: not an object")
  const nodes = parseNodes(raw["nodes"])
  const samples = numberArray(raw["samples"], "samples")
  const deltas = numberArray(raw["timeDeltas"], "timeDeltas")
  return { raw, nodes, samples, deltas, byId: new Map(nodes.map((node) => [node.id, node])) }
}

export const summarizeProfile = (file: string, top = 15, window?: ProfileWindow): ProfileSummary => {
  const { byId, deltas, raw, samples } = loadProfile(file)

  // A sample's duration is the gap to the next sample (as DevTools counts it); the last one gets the mean.
  const meanDelta = deltas.length > 0 ? deltas.reduce((sum, delta) => sum + delta, 0) / deltas.length : 0
  const selfUs = new Map<number, number>()
  let stamp = typeof raw["startTime"] === "number" ? raw["startTime"] : 0
  let counted = 0
  for (let index = 0; index < samples.length; index++) {
    stamp += deltas[index] ?? 0
    const id = samples[index]
    if (id === undefined) continue
    if (window !== undefined && (stamp < window.startUs || stamp > window.endUs)) continue
    counted++
    const duration = deltas[index + 1] ?? meanDelta
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, duration))
  }

  const functions = new Map<string, { functionName: string; location: string; us: number }>()
  const packages = new Map<string, number>()
  let totalUs = 0
  let idleUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (node === undefined) continue
    if (node.functionName === "(idle)") {
      idleUs += us
      continue
    }
    totalUs += us
    const functionName = node.functionName === "" ? "(anonymous)" : node.functionName
    const location = node.url === "" ? "" : `${shortUrl(node.url)}:${node.lineNumber + 1}`
    const key = `${functionName}\u0000${location}`
    const row = functions.get(key) ?? { functionName, location, us: 0 }
    row.us += us
    functions.set(key, row)
    const pkg = packageOf(node.url, node.functionName)
    packages.set(pkg, (packages.get(pkg) ?? 0) + us)
  }
  const percentOf = (us: number) => (totalUs === 0 ? 0 : (100 * us) / totalUs)
  return {
    file,
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    sampleCount: counted,
    window: window === undefined ? "whole profile" : `${((window.endUs - window.startUs) / 1e6).toFixed(1)} s load window`,
    functions: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((row) => ({ functionName: row.functionName, location: row.location, selfMs: row.us / 1000, percent: percentOf(row.us) })),
    packages: [...packages.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, percent: percentOf(us) }))
  }
}

/**
 * Where the self time of functions named `name` comes from: their call paths (`depth` frames up, innermost
 * first), heaviest first.
 */
export const callersOf = (
  file: string,
  name: string,
  depth = 4,
  top = 10
): ReadonlyArray<{ readonly path: string; readonly selfMs: number }> => {
  const { byId, deltas, nodes, samples } = loadProfile(file)
  const parent = new Map<number, number>()
  for (const node of nodes) for (const child of node.children) parent.set(child, node.id)
  const label = (node: ProfileNode) =>
    `${node.functionName === "" ? "(anonymous)" : node.functionName}${node.url === "" ? "" : ` ${shortUrl(node.url).replace(/^node_modules\//, "")}:${node.lineNumber + 1}`}`
  const paths = new Map<string, number>()
  for (let index = 0; index < samples.length; index++) {
    const id = samples[index]
    const node = id === undefined ? undefined : byId.get(id)
    if (node === undefined || node.functionName !== name) continue
    const frames: Array<string> = []
    let current: number | undefined = parent.get(node.id)
    while (current !== undefined && frames.length < depth) {
      const frame = byId.get(current)
      if (frame === undefined || frame.functionName === "(root)") break
      frames.push(label(frame))
      current = parent.get(current)
    }
    const key = frames.join("  <-  ")
    paths.set(key, (paths.get(key) ?? 0) + (deltas[index + 1] ?? 0))
  }
  return [...paths.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([path, us]) => ({ path, selfMs: us / 1000 }))
}

export const formatSummary = (summary: ProfileSummary): string => {
  const lines: Array<string> = []
  lines.push(`Profile ${shortUrl(pathToFileURL(resolve(summary.file)).href)}: ${summary.window}, ${summary.sampleCount} samples, ${summary.totalMs.toFixed(0)} ms busy (+ ${summary.idleMs.toFixed(0)} ms idle); % of busy time`)
  lines.push("")
  lines.push(`Top ${summary.functions.length} functions by self time:`)
  lines.push("   self ms      %  function  (script:line)")
  for (const row of summary.functions) {
    lines.push(
      `${row.selfMs.toFixed(1).padStart(9)} ${row.percent.toFixed(1).padStart(6)}  ${row.functionName}${row.location === "" ? "" : `  (${row.location})`}`
    )
  }
  lines.push("")
  lines.push("Self time by package / script:")
  for (const row of summary.packages) {
    lines.push(`${row.selfMs.toFixed(1).padStart(9)} ${row.percent.toFixed(1).padStart(6)}  ${row.name}`)
  }
  return lines.join("\n")
}

/** The newest `.cpuprofile` in `directory`. */
export const newestProfile = (directory: string): string | undefined =>
  readdirSync(directory)
    .filter((name) => name.endsWith(".cpuprofile"))
    .map((name) => join(directory, name))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href

if (isMain) {
  const args = process.argv.slice(2)
  const topIndex = args.indexOf("--top")
  const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 15
  const optionValues = new Set([args.indexOf("--top"), args.indexOf("--callers")].filter((index) => index >= 0).map((index) => index + 1))
  const target = args.find((arg, index) => !arg.startsWith("--") && !optionValues.has(index))
  if (target === undefined) {
    console.error("usage: tsx bench/summarize-profile.ts <file.cpuprofile | directory> [--top N] [--callers FUNCTION_NAME]")
    process.exit(2)
  }
  const file = statSync(target).isDirectory() ? newestProfile(target) : target
  if (file === undefined) {
    console.error(`no .cpuprofile in ${target}`)
    process.exit(1)
  }
  const callersIndex = args.indexOf("--callers")
  const callersName = callersIndex >= 0 ? args[callersIndex + 1] : undefined
  if (callersName !== undefined) {
    for (const row of callersOf(file, callersName)) console.log(`${row.selfMs.toFixed(1).padStart(9)} ms  ${row.path}`)
  } else {
    console.log(formatSummary(summarizeProfile(file, Number.isFinite(top) && top > 0 ? top : 15)))
  }
}
