package synthetic

import (
	"image"
	"image/color"
	"math"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/synthetic-plugin/synthetic/internal/gifstream"
)

// Limits of synthetic video.
const (
	MaxVideoSide = 1024 // largest width or height
	DefaultFPS   = 8    // frame rate when the task leaves FPS at 0
	MaxFPS       = 50   // GIF delays are in hundredths of a second
	MaxFrames    = 480  // Seconds × FPS, rounded up
)

// runVideo streams an animated GIF of the task's pattern, one frame at a
// time.
func runVideo(j *job, t *plugins.VideoTask) error {
	if err := checkSize("video", t.Width, t.Height, MaxVideoSide); err != nil {
		return err
	}
	secs := float64(t.Seconds)
	if math.IsNaN(secs) || secs <= 0 {
		return badInput("video length %v seconds; want more than 0", t.Seconds)
	}
	fps := t.FPS
	if fps == 0 {
		fps = DefaultFPS
	}
	if fps > MaxFPS {
		return badInput("video fps %d above the synthetic engine's %d", fps, MaxFPS)
	}
	// Seconds arrives as a float32, so 0.3 s is 0.30000001 s; the
	// tolerance keeps such noise from adding a frame.
	n := max(1, math.Ceil(secs*float64(fps)-1e-3))
	if n > MaxFrames {
		return badInput("video of %v s at %d fps needs %v frames; the synthetic engine makes at most %d", t.Seconds, fps, n, MaxFrames)
	}
	frames := int(n)
	w, h := int(t.Width), int(t.Height)
	if t.Ext != "gif" {
		if err := j.logf("synthetic: returning gif, not %q: the synthetic engine encodes video as animated GIF only", t.Ext); err != nil {
			return err
		}
	}
	if err := j.logf("synthetic: animating %d frames of %dx%d at %d fps", frames, w, h, fps); err != nil {
		return err
	}

	p := newPattern(key("video", t.Prompt), w, h)
	out := newOutput(j, "gif")
	delay := int(math.Round(100 / float64(fps)))
	gw, err := gifstream.NewWriter(out, w, h, cubePalette(), delay)
	if err != nil {
		return err
	}
	m := image.NewPaletted(image.Rect(0, 0, w, h), nil)
	for f := range frames {
		if err := j.progress(uint64(f), uint64(frames), "frame"); err != nil {
			return err
		}
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x := range row {
				row[x] = cubeIndex(p.at(x, y, f))
			}
		}
		if err := gw.WriteFrame(m); err != nil {
			return err
		}
	}
	if err := gw.Close(); err != nil {
		return err
	}
	if err := out.flush(); err != nil {
		return err
	}
	return j.progress(uint64(frames), uint64(frames), "frame")
}

// cubePalette is the 216-colour 6×6×6 colour cube ("web-safe" colours):
// entry 36r+6g+b has components 51r, 51g, 51b.
func cubePalette() color.Palette {
	p := make(color.Palette, 0, 216)
	for r := range 6 {
		for g := range 6 {
			for b := range 6 {
				p = append(p, color.RGBA{uint8(51 * r), uint8(51 * g), uint8(51 * b), 0xff})
			}
		}
	}
	return p
}

// cubeIndex is the cubePalette entry nearest to c.
func cubeIndex(c color.NRGBA) uint8 {
	q := func(v uint8) uint8 { return uint8((int(v) + 25) / 51) }
	return q(c.R)*36 + q(c.G)*6 + q(c.B)
}
