//go:build llamacpp

package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/plugintest"
)

func checkCompletion(t *testing.T, r *plugintest.Recorder, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var c completion
	if err := json.Unmarshal(r.JSON(), &c); err != nil {
		t.Fatalf("result %s: %v", r.JSON(), err)
	}
	if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Usage.PromptTokens == 0 {
		t.Errorf("result %s is not a chat.completion with usage", r.JSON())
	}
	if len(r.Events()) == 0 {
		t.Errorf("no progress events")
	}
}

// TestOverGRPC drives the real engine through the SDK's in-process gRPC
// connection: conformance, residency through ModelManager, cancellation.
func TestOverGRPC(t *testing.T) {
	path := writeTiny(t, t.TempDir())
	e := testEngine(t)
	host := plugintest.Connect(t, e)
	plugintest.Conformance(t, host,
		plugintest.Case{Name: "chat", Req: *llmRequest("tiny-llama", path, "Hello there"), Check: checkCompletion},
		plugintest.Case{Name: "chat again", Req: *llmRequest("tiny-llama", path, "Hello again"), Check: checkCompletion},
	)
	if n := e.models.Loads(); n != 1 {
		t.Errorf("%d loads for two jobs on one model, want 1", n)
	}
	mm, ok := host.(plugins.ModelManager)
	if !ok {
		t.Fatalf("host engine %T is not a ModelManager", host)
	}
	res, err := mm.Resident(context.Background())
	if err != nil || len(res) != 1 || res[0].Model != "tiny-llama" || res[0].Bytes == 0 {
		t.Fatalf("Resident = %+v, %v; want tiny-llama", res, err)
	}

	err = plugintest.ExpectCancel(t, host, longRequest(path))
	if je := plugins.AsJobError(err); je == nil || je.Kind != plugins.ErrCancelled {
		t.Errorf("cancelled run: %v, want %s", err, plugins.ErrCancelled)
	}

	if err := mm.Unload(context.Background(), "tiny-llama"); err != nil {
		t.Fatal(err)
	}
	if res, _ := mm.Resident(context.Background()); len(res) != 0 {
		t.Errorf("Resident after Unload = %+v, want none", res)
	}
}

// TestPluginBinary builds the plugin and launches it the way the
// supervisor does: a real process speaking go-plugin over AutoMTLS.
func TestPluginBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "llamacpp-plugin")
	build := exec.Command("go", "build", "-tags", "llamacpp", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	p := plugintest.Launch(t, bin)
	d, err := p.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Ready || d.Device.Backend == "" {
		t.Fatalf("Describe = %+v, want ready with a device", d)
	}
	path := writeTiny(t, dir)
	for range 2 {
		rec, err := plugintest.Run(context.Background(), p, llmRequest("tiny-llama", path, "Hello there"))
		checkCompletion(t, rec, err)
	}
	res, err := p.Resident(context.Background())
	if err != nil || len(res) != 1 {
		t.Errorf("Resident = %+v, %v; want one model", res, err)
	}
}
