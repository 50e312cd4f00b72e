package synthetic

import (
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"strconv"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/plugins/webp"
)

// MaxImageSide is the largest width or height of a synthetic image.
const MaxImageSide = 2048

// runImage draws the task's picture and streams it as PNG or WebP.
func runImage(j *job, t *plugins.ImageTask) error {
	if err := checkSize("image", t.Width, t.Height, MaxImageSide); err != nil {
		return err
	}
	// Spec §6.2: synthetic honours webp, else png.
	ext := "png"
	if t.Ext == "webp" {
		ext = "webp"
	}
	seed := "none"
	if t.Seed != nil {
		seed = strconv.FormatUint(*t.Seed, 10)
	}
	w, h := int(t.Width), int(t.Height)
	if err := j.logf("synthetic: drawing a %dx%d %s", w, h, ext); err != nil {
		return err
	}

	pic := newPicture(j, newPattern(key("image", t.Prompt, seed), w, h))
	out := newOutput(j, ext)
	var err error
	if ext == "webp" {
		err = webp.Encode(out, pic)
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(out, pic)
	}
	if err != nil {
		return err
	}
	if err := out.flush(); err != nil {
		return err
	}
	return j.progress(uint64(h), uint64(h), "row")
}

// checkSize refuses sides of zero or above limit.
func checkSize(what string, w, h, limit uint32) error {
	if w < 1 || h < 1 || w > limit || h > limit {
		return badInput("%s size %dx%d out of range (each side 1 to %d)", what, w, h, limit)
	}
	return nil
}

// pattern is the synthetic picture: a diagonal gradient between two
// colours, crossed by stripes and marked by a disc, every parameter taken
// from a task's hash. It uses integer arithmetic only, so every platform
// draws the same pixels. Frame t of an animation moves the stripes and the
// disc; a still image is frame 0.
type pattern struct {
	w, h           int
	from, to       color.NRGBA // gradient ends
	stripe, disc   color.NRGBA
	period, slant  int // stripes: ((x + slant*y + shift) / period) is odd
	cx, cy, r2     int // disc centre and squared radius
	speed, driftX  int // per frame: stripe shift and disc drift in pixels
	gradientWeight int // w+h-2, at least 1
}

func newPattern(k [32]byte, w, h int) pattern {
	c := func(i int) color.NRGBA { return color.NRGBA{k[i], k[i+1], k[i+2], 0xff} }
	u16 := func(i int) int { return int(binary.LittleEndian.Uint16(k[i:])) }
	short := min(w, h)
	r := short/8 + u16(20)%max(1, short/4)
	return pattern{
		w: w, h: h,
		from: c(0), to: c(3), stripe: c(6), disc: c(9),
		period:         4 + u16(12)%60,
		slant:          u16(14) % 4,
		cx:             u16(16) % w,
		cy:             u16(18) % h,
		r2:             r * r,
		speed:          1 + int(k[22])%6,
		driftX:         1 + int(k[23])%4,
		gradientWeight: max(1, w+h-2),
	}
}

// at returns the colour of (x, y) in frame t.
func (p *pattern) at(x, y, t int) color.NRGBA {
	dx := (x - p.cx - t*p.driftX) % p.w // the disc wraps around sideways
	if dx < -p.w/2 {
		dx += p.w
	} else if dx > p.w/2 {
		dx -= p.w
	}
	dy := y - p.cy
	if dx*dx+dy*dy <= p.r2 {
		return p.disc
	}
	g := lerp(p.from, p.to, x+y, p.gradientWeight)
	if ((x+p.slant*y+t*p.speed)/p.period)%2 == 1 {
		return lerp(g, p.stripe, 1, 2)
	}
	return g
}

// lerp mixes a and b, n/d of the way from a to b.
func lerp(a, b color.NRGBA, n, d int) color.NRGBA {
	mix := func(x, y uint8) uint8 { return uint8((int(x)*(d-n) + int(y)*n) / d) }
	return color.NRGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 0xff}
}

// picture presents frame 0 of a pattern as an image.Image for the
// encoders, computing one row at a time as they ask for it (both encoders
// read rows in order), so no image buffer exists. It reports progress every
// band of rows. Once the job must stop it yields black rows, which are
// cheap, so the encoder reaches its next write quickly and fails there.
type picture struct {
	j    *job
	p    pattern
	row  []color.NRGBA
	y    int // row held in row, -1 for none
	band int
}

func newPicture(j *job, p pattern) *picture {
	return &picture{j: j, p: p, row: make([]color.NRGBA, p.w), y: -1, band: max(1, p.h/16)}
}

func (pic *picture) ColorModel() color.Model { return color.NRGBAModel }
func (pic *picture) Bounds() image.Rectangle { return image.Rect(0, 0, pic.p.w, pic.p.h) }

// Opaque tells both encoders they need not store alpha.
func (pic *picture) Opaque() bool { return true }

func (pic *picture) At(x, y int) color.Color { return pic.NRGBAAt(x, y) }

// NRGBAAt is At without boxing the colour; the WebP encoder uses it.
func (pic *picture) NRGBAAt(x, y int) color.NRGBA {
	if !(image.Point{x, y}.In(pic.Bounds())) {
		return color.NRGBA{}
	}
	if y != pic.y {
		pic.fill(y)
	}
	return pic.row[x]
}

func (pic *picture) fill(y int) {
	pic.y = y
	if y%pic.band == 0 {
		// An error is kept in the job; the encoder meets it at its
		// next write.
		_ = pic.j.progress(uint64(y), uint64(pic.p.h), "row")
	}
	if pic.j.err != nil {
		clear(pic.row)
		return
	}
	for x := range pic.row {
		pic.row[x] = pic.p.at(x, y, 0)
	}
}
