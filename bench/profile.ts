/** `--profile`: llm-proxy under `--cpu-prof` for one non-stream c=50 run, its profile summarized. */
import { mkdirSync, statSync } from "node:fs"
import type { Loader } from "./loader.js"
import { failures } from "./measure.js"
import type { Options } from "./options.js"
import { profilesDir } from "./paths.js"
import { chatBody } from "./payloads.js"
import { formatSummary, monotonicUs, newestProfile, summarizeProfile } from "./summarize-profile.js"
import type { ProfileSummary } from "./summarize-profile.js"
import { startProxy } from "./targets.js"
import type { Upstream } from "./targets.js"

export const profileProxy = async (backend: Upstream, loader: Loader, work: string, options: Options): Promise<ProfileSummary | undefined> => {
  mkdirSync(profilesDir, { recursive: true })
  const startedAt = Date.now()
  console.log(`\n== profile: llm-proxy under --cpu-prof, non-stream c=50 for ${options.durationS} s`)
  const proxy = await startProxy(backend, work, ["--cpu-prof", `--cpu-prof-dir=${profilesDir}`], "proxy-profiled")
  let window: { startUs: number; endUs: number } | undefined
  try {
    const fast = proxy.endpoint("fast")
    const job = { url: fast.url, headers: fast.headers, body: chatBody(fast.model, false), connections: 50 }
    await loader.load({ ...job, durationS: options.warmupS })
    const startUs = monotonicUs()
    const result = await loader.load({ ...job, durationS: options.durationS })
    window = { startUs, endUs: monotonicUs() }
    console.log(`  ${result.reqPerSec.toFixed(0)} req/s under the profiler, failures ${failures(result)}`)
  } finally {
    await proxy.stop()
  }
  // The profile is written as the process exits.
  const file = newestProfile(profilesDir)
  if (file === undefined || statSync(file).mtimeMs < startedAt) {
    console.log(`  no new .cpuprofile in ${profilesDir} (did the proxy exit cleanly on SIGTERM?)`)
    return undefined
  }
  // Only the samples of the measured run (not start-up or warm-up), unless the clocks do not line up.
  const windowed = window === undefined ? undefined : summarizeProfile(file, 15, window)
  const summary = windowed !== undefined && windowed.sampleCount > 0 ? windowed : summarizeProfile(file, 15)
  console.log(formatSummary(summary))
  return summary
}
