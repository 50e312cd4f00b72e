package agent_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// TestModelDownloadMetrics: a job whose model has a file makes the agent
// download it once; /metrics then counts its bytes and one download in
// the duration histogram, and a second job of the same model (served from
// the cache) adds nothing.
func TestModelDownloadMetrics(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "weights.bin", time.Time{}, strings.NewReader(string(data)))
	}))
	defer origin.Close()
	s := startStack(t, stackOptions{listen: "127.0.0.1:0", catalog: func(_ *devstudio.Server, c *devstudio.Catalog) {
		if err := c.Add("fetched-model", devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine:      "synthetic",
			Files:       []protocol.ModelFile{{Role: "model", URL: origin.URL + "/weights.bin", Filename: "weights.bin", Sha256: hex.EncodeToString(sum[:])}},
			CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
		}}); err != nil {
			t.Fatal(err)
		}
	}})
	for range 2 {
		mustComplete(t, s.submit(t, "fetched-model", llmTask))
	}
	// The session counts a job once RunJob returned, a moment after the
	// studio had its result.
	var metrics []byte
	eventually(t, "the second job counted", func() bool {
		var err error
		if metrics, err = httpGet("http://" + s.agent.LocalAPI().Addr().String() + "/metrics"); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(metrics), `stoker_jobs_total{outcome="completed"} 2`)
	})
	for _, want := range []string{
		"stoker_model_download_bytes_total 3.145728e+06\n",
		"stoker_model_download_duration_seconds_count 1\n",
		`stoker_job_duration_seconds_count{engine="synthetic",kind="llm",outcome="completed"} 2` + "\n",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}
