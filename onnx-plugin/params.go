package main

import (
	"fmt"
	"strings"

	"github.com/stokerhq/stoker/plugins"
)

// This file turns a RunRequest into a LaMa job and checks a model's inputs
// and outputs against LaMa's contract. It is pure Go, so every rule is
// tested without ONNX Runtime.

// job is one resolved object removal.
type job struct {
	Model string // the .onnx file (model role)
	Image string // initImageUrl's file
	Mask  string // maskUrl's file
	Ext   string // "png" or "webp"
}

// resolve builds the job for req, or an error that says what is wrong.
func resolve(req *plugins.RunRequest) (*job, error) {
	if req.Task.Kind != plugins.KindImage || req.Task.Image == nil {
		return nil, plugins.Errorf(plugins.ErrUnsupported, "cannot serve %s: the onnx engine serves image", req.Task.Kind)
	}
	if req.Engine != "" && req.Engine != engineID {
		return nil, plugins.Errorf(plugins.ErrUnsupported, "cannot serve engine %q: this plugin is %s", req.Engine, engineID)
	}
	j := &job{Model: req.File("model"), Image: req.Inputs.InitImage, Mask: req.Inputs.Mask}
	switch {
	case j.Model == "":
		return nil, plugins.Errorf(plugins.ErrBadInput, "no model file (role model)")
	case j.Image == "":
		return nil, plugins.Errorf(plugins.ErrBadInput, "no image to fill (initImageUrl)")
	case j.Mask == "":
		return nil, plugins.Errorf(plugins.ErrBadInput, "no mask (maskUrl)")
	}
	// PNG when asked for; anything else is WebP, as the reference answers.
	j.Ext = "webp"
	if strings.EqualFold(req.Task.Image.Ext, "png") {
		j.Ext = "png"
	}
	return j, nil
}

// tensorInfo is one model input or output, as ONNX Runtime reports it.
type tensorInfo struct {
	Name   string
	Tensor bool    // a tensor (not a sequence or map)
	Float  bool    // of float32
	Dims   []int64 // -1 (or 0) for a dynamic dimension
}

// signature is how a model fits LaMa's contract: which input is the image
// and which the mask, and the fixed height and width if the model has them.
type signature struct {
	Image, Mask, Output string
	ImageFirst          bool // the image is input 0
	FixedH, FixedW      int  // 0: dynamic
}

// contract checks a model's inputs and outputs against LaMa's: two float32
// inputs [1,3,H,W] (the image) and [1,1,H,W] (the mask), told apart by
// their channel dimension, and one float32 output [1,3,H,W]. Names are
// whatever the model says.
func contract(ins, outs []tensorInfo) (*signature, error) {
	bad := func(format string, args ...any) error {
		return plugins.Errorf(plugins.ErrBadInput, "model does not fit LaMa's contract: "+format, args...)
	}
	if len(ins) != 2 {
		return nil, bad("%d inputs, want 2 (image [1,3,H,W], mask [1,1,H,W])", len(ins))
	}
	if len(outs) != 1 {
		return nil, bad("%d outputs, want 1 ([1,3,H,W])", len(outs))
	}
	check := func(what string, t tensorInfo) error {
		if !t.Tensor || !t.Float {
			return bad("%s %q is not a float32 tensor", what, t.Name)
		}
		if len(t.Dims) != 4 {
			return bad("%s %q has rank %d, want 4 ([N,C,H,W])", what, t.Name, len(t.Dims))
		}
		if n := t.Dims[0]; n > 1 {
			return bad("%s %q has batch %d, want 1", what, t.Name, n)
		}
		return nil
	}
	for i, t := range ins {
		if err := check(fmt.Sprintf("input %d", i), t); err != nil {
			return nil, err
		}
	}
	if err := check("output", outs[0]); err != nil {
		return nil, err
	}
	s := &signature{Output: outs[0].Name}
	switch c0, c1 := ins[0].Dims[1], ins[1].Dims[1]; {
	case c0 == 3 && c1 == 1:
		s.Image, s.Mask, s.ImageFirst = ins[0].Name, ins[1].Name, true
	case c0 == 1 && c1 == 3:
		s.Image, s.Mask = ins[1].Name, ins[0].Name
	default:
		return nil, bad("inputs %q and %q have %d and %d channels, want 3 (image) and 1 (mask)", ins[0].Name, ins[1].Name, c0, c1)
	}
	if c := outs[0].Dims[1]; c != 3 && c > 0 {
		return nil, bad("output %q has %d channels, want 3", outs[0].Name, c)
	}
	img := ins[0].Dims
	if !s.ImageFirst {
		img = ins[1].Dims
	}
	s.FixedH, s.FixedW = int(max(img[2], 0)), int(max(img[3], 0))
	return s, nil
}

// padMultiple is the multiple a dynamic model's input sides are padded to:
// LaMa's encoder downsamples by 2 three times.
const padMultiple = 8

// paddedSize is the size the model is run at for an image of w×h: the
// model's fixed size where it has one (the image must fit in it), else
// the next multiple of padMultiple.
func (s *signature) paddedSize(w, h int) (pw, ph int, err error) {
	pw, ph = roundUp(w, padMultiple), roundUp(h, padMultiple)
	if s.FixedW > 0 {
		if w > s.FixedW {
			return 0, 0, plugins.Errorf(plugins.ErrBadInput, "image width %d is above the model's fixed width %d", w, s.FixedW)
		}
		pw = s.FixedW
	}
	if s.FixedH > 0 {
		if h > s.FixedH {
			return 0, 0, plugins.Errorf(plugins.ErrBadInput, "image height %d is above the model's fixed height %d", h, s.FixedH)
		}
		ph = s.FixedH
	}
	return pw, ph, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }
