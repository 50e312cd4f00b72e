package synthetic

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"strings"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic/internal/wav"
)

// transcript is the whisper-like STT result of spec §7.2, less segments,
// which synthetic output leaves out.
type transcript struct {
	Text     string  `json:"text"`
	Language string  `json:"language"`
	Duration float64 `json:"duration"`
}

// runSTT "transcribes" the input audio: the words are picked by a hash of
// the audio's bytes (of the input URL when the job has no audio file), two
// and a half per second of audio, 3 to 200 of them; the duration is the
// WAV header's. Translate, Prompt, VAD and Timestamps are ignored.
func runSTT(j *job, t *plugins.STTTask, audio string) error {
	language := t.Language
	if language == "" {
		language = "en"
	}
	source := "url:" + t.InputURL
	duration := 0.0
	if audio != "" {
		sum, secs, err := inspectAudio(j, audio)
		if err != nil {
			return err
		}
		source, duration = "audio:"+sum, secs
	}

	ws := newWordStream(key("stt", source, language))
	n := min(200, max(3, int(math.Round(duration*2.5))))
	text := make([]string, n)
	for i := range text {
		text[i] = ws.next()
	}
	res, err := json.Marshal(transcript{
		Text:     strings.Join(text, " "),
		Language: language,
		Duration: math.Round(duration*1000) / 1000,
	})
	if err != nil {
		return err
	}
	return j.result(res)
}

// inspectAudio reads the WAV file at path and returns the hex SHA-256 of
// its bytes and the seconds of audio it holds. A file that is not a WAV is
// bad input; one that cannot be read is an engine error.
func inspectAudio(j *job, path string) (string, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, plugins.Errorf(plugins.ErrEngine, "synthetic: opening input audio: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, plugins.Errorf(plugins.ErrEngine, "synthetic: opening input audio: %w", err)
	}
	info, err := wav.ReadInfo(f)
	if errors.Is(err, wav.ErrNotWAV) {
		return "", 0, badInput("input audio: %v", err)
	}
	if err != nil {
		return "", 0, plugins.Errorf(plugins.ErrEngine, "synthetic: reading input audio: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, plugins.Errorf(plugins.ErrEngine, "synthetic: reading input audio: %w", err)
	}
	size := uint64(st.Size())
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for done := uint64(0); ; {
		if done%(1<<20) == 0 { // every MiB
			if err := j.progress(done, size, "byte"); err != nil {
				return "", 0, err
			}
		} else if err := j.check(); err != nil {
			return "", 0, err
		}
		n, err := io.ReadFull(f, buf)
		h.Write(buf[:n])
		done += uint64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return "", 0, plugins.Errorf(plugins.ErrEngine, "synthetic: reading input audio: %w", err)
		}
	}
	secs := info.Clamp(st.Size()).Seconds()
	if err := j.logf("synthetic: transcribing %.2f s of %d Hz audio", secs, info.SampleRate); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), secs, nil
}
