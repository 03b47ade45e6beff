/** Where the benchmark lives, and where it writes its results and CPU profiles. */
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const benchDir = dirname(fileURLToPath(import.meta.url))
export const rootDir = resolve(benchDir, "..")
export const resultsDir = join(benchDir, "results")
export const profilesDir = join(resultsDir, "profiles")
