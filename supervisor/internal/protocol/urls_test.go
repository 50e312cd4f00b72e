package protocol

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHTTPURL(t *testing.T) {
	tests := []struct {
		name, base, route, want string
		wantErr                 bool
	}{
		{"root", "https://h/", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"no slash", "https://h", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"prefix given", "https://h/graphics/api/", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"prefix no slash", "https://h/graphics/api", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"outer mount kept", "https://h/custom/graphics/api", RouteRegisterRequest, "https://h/custom/graphics/api/workers/register-request", false},
		{"outer mount no prefix", "https://h/custom/", RouteRegisterRequest, "https://h/custom/graphics/api/workers/register-request", false},
		{"query and fragment dropped", "https://h/?x=1#frag", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"many slashes", "https://h//", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"port and http", "http://127.0.0.1:8080", RouteRegisterRequestStatus("rr-6d0e2b11"), "http://127.0.0.1:8080/graphics/api/workers/register-requests/rr-6d0e2b11", false},
		{"complete route", "https://studio.minis.gg/", RouteComplete("w-9f2c", "job-400"), "https://studio.minis.gg/graphics/api/workers/w-9f2c/jobs/job-400/complete", false},
		{"escaped segments", "https://h/", RouteComplete("w/1", "job 1?"), "https://h/graphics/api/workers/w%2F1/jobs/job%201%3F/complete", false},
		{"userinfo dropped", "https://u:p@h/", RouteRegisterRequest, "https://h/graphics/api/workers/register-request", false},
		{"dot-dot job id", "https://h/", RouteComplete("w", ".."), "", true},
		{"empty worker id", "https://h/", RouteComplete("", "j"), "", true},
		{"route without slash", "https://h/", "workers/x", "", true},
		{"ws scheme refused", "wss://h/", RouteRegisterRequest, "", true},
		{"ftp refused", "ftp://h/", RouteRegisterRequest, "", true},
		{"no host", "/just/a/path", RouteRegisterRequest, "", true},
		{"garbage", "http://[::1", RouteRegisterRequest, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HTTPURL(tt.base, tt.route)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWebSocketURL(t *testing.T) {
	tests := []struct {
		name, base, worker, want string
		wantErr                  bool
	}{
		{"spec example", "https://studio.minis.gg/", "w-9f2c", "wss://studio.minis.gg/graphics/api/workers/w-9f2c/connect", false},
		{"http to ws", "http://127.0.0.1:9000", "w", "ws://127.0.0.1:9000/graphics/api/workers/w/connect", false},
		{"ws kept", "ws://h/", "w", "ws://h/graphics/api/workers/w/connect", false},
		{"wss kept", "wss://h", "w", "wss://h/graphics/api/workers/w/connect", false},
		{"prefix present", "https://h/graphics/api/", "w", "wss://h/graphics/api/workers/w/connect", false},
		{"outer mount", "https://h/custom/graphics/api", "w", "wss://h/custom/graphics/api/workers/w/connect", false},
		{"outer mount no prefix", "https://h/custom", "w", "wss://h/custom/graphics/api/workers/w/connect", false},
		{"query dropped", "https://h/?token=x#f", "w", "wss://h/graphics/api/workers/w/connect", false},
		{"escaped id", "https://h/", "a/b c", "wss://h/graphics/api/workers/a%2Fb%20c/connect", false},
		{"ftp refused", "ftp://h/", "w", "", true},
		{"no scheme", "studio.minis.gg", "w", "", true},
		{"empty id", "https://h/", "", "", true},
		{"dot-dot id", "https://h/", "..", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WebSocketURL(tt.base, tt.worker)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestContentTypeForExt(t *testing.T) {
	tests := map[string]string{
		"png": "image/png", "webp": "image/webp", "gif": "image/gif", "wav": "audio/wav",
		"mp3": "audio/mpeg", "mp4": "video/mp4", "PNG": "image/png", ".webp": "image/webp",
		"exe": "application/octet-stream", "": "application/octet-stream",
	}
	for ext, want := range tests {
		if got := ContentTypeForExt(ext); got != want {
			t.Errorf("ContentTypeForExt(%q) = %q, want %q", ext, got, want)
		}
	}
	if got, want := ResultFileName("job-400", "webp"), "job-400.webp"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFormatTimestamp(t *testing.T) {
	loc := time.FixedZone("CEST", 2*3600)
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 6, 11, 11, 14, 3, 512_999_999, loc), "2026-06-11T09:14:03.512Z"},
		{time.Date(2026, 6, 11, 9, 14, 4, 0, time.UTC), "2026-06-11T09:14:04.000Z"},
	}
	for _, tt := range tests {
		if got := FormatTimestamp(tt.in); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestHashSecret(t *testing.T) {
	// sha256 of the ASCII text "abc" (the hash is over the hex text, not raw bytes).
	if got, want := HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestRegistrationBodies(t *testing.T) {
	req := RegisterRequest{InstallID: "5b1e0c7a-93d2-4f18-a0c4-2e7d91b3c6f0", RegistrationSecretHash: HashSecret("s"),
		Capabilities: testCaps(), UserAgent: "studio-worker/0.1.0"}
	if err := req.Validate(); err != nil {
		t.Errorf("Validate: got %v, want nil", err)
	}
	b, _ := json.Marshal(req)
	for _, key := range []string{`"installId"`, `"registrationSecretHash"`, `"capabilities"`, `"userAgent"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("got %s, want %s", b, key)
		}
	}
	bad := req
	bad.RegistrationSecretHash = strings.Repeat("z", 64)
	if bad.Validate() == nil {
		t.Error("non-hex hash: got nil, want an error")
	}
	bad = req
	bad.InstallID = ""
	if bad.Validate() == nil {
		t.Error("missing installId: got nil, want an error")
	}

	var resp RegisterResponse
	if err := json.Unmarshal([]byte(`{ "requestId": "rr-6d0e2b11", "status": "pending" }`), &resp); err != nil {
		t.Fatal(err)
	}
	if want := (RegisterResponse{RequestID: "rr-6d0e2b11", Status: StatusPending}); resp != want {
		t.Errorf("got %+v, want %+v", resp, want)
	}

	polls := []struct {
		name    string
		in      string
		want    PollResponse
		wantErr bool
		out     string
	}{
		{"pending", `{"status":"pending"}`, PollResponse{Status: StatusPending}, false, `{"status":"pending"}`},
		{"approved", `{ "status": "approved", "workerId": "w-9f2c", "authToken": "7c1e" }`,
			PollResponse{Status: StatusApproved, WorkerID: "w-9f2c", AuthToken: "7c1e"}, false, `{"status":"approved","workerId":"w-9f2c","authToken":"7c1e"}`},
		{"rejected", `{"status":"rejected","reason":"not ours"}`, PollResponse{Status: StatusRejected, Reason: "not ours"}, false, `{"status":"rejected","reason":"not ours"}`},
		{"rejected null reason", `{"status":"rejected","reason":null}`, PollResponse{Status: StatusRejected}, false, `{"status":"rejected","reason":""}`},
		{"rejected no reason", `{"status":"rejected"}`, PollResponse{Status: StatusRejected}, false, `{"status":"rejected","reason":""}`},
		{"unknown status", `{"status":"maybe"}`, PollResponse{}, true, ""},
		{"no status", `{}`, PollResponse{}, true, ""},
		{"approved without token", `{"status":"approved","workerId":"w"}`, PollResponse{}, true, ""},
		{"approved without worker", `{"status":"approved","authToken":"t"}`, PollResponse{}, true, ""},
		{"not json", `<html>`, PollResponse{}, true, ""},
	}
	for _, tt := range polls {
		t.Run(tt.name, func(t *testing.T) {
			var got PollResponse
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if tt.wantErr {
				return
			}
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.out {
				t.Errorf("Marshal: got %s, want %s", out, tt.out)
			}
		})
	}
	if _, err := json.Marshal(PollResponse{Status: "weird"}); err == nil {
		t.Error("Marshal unknown status: got nil error")
	}
	if s := (PollResponse{Status: StatusApproved, WorkerID: "w", AuthToken: "tok-secret"}).String(); strings.Contains(s, "tok-secret") {
		t.Errorf("String: got %q, want the token redacted", s)
	}
}
