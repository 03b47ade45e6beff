/**
 * `npm run bench -- --against <git ref>`: this checkout's proxy beside the proxy of another commit, measured in
 * alternating slices so that a machine whose speed drifts (a VM with steal) moves both alike.
 *
 * The other commit is checked out into a temporary git worktree, given this checkout's node_modules (a symlink:
 * the comparison is of the code, not of the dependencies) and built with its own `npm run build`; it starts with its
 * own package.json's `npm start` flags. Both gateways run on core 0, one at a time, in front of the same upstream.
 * For non-stream and stream(20) at c=50, each pair is one slice of each (the order swapped every pair); reported are
 * the medians of req/s and gateway CPU per request, and the median and quartiles of the per-pair ratio of CPU per
 * request (this ÷ other): the figure that "within noise" is judged on.
 */
import { spawnSync } from "node:child_process"
import { existsSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import type { Loader } from "./loader.js"
import { failures, loadGateway } from "./measure.js"
import type { Options } from "./options.js"
import { rootDir } from "./paths.js"
import { chatBody } from "./payloads.js"
import { makeTempDir } from "./processes.js"
import { median, percentile } from "./stats.js"
import { proxyKey, startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

const connections = 50

export interface CompareSample {
  readonly reqPerSec: number
  readonly cpuUsPerRequest: number
  readonly failures: number
}

export interface CompareReport {
  readonly against: string
  readonly againstCommit: string
  readonly thisCommit: string
  readonly runs: Record<"ns" | "stream", { readonly self: Array<CompareSample>; readonly other: Array<CompareSample> }>
  readonly errors: Array<string>
}

const git = (args: ReadonlyArray<string>, cwd = rootDir): string => {
  const result = spawnSync("git", args, { cwd, encoding: "utf8" })
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${result.stderr.trim()}`)
  return result.stdout.trim()
}

/** The other commit built in a temporary worktree (removed again by `remove`). */
const checkoutAndBuild = (ref: string): { readonly dir: string; readonly commit: string; readonly remove: () => void } => {
  const commit = git(["rev-parse", "--verify", `${ref}^{commit}`])
  const dir = join(makeTempDir("llm-proxy-against-"), "checkout")
  git(["worktree", "add", "--detach", dir, commit])
  const remove = () => {
    spawnSync("git", ["worktree", "remove", "--force", dir], { cwd: rootDir })
  }
  try {
    if (!existsSync(join(rootDir, "node_modules"))) throw new Error("this checkout has no node_modules: npm install first")
    symlinkSync(join(rootDir, "node_modules"), join(dir, "node_modules"), "dir")
    console.log(`building ${ref} (${commit.slice(0, 10)}) in ${dir}…`)
    const npm = process.platform === "win32" ? "npm.cmd" : "npm"
    const build = spawnSync(npm, ["run", "build", "--silent"], { cwd: dir, stdio: "inherit" })
    if (build.status !== 0) throw new Error(`npm run build of ${ref} failed (exit ${String(build.status)})`)
  } catch (error) {
    remove()
    throw error
  }
  return { dir, commit, remove }
}

export const runCompare = async (backend: Upstream, loader: Loader, work: string, options: Options, against: string): Promise<CompareReport> => {
  const other = checkoutAndBuild(against)
  const report: CompareReport = {
    against,
    againstCommit: other.commit,
    thisCommit: git(["rev-parse", "HEAD"]),
    runs: { ns: { self: [], other: [] }, stream: { self: [], other: [] } },
    errors: []
  }
  const sliceS = Math.max(1, Math.min(options.durationS, 3))
  const pairs = Math.max(10, Math.round((options.durationS * options.repeats) / sliceS))
  console.log(`\n== against ${against} (${other.commit.slice(0, 10)}): ${pairs} pairs of ${sliceS} s slices per scenario, alternating`)
  const self = await startProxy(backend, work, [], "proxy-self", { env: {} })
  const them = await startProxy(backend, work, [], "proxy-other", { env: {}, rootDir: other.dir })
  const measure = async (gateway: typeof self, stream: boolean, durationS: number): Promise<CompareSample> => {
    const sample = await loadGateway(loader, gateway.pid, {
      url: `${gateway.origin}/v1/chat/completions`,
      headers: { authorization: `Bearer ${proxyKey}` },
      body: chatBody("bench", stream),
      connections,
      durationS,
      expectSseDone: stream
    })
    return { reqPerSec: sample.reqPerSec, cpuUsPerRequest: sample.cpuUsPerRequest ?? Number.NaN, failures: failures(sample) }
  }
  try {
    process.stdout.write(`  warm-up ${options.warmupS} s each…`)
    for (const stream of [false, true]) {
      await measure(self, stream, options.warmupS)
      await measure(them, stream, options.warmupS)
    }
    process.stdout.write(" done\n")
    for (const kind of ["ns", "stream"] as const) {
      for (let pair = 0; pair < pairs; pair++) {
        const order = pair % 2 === 0 ? ([self, them] as const) : ([them, self] as const)
        for (const gateway of order) {
          const sample = await measure(gateway, kind === "stream", sliceS)
          report.runs[kind][gateway === self ? "self" : "other"].push(sample)
          if (sample.failures > 0) report.errors.push(`${kind} ${gateway === self ? "this commit" : against}: ${sample.failures} failures in a slice`)
        }
        const last = (side: "self" | "other") => report.runs[kind][side].at(-1)
        console.log(
          `  [${kind.padEnd(6)} ${String(pair + 1).padStart(2)}/${pairs}] this ${last("self")?.reqPerSec.toFixed(0).padStart(6)} req/s ${last("self")?.cpuUsPerRequest.toFixed(0).padStart(5)} µs/req · ${against} ${last("other")?.reqPerSec.toFixed(0).padStart(6)} req/s ${last("other")?.cpuUsPerRequest.toFixed(0).padStart(5)} µs/req`
        )
      }
    }
  } catch (error) {
    report.errors.push(error instanceof Error ? error.message : String(error))
  } finally {
    await self.stop()
    await them.stop()
    other.remove()
  }
  return report
}

/** The table of `--against`: medians for each side and the per-pair CPU ratio with its quartiles. */
export const compareTable = (report: CompareReport): string => {
  const rows = (["ns", "stream"] as const).map((kind) => {
    const { self, other } = report.runs[kind]
    const ratios = self.map((sample, index) => sample.cpuUsPerRequest / (other[index]?.cpuUsPerRequest ?? Number.NaN)).filter(Number.isFinite)
    const label = kind === "ns" ? "non-stream c=50" : "stream(20) c=50"
    const rate = (samples: ReadonlyArray<CompareSample>) => median(samples.map((sample) => sample.reqPerSec))
    const cpu = (samples: ReadonlyArray<CompareSample>) => median(samples.map((sample) => sample.cpuUsPerRequest))
    return `| ${label.padEnd(16)} | ${rate(self).toFixed(0).padStart(10)} | ${rate(other).toFixed(0).padStart(11)} | ${cpu(self).toFixed(0).padStart(11)} | ${cpu(other).toFixed(0).padStart(12)} | ${median(ratios).toFixed(3)} (${percentile(ratios, 25).toFixed(3)}–${percentile(ratios, 75).toFixed(3)}), ${ratios.length} pairs |`
  })
  return [
    `this: ${report.thisCommit.slice(0, 10)}; other: ${report.against} (${report.againstCommit.slice(0, 10)})`,
    "",
    "| scenario         | this req/s | other req/s | this µs/req | other µs/req | CPU/req this ÷ other, median (IQR) |",
    "|------------------|------------|-------------|-------------|--------------|------------------------------------|",
    ...rows
  ].join("\n")
}
