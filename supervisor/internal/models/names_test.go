package models

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSanitizeModelID(t *testing.T) {
	tests := []struct {
		in, want string
		refused  bool
	}{
		{in: "z-image-turbo", want: "z-image-turbo"},
		{in: "org/Model:Q4_K", want: "org_Model_Q4_K"},
		{in: "../../etc", want: "_._.._etc"},
		{in: ".hidden", want: "_hidden"},
		{in: "..", want: "_."},
		{in: "a b\x00c", want: "a_b_c"},
		{in: "modèle", want: "mod__le"},
		{in: "", refused: true},
		{in: strings.Repeat("x", 201), refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SanitizeModelID(tt.in)
			if tt.refused {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("got (%q, %v), want ErrRefused", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got (%q, %v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckFilenameAcceptsRealNames(t *testing.T) {
	for _, name := range []string{
		"z_image_turbo-Q4_K.gguf", "Qwen3-4B-Q4_K_M.gguf", "ae.safetensors",
		"model..v2.gguf", "CONSOLE.bin", "com10.txt", "lama big (fp16).onnx", "名前.gguf",
	} {
		if err := CheckFilename(name); err != nil {
			t.Errorf("CheckFilename(%q): got %v, want nil", name, err)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes 200-100/300", 0, 0, false},
		{"bytes -5-10/20", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, total, ok := parseContentRange(tt.in)
		if start != tt.start || total != tt.total || ok != tt.ok {
			t.Errorf("parseContentRange(%q): got (%d, %d, %v), want (%d, %d, %v)",
				tt.in, start, total, ok, tt.start, tt.total, tt.ok)
		}
	}
}

func TestSniffImageRejects(t *testing.T) {
	for _, head := range []string{"", "RIFF\x00\x00\x00\x00WAVE", "<html>", "\xff\xd8", "BM"} {
		if got := sniffImage([]byte(head)); got != "" {
			t.Errorf("sniffImage(%q): got %q, want \"\"", head, got)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://r2.example/a/b.wav?X-Amz-Signature=abc", "https://r2.example/a/b.wav?redacted"},
		{"https://user:pw@h.example/x#frag", "https://redacted@h.example/x"},
		{"http://127.0.0.1:8080/m.gguf", "http://127.0.0.1:8080/m.gguf"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{formatBytes(512), "512 B"},
		{formatBytes(1536), "1.5 KiB"},
		{formatBytes(4100000000), "3.8 GiB"},
		{formatBytes(-1), "?"},
		{formatETA(-1), "?"},
		{formatETA(90*time.Second + 400*time.Millisecond), "1m30s"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestOpenValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no root", Config{}},
		{"negative cap", Config{Root: t.TempDir(), MaxBytes: -1}},
		{"negative limit", Config{Root: t.TempDir(), InputLimit: -1}},
		{"relative file dir", Config{Root: t.TempDir(), AllowFileDir: "rel"}},
		{"negative timeout", Config{Root: t.TempDir(), IdleTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.cfg); err == nil {
				t.Errorf("Open(%+v): got nil error", tt.cfg)
			}
		})
	}
}

func TestFetchRefusesBadSHA256AndModelID(t *testing.T) {
	s := openStore(t, testConfig(t))
	tests := []struct {
		name  string
		model string
		file  File
	}{
		{"short sha", "m", File{URL: "https://h.example/x", Filename: "x", SHA256: "abc"}},
		{"non-hex sha", "m", File{URL: "https://h.example/x", Filename: "x", SHA256: strings.Repeat("zz", 32)}},
		{"empty model", "", File{URL: "https://h.example/x", Filename: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Fetch(t.Context(), tt.model, []File{tt.file}); !errors.Is(err, ErrRefused) {
				t.Errorf("got %v, want ErrRefused", err)
			}
		})
	}
}
