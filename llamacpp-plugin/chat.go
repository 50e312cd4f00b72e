package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stokerhq/stoker/plugins"
)

// genParams is one generation on a resident model.
type genParams struct {
	prompt    []int32 // tokens, BOS included
	maxTokens int     // tokens to generate at most (>= 1)
	nCtx      int     // KV-cache size
	threads   int
	temp      float32 // <= 0: greedy
	topP      float32 // 0 or >= 1: off
	seed      uint32
	grammar   string // GBNF with a "root" rule; "" for none
	// onPrompt, when set, is called after each chunk of prompt tokens is
	// processed; an error from it ends the generation with that error.
	onPrompt func(done, total int) error
}

// genResult is what a generation did.
type genResult struct {
	tokens int    // tokens generated (the end-of-generation token excluded)
	finish string // "stop" (end token or stop string) or "length"
}

// errStop is returned by a token callback to end generation normally
// (a stop string was found).
var errStop = errors.New("stop")

// chat runs one llm job on a resident model and reports its result.
func (e *engine) chat(ctx context.Context, req *plugins.RunRequest, ent *entry, grammar string, ev plugins.Events) error {
	task := req.Task.LLM
	start := e.now()
	msgs := task.Messages
	if task.System != "" {
		msgs = append([]plugins.Message{{Role: "system", Content: task.System}}, msgs...)
	}
	prompt, err := ent.m.applyTemplate(msgs)
	if err != nil {
		return err
	}
	tokens, err := ent.m.tokenize(prompt)
	if err != nil {
		return err
	}
	nCtx := contextSize(req.Defaults.ContextSize, ent.m.nCtxTrain())
	if len(tokens) >= nCtx {
		return plugins.Errorf(plugins.ErrBadInput, "prompt of %d tokens does not fit the context of %d tokens", len(tokens), nCtx)
	}
	p := genParams{
		prompt:    tokens,
		maxTokens: clampMaxTokens(task.MaxTokens, nCtx-len(tokens)),
		nCtx:      nCtx,
		threads:   e.threads,
		temp:      task.Temperature,
		grammar:   grammar,
		seed:      seedOf(task.Seed),
	}
	if task.TopP != nil {
		p.topP = *task.TopP
	}
	// A long prompt on a big model takes a while: report each chunk so the
	// stall watchdog sees the job alive.
	p.onPrompt = func(done, total int) error {
		return ev.Progress(uint64(done), uint64(total), "prompt_token")
	}

	var out []byte
	stops := slices.DeleteFunc(slices.Clone(task.Stop), func(s string) bool { return s == "" })
	// The answer's text goes out token by token when the host asks
	// (a local API client streaming it); nothing is sent otherwise.
	text := plugins.NewTextStream(req, ev, stops)
	generated := 0
	res, err := ent.m.generate(ctx, p, func(tok int32, piece []byte) error {
		generated++
		prev := len(out)
		out = append(out, piece...)
		if i := findStop(out, prev, stops); i >= 0 {
			out = out[:i]
			return errStop
		}
		if err := text.Update(out); err != nil {
			return err
		}
		// Every token: the SDK's Progress only records the newest value
		// (latest wins) and never waits for the host.
		if err := ev.Progress(uint64(generated), uint64(p.maxTokens), "token"); err != nil {
			// The host stopped taking progress: it is gone.
			return fmt.Errorf("report progress: %w", err)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return errCancelled(ctx.Err())
		}
		return err
	}
	if err := text.Finish(out); err != nil {
		return err
	}
	_ = ev.Progress(uint64(res.tokens), uint64(p.maxTokens), "token")
	// Rounded, not truncated: a benchmark that sums elapsed_ms over jobs
	// of a few milliseconds would otherwise be off by half a millisecond
	// each.
	body, err := chatCompletion(req.Model, out, res, len(tokens), e.now().Sub(start).Round(time.Millisecond).Milliseconds())
	if err != nil {
		return err
	}
	return ev.Result(body)
}

// clampMaxTokens bounds maxTokens to [1, room]; 0 means the spec default 512.
func clampMaxTokens(maxTokens uint32, room int) int {
	n := int(maxTokens)
	if maxTokens == 0 {
		n = 512
	}
	return max(1, min(n, room))
}

// seedOf maps the task seed to llama.cpp's 32-bit seed; no seed means a
// fresh random one (LLAMA_DEFAULT_SEED).
func seedOf(seed *uint64) uint32 {
	if seed == nil {
		return 0xFFFFFFFF
	}
	s := uint32(*seed ^ *seed>>32)
	if s == 0xFFFFFFFF { // would mean "random"
		s = 0xFFFFFFFE
	}
	return s
}

// findStop returns the index in out where the first stop string ends the
// text, looking only at matches that end after prev (text before prev was
// checked already), or -1.
func findStop(out []byte, prev int, stops []string) int {
	best := -1
	for _, s := range stops {
		from := max(0, prev-len(s)+1)
		if i := bytes.Index(out[from:], []byte(s)); i >= 0 {
			if at := from + i; best < 0 || at < best {
				best = at
			}
		}
	}
	return best
}

// chatCompletion renders the spec §7.2 result.
func chatCompletion(model string, out []byte, res genResult, promptTokens int, elapsedMs int64) ([]byte, error) {
	content, reasoning, found := splitThink(string(out))
	msg := plugins.ChatMessage{Role: "assistant", Content: content}
	if found {
		msg.ReasoningContent = &reasoning
	}
	body, err := json.Marshal(completion{
		Object:  "chat.completion",
		Model:   model,
		Choices: []plugins.ChatChoice{{Index: 0, Message: msg, FinishReason: res.finish}},
		Usage: plugins.ChatUsage{
			PromptTokens:     promptTokens,
			CompletionTokens: res.tokens,
			TotalTokens:      promptTokens + res.tokens,
		},
		ElapsedMs: &elapsedMs,
	})
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return body, nil
}

// completion is the result this engine sends, with elapsed_ms always set.
type completion = plugins.ChatCompletion

// splitThink splits a leading reasoning block from text. It recognises
// "<think>…</think>" at the start (after whitespace), an unclosed
// "<think>…" (generation ran out: all of it is reasoning), and a bare
// "…</think>" (templates that open the block in the prompt, such as Qwen3's).
// Both parts are trimmed; found reports whether a block was present.
func splitThink(text string) (content, reasoning string, found bool) {
	const open, closing = "<think>", "</think>"
	t := strings.TrimLeft(text, " \t\r\n")
	if rest, ok := strings.CutPrefix(t, open); ok {
		r, c, closed := strings.Cut(rest, closing)
		if !closed {
			return "", strings.TrimSpace(rest), true
		}
		return strings.TrimSpace(c), strings.TrimSpace(r), true
	}
	if r, c, ok := strings.Cut(t, closing); ok && !strings.Contains(r, open) {
		return strings.TrimSpace(c), strings.TrimSpace(r), true
	}
	return strings.TrimSpace(text), "", false
}
