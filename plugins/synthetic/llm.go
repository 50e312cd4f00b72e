package synthetic

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/stokerhq/stoker/plugins"
)

// completion is the OpenAI chat.completion shape of spec §7.2, less
// elapsed_ms, which synthetic output leaves out.
type completion struct {
	Object  string   `json:"object"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   usage    `json:"usage"`
}

type choice struct {
	Index        int     `json:"index"`
	Message      message `json:"message"`
	FinishReason string  `json:"finish_reason"`
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// runLLM "generates" an answer of 8 to 32 words chosen by the last
// message (and the seed, if any), one word per token, and sends it as a
// chat.completion. Temperature, TopP, JSONSchema and Reasoning are ignored.
func runLLM(j *job, model string, t *plugins.LLMTask) error {
	if len(t.Messages) == 0 {
		return badInput("llm task has no messages")
	}
	if t.MaxTokens == 0 {
		return badInput("llm maxTokens is 0; want at least 1")
	}
	seed := "none"
	if t.Seed != nil {
		seed = strconv.FormatUint(*t.Seed, 10)
	}
	ws := newWordStream(key("llm", t.Messages[len(t.Messages)-1].Content, seed))
	natural := 8 + ws.intN(25)
	budget := min(natural, int(t.MaxTokens))

	var b strings.Builder
	tokens := 0
	stopped := false
	for tokens < budget {
		w := ws.next()
		if tokens == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		tokens++
		if tokens == natural {
			b.WriteByte('.')
		}
		if cut, ok := stopAt(b.String(), t.Stop); ok {
			b.Reset()
			b.WriteString(cut)
			stopped = true
			break
		}
		if err := j.progress(uint64(tokens), uint64(budget), "token"); err != nil {
			return err
		}
	}
	content := strings.TrimSpace(b.String())
	finish := "stop"
	if !stopped && tokens < natural {
		finish = "length" // the budget ran out before the answer ended
	}

	prompt := len(strings.Fields(t.System))
	for _, m := range t.Messages {
		prompt += len(strings.Fields(m.Content))
	}
	res, err := json.Marshal(completion{
		Object: "chat.completion",
		Model:  model,
		Choices: []choice{{
			Message:      message{Role: "assistant", Content: content},
			FinishReason: finish,
		}},
		Usage: usage{PromptTokens: prompt, CompletionTokens: tokens, TotalTokens: prompt + tokens},
	})
	if err != nil {
		return err
	}
	return j.result(res)
}

// stopAt returns s cut before the earliest of the stop strings it
// contains, and whether it contained one. Empty stop strings never match.
func stopAt(s string, stop []string) (string, bool) {
	cut := -1
	for _, st := range stop {
		if st == "" {
			continue
		}
		if i := strings.Index(s, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return s, false
	}
	return s[:cut], true
}
