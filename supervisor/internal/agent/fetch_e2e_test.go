package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
)

// TestInputURLToALocalServiceIsRefused: a studio sends an audio_stt job
// whose inputUrl points at a service on the node's own loopback. A node
// that does not allow loopback fetches (fetch_allow) must not connect to
// it, must fail the job as bad input, and must send none of the service's
// bytes to the studio.
func TestInputURLToALocalServiceIsRefused(t *testing.T) {
	const secret = "SECRET-admin-page-3c9d"
	var hits atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, secret, http.StatusInternalServerError)
	}))
	defer svc.Close()

	s := startStack(t, stackOptions{maxAttempts: 1, env: []string{"STOKER_FETCH_ALLOW="}})
	v := s.submit(t, "synthetic-stt", map[string]any{"kind": "audio_stt", "inputUrl": svc.URL + "/admin/backup.wav"})
	if v.Status != devstudio.JobFailed {
		t.Fatalf("job %s: %s (%s), want failed", v.ID, v.Status, v.Error)
	}
	if v.Retryable {
		t.Errorf("fail retryable: got true, want false (bad input)")
	}
	if strings.Contains(v.Error, secret) {
		t.Errorf("fail message carries the local service's answer: %q", v.Error)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("requests to the local service: got %d, want 0", n)
	}
	t.Logf("fail message: %s", v.Error)
}
