package plugins

// ChatCompletion is the JSON result of an llm job (spec §7.2): OpenAI's
// chat.completion shape, which the studio stores verbatim. An LLM engine
// marshals one and passes it to Events.Result.
type ChatCompletion struct {
	Object  string       `json:"object"` // "chat.completion"
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   ChatUsage    `json:"usage"`
	// ElapsedMs is the generation's wall time; nil leaves the field out
	// (as synthetic output does).
	ElapsedMs *int64 `json:"elapsed_ms,omitempty"`
}

// ChatChoice is one choice of a ChatCompletion; engines return one, with
// index 0.
type ChatChoice struct {
	Index   int         `json:"index"`
	Message ChatMessage `json:"message"`
	// FinishReason is "stop", or "length" when the token budget ran out.
	FinishReason string `json:"finish_reason"`
}

// ChatMessage is the assistant's answer.
type ChatMessage struct {
	Role    string `json:"role"` // "assistant"
	Content string `json:"content"`
	// ReasoningContent is a leading <think>…</think> block, split off
	// Content; nil when there was none.
	ReasoningContent *string `json:"reasoning_content,omitempty"`
}

// ChatUsage counts the job's tokens.
type ChatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}
