//go:build whispercpp

package main

/*
#cgo pkg-config: whisper
#cgo CFLAGS: -I${SRCDIR}/../internal/ggmlload
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "binding_whisper.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"

	"github.com/stokerhq/stoker/plugins"
)

// This file holds every call into whisper.cpp (libwhisper through cgo). The
// C side (callbacks, log filter, device probe) is in whisper_cgo.c.

var installLog = sync.OnceFunc(func() { C.stoker_install_log() })

func engineStatus() (ready bool, reason string) { return true, "" }

func deviceInfo() plugins.Device {
	installLog()
	var d C.stoker_device
	C.stoker_device_info(&d)
	return plugins.Device{
		Backend:     strings.ToLower(C.GoString(&d.backend[0])),
		Name:        strings.TrimSpace(C.GoString(&d.name[0])),
		MemoryTotal: uint64(d.total),
		MemoryFree:  uint64(d.free),
	}
}

// languageCode returns whisper's code for lang (a code such as "nl" or an
// English name such as "dutch").
func languageCode(lang string) (string, bool) {
	cs := C.CString(lang)
	defer C.free(unsafe.Pointer(cs))
	id := C.whisper_lang_id(cs)
	if id < 0 {
		return "", false
	}
	return C.GoString(C.whisper_lang_str(id)), true
}

// model is a loaded whisper.cpp context: the weights, without a decoding
// state. Each transcribe makes a fresh state (KV caches, compute buffers)
// and frees it afterwards, because whisper.cpp carries KV-cache cells over
// from one whisper_full to the next on a reused state (language detection
// then depends on the previous job), and a job must give what a fresh
// whisper-cli gives. close frees the weights.
type model struct {
	ctx *C.struct_whisper_context
}

func loadModel(path string, threads int) (*model, error) {
	installLog()
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var errbuf [512]C.char
	ctx := C.stoker_init(cp, &errbuf[0], C.int(len(errbuf)))
	if ctx == nil {
		return nil, errors.New(strings.TrimSpace(C.GoString(&errbuf[0])))
	}
	return &model{ctx: ctx}, nil
}

func (m *model) close() {
	if m.ctx != nil {
		C.whisper_free(m.ctx)
		m.ctx = nil
	}
}

func (m *model) multilingual() bool { return C.whisper_is_multilingual(m.ctx) != 0 }

// transcribe runs whisper_full on pcm (16 kHz mono). progress is called
// from whisper's thread with the percentage done; an error from it aborts
// the run, as does cancelling ctx.
//
// The decoding parameters are whisper-cli's defaults (examples/cli/cli.cpp):
// beam search with 5 beams, best-of 5, temperature 0 with 0.2 fallback
// steps, entropy 2.4, logprob -1, no-speech 0.6, timestamps decoded; so the
// plugin's transcript equals `whisper-cli -t <threads> -l <lang>` on the
// same audio. Word timestamps are whisper-cli's `-ml 1 -sow`.
func (m *model) transcribe(ctx context.Context, pcm []float32, p transcribeParams, progress func(pct int) error) (*transcript, error) {
	job := (*C.stoker_job)(C.calloc(1, C.size_t(unsafe.Sizeof(C.stoker_job{}))))
	defer C.free(unsafe.Pointer(job))
	var progressErr error
	h := cgo.NewHandle(func(pct int) {
		if progressErr != nil {
			return
		}
		if err := progress(pct); err != nil {
			progressErr = err
			C.stoker_job_abort(job)
		}
	})
	defer h.Delete()
	job.handle = C.uintptr_t(h)
	stop := context.AfterFunc(ctx, func() { C.stoker_job_abort(job) })
	defer stop()

	wp := C.whisper_full_default_params(C.WHISPER_SAMPLING_GREEDY)
	wp.strategy = C.WHISPER_SAMPLING_BEAM_SEARCH
	wp.greedy.best_of = 5
	wp.beam_search.beam_size = 5
	wp.n_threads = C.int(p.Threads)
	wp.print_realtime = false
	wp.print_progress = false
	wp.print_timestamps = false
	wp.print_special = false
	wp.translate = C.bool(p.Translate)
	wp.no_timestamps = false
	wp.temperature = 0
	wp.temperature_inc = 0.2
	wp.entropy_thold = 2.4
	wp.logprob_thold = -1
	wp.no_speech_thold = 0.6
	wp.thold_pt = 0.01
	if p.WordTimestamps {
		wp.token_timestamps = true
		wp.max_len = 1
		wp.split_on_word = true
	}
	lang := C.CString(p.Language)
	defer C.free(unsafe.Pointer(lang))
	wp.language = lang
	if p.Prompt != "" {
		prompt := C.CString(p.Prompt)
		defer C.free(unsafe.Pointer(prompt))
		wp.initial_prompt = prompt
	}
	if p.VADModel != "" {
		vad := C.CString(p.VADModel)
		defer C.free(unsafe.Pointer(vad))
		wp.vad = true
		wp.vad_model_path = vad
	}
	C.stoker_set_callbacks(&wp, job)

	st := C.whisper_init_state(m.ctx)
	if st == nil {
		return nil, errors.New("whisper_init_state failed (out of memory?)")
	}
	defer C.whisper_free_state(st)
	rc := C.whisper_full_with_state(m.ctx, st, wp, (*C.float)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)))
	if progressErr != nil {
		return nil, fmt.Errorf("%w: reporting progress: %w", errAborted, progressErr)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", errAborted, ctx.Err())
	}
	if rc != 0 {
		return nil, fmt.Errorf("whisper_full failed (code %d)", int(rc))
	}
	n := int(C.whisper_full_n_segments_from_state(st))
	tr := &transcript{Segments: make([]segment, 0, n)}
	if id := C.whisper_full_lang_id_from_state(st); id >= 0 {
		tr.Language = C.GoString(C.whisper_lang_str(id))
	}
	for i := range n {
		ci := C.int(i)
		tr.Segments = append(tr.Segments, segment{
			T0:   int64(C.whisper_full_get_segment_t0_from_state(st, ci)),
			T1:   int64(C.whisper_full_get_segment_t1_from_state(st, ci)),
			Text: C.GoString(C.whisper_full_get_segment_text_from_state(st, ci)),
		})
	}
	return tr, nil
}

//export stokerWhisperProgress
func stokerWhisperProgress(h C.uintptr_t, pct C.int) {
	cgo.Handle(h).Value().(func(int))(int(pct))
}
