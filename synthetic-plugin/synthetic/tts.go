package synthetic

import (
	"encoding/binary"
	"math"
	"strings"
	"unicode"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic/internal/wav"
)

// Speech output format and limits.
const (
	SampleRate       = 16000 // Hz, mono, 16-bit PCM
	MaxSpeechSeconds = 600   // longest speech the engine will make
	MinSpeed         = 0.25  // slowest Speed accepted
	MaxSpeed         = 4     // fastest Speed accepted
)

// Durations of the sounds at speed 1, in milliseconds.
const (
	toneMs  = 70  // a letter, digit or other symbol
	spaceMs = 40  // white space
	pauseMs = 200 // punctuation that ends a phrase
)

// notes are the tone frequencies in Hz: two octaves of a pentatonic scale.
var notes = [...]int{262, 294, 330, 392, 440, 523, 587, 659, 784, 880}

// sound is one step of the tone sequence: a tone of freq Hz, or silence
// when freq is 0.
type sound struct {
	freq    int
	samples int
}

// runTTS streams a WAV of one tone per letter, in the voice's key.
func runTTS(j *job, t *plugins.TTSTask) error {
	text := strings.TrimSpace(t.Text)
	if text == "" {
		return badInput("audio_tts text is empty")
	}
	speed := float64(t.Speed)
	if speed == 0 {
		speed = 1
	}
	if math.IsNaN(speed) || speed < MinSpeed || speed > MaxSpeed {
		return badInput("audio_tts speed %v out of range (%v to %v)", t.Speed, MinSpeed, MaxSpeed)
	}
	sounds, total := speechPlan(text, t.Voice, speed, MaxSpeechSeconds*SampleRate)
	if total > MaxSpeechSeconds*SampleRate {
		return badInput("audio_tts text would last %.0f s; the synthetic engine makes at most %d s", float64(total)/SampleRate, MaxSpeechSeconds)
	}
	if t.Ext != "wav" {
		if err := j.logf("synthetic: returning wav, not %q: the synthetic engine writes WAV only", t.Ext); err != nil {
			return err
		}
	}
	if err := j.logf("synthetic: speaking %d sounds, %.2f s", len(sounds), float64(total)/SampleRate); err != nil {
		return err
	}

	out := newOutput(j, "wav")
	f := wav.Format{SampleRate: SampleRate, Channels: 1, BitsPerSample: 16}
	if err := wav.WriteHeader(out, f, uint32(total*2)); err != nil {
		return err
	}
	const block = 4096 // samples per write
	buf := make([]byte, 0, 2*block)
	done := 0
	for _, s := range sounds {
		for i := 0; i < s.samples; i++ {
			buf = binary.LittleEndian.AppendUint16(buf, uint16(sample(s, i)))
			if len(buf) == cap(buf) {
				if _, err := out.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		done += s.samples
		if done/SampleRate != (done-s.samples)/SampleRate { // about once a second of audio
			if err := j.progress(uint64(done), uint64(total), "sample"); err != nil {
				return err
			}
		}
	}
	if _, err := out.Write(buf); err != nil {
		return err
	}
	if err := out.flush(); err != nil {
		return err
	}
	return j.progress(uint64(total), uint64(total), "sample")
}

// speechPlan turns text into sounds and returns them with their total
// length in samples. The voice transposes the tones. It stops early, with
// a total above limit, once the text is too long to speak, so a hostile
// text costs no more memory than an acceptable one.
func speechPlan(text, voice string, speed float64, limit int) ([]sound, int) {
	shift := int(key("voice", voice)[0])
	n := func(ms int) int { return int(math.Round(float64(ms) * SampleRate / 1000 / speed)) }
	var (
		sounds []sound
		total  int
	)
	for _, r := range text {
		var s sound
		switch {
		case unicode.IsSpace(r):
			s = sound{samples: n(spaceMs)}
		case strings.ContainsRune(".,;:!?", r):
			s = sound{samples: n(pauseMs)}
		default:
			s = sound{freq: notes[(int(unicode.ToLower(r))+shift)%len(notes)], samples: n(toneMs)}
		}
		sounds = append(sounds, s)
		total += s.samples
		if total > limit {
			break
		}
	}
	return sounds, total
}

// sample is sample i of s: a triangle wave with 5 ms fade in and out, in
// integer arithmetic so every platform writes the same bytes.
func sample(s sound, i int) int16 {
	if s.freq == 0 {
		return 0
	}
	const amp = 9000
	ramp := min(SampleRate/200, s.samples/2)
	env := min(i, s.samples-1-i, ramp)
	// The phase is a 32-bit fraction of a cycle.
	phase := uint32(uint64(i) * uint64(s.freq) << 32 / SampleRate)
	p := int(phase >> 16)
	tri := 2*p - 32768 // rising half
	if p >= 32768 {
		tri = 2*(65535-p) - 32767 // falling half
	}
	v := tri * amp / 32768
	if ramp > 0 {
		v = v * env / ramp
	}
	return int16(v)
}
