package synthetic

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/stokerhq/stoker/plugins"
)

// runLLM "generates" an answer of 8 to 32 words chosen by the last
// message (and the seed, if any), one word per token, and sends it as a
// chat.completion. Temperature, TopP, JSONSchema and Reasoning are ignored.
//
// When the request asks for the text as it is generated
// (RunRequest.StreamText), each word goes out as it is chosen.
func runLLM(j *job, req *plugins.RunRequest, t *plugins.LLMTask) error {
	model := req.Model
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

	text := plugins.NewTextStream(req, j.ev, t.Stop)
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
		if err := text.Update([]byte(b.String())); err != nil {
			return err
		}
		if err := j.progress(uint64(tokens), uint64(budget), "token"); err != nil {
			return err
		}
	}
	if err := text.Finish([]byte(b.String())); err != nil {
		return err
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
	// No elapsed_ms: synthetic output leaves it out (spec §7.2).
	res, err := json.Marshal(plugins.ChatCompletion{
		Object: "chat.completion",
		Model:  model,
		Choices: []plugins.ChatChoice{{
			Message:      plugins.ChatMessage{Role: "assistant", Content: content},
			FinishReason: finish,
		}},
		Usage: plugins.ChatUsage{PromptTokens: prompt, CompletionTokens: tokens, TotalTokens: prompt + tokens},
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
