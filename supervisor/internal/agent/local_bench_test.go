//go:build llamacpp && whispercpp

package agent_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkLocalChatStream measures the local API's SSE stream against the
// engine's own generation rate on tiny-llama (scripts/bench-local.sh runs
// it with the load average beside it): each iteration sends the same greedy
// chat request twice through the real agent and llama.cpp plugin, streamed
// and not. It reports
//
//   - ttft-ms: request sent to the first content chunk read (streamed);
//   - engine-ms/tok: the plugin's own generation time per token (its
//     elapsed_ms, prompt included, over the completion tokens);
//   - chunk-gap-ms: the mean gap between content chunks at the client;
//   - sse-overhead-us/tok: (streamed − unstreamed wall time) per token, the
//     cost of streaming each piece (a gRPC event, an SSE chunk, a flush);
//   - tokens, pieces: per request.
func BenchmarkLocalChatStream(b *testing.B) {
	b.Setenv("STOKER_LLAMA_THREADS", "1")
	es := startEngineStack(b, engineOptions{plugins: []string{"llamacpp-plugin"}, listen: "127.0.0.1:0"})
	c := newLocalClient(b, es.stack)
	e, _ := es.catalog.Get("tiny-llama")
	m := map[string]any{"id": "tiny-llama", "engine": e.Source.Engine, "files": e.Source.Files, "cliDefaults": e.Source.CliDefaults}
	if code, _, body := c.postJSON(b, "/models", m); code != http.StatusOK {
		b.Fatalf("POST /models: %d %s", code, body)
	}
	maxTokens := 128
	if v, err := strconv.Atoi(os.Getenv("BENCH_MAX_TOKENS")); err == nil && v > 0 {
		maxTokens = v
	}
	// The random model ends at its end token sooner or later; take the
	// prompt, of a few, that runs longest (also the warm-up: download,
	// plugin start, model load).
	prompt, best := "", -1
	for _, p := range []string{"Say hello", "Count to one hundred", "Tell me a long story", "List every river you know", "Write a poem about the sea", "Explain the rules of chess"} {
		r := plainChat(b, c, p, maxTokens)
		if r.tokens > best {
			prompt, best = p, r.tokens
		}
	}
	b.Logf("prompt %q: %d tokens (max_tokens %d)", prompt, best, maxTokens)

	var ttft, streamWall, plainWall, engineMs, gaps []float64
	var tokens, pieces int
	b.ResetTimer()
	for range b.N {
		s := streamChat(b, c, prompt, maxTokens)
		p := plainChat(b, c, prompt, maxTokens)
		if s.tokens != p.tokens || p.tokens == 0 {
			b.Fatalf("streamed %d tokens, unstreamed %d: not the same greedy answer", s.tokens, p.tokens)
		}
		ttft = append(ttft, s.ttft.Seconds()*1000)
		streamWall = append(streamWall, s.wall.Seconds()*1000)
		plainWall = append(plainWall, p.wall.Seconds()*1000)
		engineMs = append(engineMs, p.elapsedMs/float64(p.tokens))
		if s.pieces > 1 {
			gaps = append(gaps, (s.lastPiece-s.ttft).Seconds()*1000/float64(s.pieces-1))
		}
		tokens, pieces = p.tokens, s.pieces
	}
	b.StopTimer()
	b.ReportMetric(median(ttft), "ttft-ms")
	b.ReportMetric(median(engineMs), "engine-ms/tok")
	b.ReportMetric(median(gaps), "chunk-gap-ms")
	b.ReportMetric((median(streamWall)-median(plainWall))*1000/float64(tokens), "sse-overhead-us/tok")
	b.ReportMetric(median(streamWall), "stream-ms")
	b.ReportMetric(median(plainWall), "plain-ms")
	b.ReportMetric(float64(tokens), "tokens")
	b.ReportMetric(float64(pieces), "pieces")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

type chatTiming struct {
	wall, ttft, lastPiece time.Duration
	tokens, pieces        int
	elapsedMs             float64
}

func chatBody(prompt string, maxTokens int, stream bool) []byte {
	b, _ := json.Marshal(map[string]any{"model": "tiny-llama", "messages": []map[string]string{{"role": "user", "content": prompt}},
		"max_tokens": maxTokens, "temperature": 0, "stream": stream, "stream_options": map[string]bool{"include_usage": true}})
	return b
}

func chatRequest(tb testing.TB, c *localClient, body []byte) (*http.Response, time.Time) {
	tb.Helper()
	req, _ := http.NewRequest("POST", c.base+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		tb.Fatalf("chat: %s", resp.Status)
	}
	return resp, start
}

func plainChat(tb testing.TB, c *localClient, prompt string, maxTokens int) chatTiming {
	tb.Helper()
	resp, start := chatRequest(tb, c, chatBody(prompt, maxTokens, false))
	defer resp.Body.Close()
	var r struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		}
		ElapsedMs float64 `json:"elapsed_ms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		tb.Fatal(err)
	}
	return chatTiming{wall: time.Since(start), tokens: r.Usage.CompletionTokens, elapsedMs: r.ElapsedMs}
}

func streamChat(tb testing.TB, c *localClient, prompt string, maxTokens int) chatTiming {
	tb.Helper()
	resp, start := chatRequest(tb, c, chatBody(prompt, maxTokens, true))
	defer resp.Body.Close()
	var t chatTiming
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			break
		}
		var ch struct {
			Choices []struct {
				Delta struct{ Content string }
			}
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			tb.Fatalf("chunk %s: %v", data, err)
		}
		if ch.Usage != nil {
			t.tokens = ch.Usage.CompletionTokens
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			now := time.Since(start)
			if t.pieces == 0 {
				t.ttft = now
			}
			t.lastPiece = now
			t.pieces++
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	t.wall = time.Since(start)
	return t
}
