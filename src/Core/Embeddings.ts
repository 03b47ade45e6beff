/**
 * Embeddings through the core: admitted by the same gate as chat (allow-list, limits, lease), routed by the same
 * Router (names, balancing, retries, fallbacks, deadlines), accounted as prompt tokens (the key's tpm, its budget at
 * the deployment's `input_per_mtok`, its usage row). The answer always reports usage: the upstream's when it gave
 * one, else the gateway's count — token ids counted exactly, text with the gateway's tokenizer (o200k_base: an
 * estimate for models with another tokenizer, e.g. Gemini's, which reports no usage for embeddings).
 */
import { Effect } from "effect"
import type { Context } from "effect"
import type { TokenizerService } from "../Governance/Tokenizer.js"
import type { Caller } from "../Http/Auth.js"
import { inputTexts, inputTokens } from "../OpenAi/Embeddings.js"
import type { EmbeddingInputValue, EmbeddingRequest, EmbeddingUsage, Vector } from "../OpenAi/Embeddings.js"
import type { Router, Served } from "../Router/Router.js"
import type { ModelRegistry } from "../Router/Registry.js"
import { cacheDirectiveOf } from "./Cache.js"
import type { ResponseCache } from "./Cache.js"
import { noteServed } from "./Gate.js"
import type { AnswerHeaders, ChatError, ChatFailure, Gate, Pass } from "./Gate.js"
import type { RequestRecord } from "./RequestRecord.js"

/** What an embeddings request became: its vectors in input order, its usage, who served, the headers. */
export interface EmbeddingsAnswer {
  readonly vectors: ReadonlyArray<Vector>
  readonly usage: EmbeddingUsage
  readonly served: Served
  readonly headers: AnswerHeaders
}

/** The prompt tokens of an input, counted by the gateway: token ids exactly, text with the tokenizer. */
const countedUsage = (input: EmbeddingInputValue, tokenizer: TokenizerService): Effect.Effect<EmbeddingUsage> => {
  const tokens = inputTokens(input)
  if (tokens !== undefined) {
    const count = tokens.reduce((sum, ids) => sum + ids.length, 0)
    return Effect.succeed({ prompt_tokens: count, total_tokens: count })
  }
  return tokenizer.count(inputTexts(input) ?? []).pipe(
    Effect.map((counts) => counts.reduce((sum, count) => sum + count, 0)),
    Effect.catchAll((error) =>
      Effect.as(Effect.logWarning("token count failed; embeddings usage reported as 0").pipe(Effect.annotateLogs("error", error.message)), 0)
    ),
    Effect.map((count) => ({ prompt_tokens: count, total_tokens: count }))
  )
}

/**
 * The core's embeddings over the gate, the Router and the Tokenizer; from the response cache for a model whose
 * registry entry has `cache:` (the request's `Cache-Control` in `cacheControl`).
 */
export const makeEmbed = (
  gate: Gate,
  router: Context.Tag.Service<typeof Router>,
  tokenizer: TokenizerService,
  cache: ResponseCache,
  registry: Context.Tag.Service<typeof ModelRegistry>
) => {
  const serve = (request: EmbeddingRequest, pass: Pass, record: RequestRecord | undefined): Effect.Effect<EmbeddingsAnswer, ChatError> =>
    Effect.flatMap(router.embed(request, record), (routed) => {
      noteServed(record, routed)
      const reported = routed.embeddings.usage
      return Effect.map(reported === undefined ? countedUsage(request.input, tokenizer) : Effect.succeed(reported), (usage) => {
        pass.finish(routed.deployment, { prompt_tokens: usage.prompt_tokens, completion_tokens: 0 })
        return { vectors: routed.embeddings.vectors, usage, served: { deployment: routed.deployment, attempts: routed.attempts }, headers: pass.headers }
      })
    })
  return (request: EmbeddingRequest, caller: Caller, record?: RequestRecord, cacheControl?: string): Effect.Effect<EmbeddingsAnswer, ChatFailure> =>
    gate.admit(request.model, caller, record, (pass) => {
      const policy = registry.current().lookup(request.model)?.cache
      return policy === undefined
        ? serve(request, pass, record)
        : cache.serveEmbeddings(request, pass, policy, cacheDirectiveOf(cacheControl), () => serve(request, pass, record))
    })
}
