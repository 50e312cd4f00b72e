package localapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// residentList is a ResidentSource answering a fixed list.
type residentList []PluginResident

func (l residentList) Resident(context.Context) []PluginResident { return l }

// TestResidentRoute: GET /v1/resident answers the source's list as JSON,
// empty lists as [] rather than null; without a source it is 404.
func TestResidentRoute(t *testing.T) {
	used := time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC)
	ts := startServer(t, nil, func(c *Config) {
		c.Resident = residentList{
			{Name: "llamacpp-plugin", State: "ready", Device: Device{Backend: "cpu"}, Models: []ResidentModel{{Model: "tiny-llama", Bytes: 1 << 20, LastUsed: used}}},
			{Name: "whisper-plugin", State: "ready"},
			{Name: "sdcpp-plugin", State: "restarting", Error: "not running (restarting)"},
		}
	})
	code, hdr, body := ts.get(t, "/v1/resident")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/resident = %d %s: %s", code, hdr.Get("Content-Type"), body)
	}
	var got ResidentBody
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Plugins) != 3 || got.Plugins[0].Models[0].Model != "tiny-llama" || got.Plugins[0].Models[0].Bytes != 1<<20 ||
		!got.Plugins[0].Models[0].LastUsed.Equal(used) || got.Plugins[1].Models == nil || got.Plugins[2].Error == "" {
		t.Errorf("body: %s", body)
	}
	if code, _, _ := ts.do(t, http.MethodPost, "/v1/resident", nil, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/resident = %d, want 405", code)
	}
	bare := startServer(t, nil, nil)
	if code, _, _ := bare.get(t, "/v1/resident"); code != http.StatusNotFound {
		t.Errorf("without a source: %d, want 404", code)
	}
}
