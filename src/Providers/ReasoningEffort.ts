/**
 * `reasoning_effort` as the providers that map it (Anthropic, Gemini) read it: one of the values OpenAI names, or
 * the caller's mistake. OpenAI-compatible upstreams get whatever the client sent.
 */
import { Either } from "effect"
import type { ChatCompletionRequest } from "../OpenAi/Schemas.js"
import { ProviderError } from "./ProviderError.js"

/** The efforts OpenAI names, weakest first. */
export type ReasoningEffort = "none" | "minimal" | "low" | "medium" | "high" | "xhigh" | "max"

const efforts: ReadonlyArray<ReasoningEffort> = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]
const isEffort = (value: string): value is ReasoningEffort => (efforts as ReadonlyArray<string>).includes(value)

/** The request's `reasoning_effort` (`undefined` when unset or null), or `InvalidRequest` for a value no table has. */
export const reasoningEffortOf = (
  request: ChatCompletionRequest,
  provider: string
): Either.Either<ReasoningEffort | undefined, ProviderError> => {
  const effort = request.reasoning_effort
  if (effort === undefined || effort === null) return Either.right(undefined)
  return isEffort(effort)
    ? Either.right(effort)
    : Either.left(
        new ProviderError({
          reason: "InvalidRequest",
          message: `reasoning_effort must be one of ${efforts.join(", ")} for the ${provider} upstream`,
          provider,
          param: "reasoning_effort"
        })
      )
}
