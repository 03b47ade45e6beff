/**
 * `npm run bench`: llm-proxy against the bare upstream ("direct") and, with `--peer portkey`, against
 * Portkey's gateway, all routed to the same fast local OpenAI-compatible upstream (bench/upstream.ts).
 *
 * The gateway under test runs on core 0 and the load generator (bench/load.ts, autocannon) and the upstream
 * on core 1 when `taskset` exists. Each target is warmed up, then every scenario is repeated and the
 * medians are printed in one table and written to bench/results/<timestamp>.json.
 *
 * Two diagnostic rows say whether a number can be trusted: "load core busy %" (load generator + upstream;
 * near 100 % means the load side, not the gateway, is the limit) and "other CPU on machine %" (CPU used by
 * processes outside the benchmark during a run, e.g. tests running alongside; runs with ≥ 10 % are listed
 * in a warning under the table).
 *
 * `--governance` adds a second table (bench/governance.ts): the proxy with a key (rpm + tpm + max_parallel) on
 * the memory store and on Redis, and with WORKERS=2, against the keyless proxy. `--tracing` adds a third
 * (bench/tracing.ts): the proxy with OpenTelemetry tracing off and on, interleaved.
 *
 *   npm run bench -- [--peer portkey] [--duration S] [--repeats N] [--quick] [--only direct,proxy,peer]
 *                    [--profile] [--probe-count N] [--no-build] [--governance] [--tracing] [--cache] [--redis-url URL]
 *                    [--against REF]
 */
import { brokenSamples, runGovernance } from "./governance.js"
import { cacheTable, runCache } from "./cache.js"
import type { CacheReport } from "./cache.js"
import { compareTable, runCompare } from "./compare.js"
import type { CompareReport } from "./compare.js"
import { runMessages } from "./messages.js"
import type { MessagesReport } from "./messages.js"
import { runTracing } from "./tracing.js"
import type { TracingReport } from "./tracing.js"
import type { GovernanceReport } from "./governance.js"
import { Loader } from "./loader.js"
import { measureTarget } from "./measure.js"
import type { TargetReport } from "./measure.js"
import { parseOptions } from "./options.js"
import { largeChatBody } from "./payloads.js"
import { installPortkey, startPortkey } from "./portkey.js"
import { killAllNow, makeTempDir, stopChild, tasksetWorks } from "./processes.js"
import { profileProxy } from "./profile.js"
import { machineInfo, publishReport } from "./report.js"
import type { ProfileSummary } from "./summarize-profile.js"
import { buildProxy, startDirect, startProxy, startUpstream, targetOrder } from "./targets.js"
import type { RunningTarget, TargetName } from "./targets.js"

const main = async () => {
  const options = parseOptions(process.argv.slice(2))
  const machine = machineInfo()
  const started = new Date()
  console.log(
    `llm-proxy bench: ${[...options.only].join(", ")}; ${options.durationS} s × ${options.repeats} repeat(s) per run; ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`
  )
  console.log(`pinning: ${machine.pinning}`)
  if (!tasksetWorks) console.log("WARNING: without pinning, gateway and load generator share cores; numbers are not comparable with pinned runs")

  if ((options.only.has("proxy") || options.profile) && options.build) buildProxy()
  const peerDir = options.only.has("peer") ? installPortkey() : undefined

  const work = makeTempDir("llm-proxy-bench-")
  const loader = await Loader.start()
  const backend = await startUpstream(1, "upstream")
  const largeBody = (model: string) => largeChatBody(model, 100_000)
  console.log(`upstream ${backend.origin}; ~100k-token request body ${(Buffer.byteLength(largeBody("bench")) / 1024).toFixed(0)} KB`)

  const reports: Partial<Record<TargetName, TargetReport>> = {}
  for (const name of targetOrder) {
    if (!options.only.has(name)) continue
    console.log(`\n== ${name}`)
    let target: RunningTarget | undefined
    try {
      target =
        name === "direct"
          ? await startDirect()
          : name === "proxy"
            ? await startProxy(backend, work)
            : await startPortkey(backend, work, peerDir ?? installPortkey())
      reports[name] = await measureTarget(target, loader, options, largeBody)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      console.error(`  ${name} failed: ${message}`)
      reports[name] = { name, label: name, runs: { "ns-c1": [], "ns-c50": [], "ns-c200": [], "stream-c50": [] }, error: message }
    } finally {
      await target?.stop()
    }
  }

  let governance: GovernanceReport | undefined
  if (options.governance) governance = await runGovernance(backend, loader, work, options)
  let tracing: TracingReport | undefined
  if (options.tracing) {
    try {
      tracing = await runTracing(backend, loader, work, options)
    } catch (error) {
      tracing = { runs: { "off-ns": [], "on-ns": [], "off-stream": [], "on-stream": [] }, receiver: { exports: 0, bytes: 0 }, errors: [error instanceof Error ? error.message : String(error)] }
    }
  }

  let cache: CacheReport | undefined
  if (options.cache) {
    try {
      cache = await runCache(backend, loader, work, options)
    } catch (error) {
      cache = { runs: { "off-ns": [], "miss-ns": [], "hit-ns": [], "off-stream": [], "miss-stream": [], "hit-stream": [] }, checks: [], errors: [error instanceof Error ? error.message : String(error)] }
    }
  }

  let messages: MessagesReport | undefined
  if (options.messages) {
    try {
      messages = await runMessages(backend, loader, work, options)
    } catch (error) {
      messages = { runs: {}, errors: [error instanceof Error ? error.message : String(error)] }
    }
  }

  let compare: CompareReport | undefined
  if (options.against !== undefined) {
    try {
      compare = await runCompare(backend, loader, work, options, options.against)
    } catch (error) {
      console.error(`--against failed: ${error instanceof Error ? error.message : String(error)}`)
      process.exitCode = 1
    }
  }

  let profile: ProfileSummary | undefined
  if (options.profile) {
    try {
      profile = await profileProxy(backend, loader, work, options)
    } catch (error) {
      console.error(`profile failed: ${error instanceof Error ? error.message : String(error)}`)
    }
  }

  await loader.stop()
  await stopChild(backend.child)

  publishReport({ options, machine, started, reports, profile, governance, tracing, cache, messages })
  if (cache !== undefined) {
    console.log(`\n### cache (--cache): the response cache off, enabled with misses only, and hits\n\n${cacheTable(cache)}`)
    for (const error of cache.errors) console.log(`\ncache FAILED: ${error}`)
  }
  if (compare !== undefined) {
    console.log(`\n### against (--against ${compare.against}): this commit beside another, alternating slices\n\n${compareTable(compare)}`)
    for (const error of compare.errors) console.log(`\nagainst FAILED: ${error}`)
  }
  const failedTargets = Object.values(reports).filter((report) => report.error !== undefined)
  // --governance measures with limits that never refuse and a store that answers: a failure, a 429 or a store
  // error there means the figures are not what they claim, like a part that could not run.
  const governanceFailed = governance !== undefined && (Object.keys(governance.errors).length > 0 || brokenSamples(governance) > 0)
  const tracingFailed = tracing !== undefined && tracing.errors.length > 0
  const cacheFailed = cache !== undefined && cache.errors.length > 0
  const compareFailed = options.against !== undefined && (compare === undefined || compare.errors.length > 0)
  const messagesFailed = messages !== undefined && messages.errors.length > 0
  process.exitCode = failedTargets.length > 0 || governanceFailed || tracingFailed || cacheFailed || messagesFailed || compareFailed ? 1 : 0
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : String(error))
  killAllNow()
  process.exit(1)
})
