//go:build onnx

package main

import (
	"context"

	"fmt"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/stokerhq/stoker/plugins"
)

// The binding is github.com/yalue/onnxruntime_go: it carries ONNX
// Runtime's C API header (API version 24, which the 1.30 library serves:
// OrtGetApiBase()->GetApi(n) answers every n up to its own) and opens the
// shared library at run time with dlopen, so the plugin builds without
// the library or its headers (the npm package ships none) and finds it
// where the engines cache or STOKER_ONNX_LIBRARY says.

var (
	initOnce sync.Once
	initErr  error
	initLib  string
)

// runtimeInit opens library and creates ONNX Runtime's environment, once
// per process; later calls return the first call's result.
func runtimeInit(library string) error {
	initOnce.Do(func() {
		initLib = library
		ort.SetSharedLibraryPath(library)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("ONNX Runtime library %s: %w", library, err)
		}
	})
	return initErr
}

func engineStatus(library, provider string) (ready bool, reason string) {
	if err := runtimeInit(library); err != nil {
		return false, err.Error() + " (run scripts/install-engines.sh, or set STOKER_ONNX_LIBRARY)"
	}
	if err := providerCheck(provider); err != nil {
		return false, err.Error()
	}
	return true, ""
}

var (
	cudaOnce sync.Once
	cudaErr  error
)

// providerCheck tells whether the library has the execution provider asked
// for, once per process: CUDA is appended to a throwaway session's options
// (the library from the npm registry has no CUDA provider; a farm's CUDA
// build does).
func providerCheck(provider string) error {
	if provider != "cuda" {
		return nil
	}
	cudaOnce.Do(func() {
		opts, err := ort.NewSessionOptions()
		if err != nil {
			cudaErr = err
			return
		}
		defer opts.Destroy()
		cudaErr = appendCUDA(opts)
	})
	if cudaErr != nil {
		return fmt.Errorf("%s=cuda: the ONNX Runtime library %s has no usable CUDA execution provider: %w", envProvider, initLib, cudaErr)
	}
	return nil
}

// appendCUDA adds the CUDA execution provider (device 0 of those
// CUDA_VISIBLE_DEVICES shows) to opts.
func appendCUDA(opts *ort.SessionOptions) error {
	c, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer c.Destroy()
	return opts.AppendExecutionProviderCUDA(c)
}

// model is one resident ONNX Runtime session and its fit to LaMa's
// contract.
type model struct {
	sig  *signature
	sess *ort.DynamicAdvancedSession
}

// loadModel reads path's inputs and outputs, checks them against LaMa's
// contract (a misfit is bad input) and creates a session.
func loadModel(library, provider, path string, threads int) (*model, error) {
	if err := runtimeInit(library); err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "%w", err)
	}
	if err := providerCheck(provider); err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "%w", err)
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrBadInput, "model %s: %v", path, err)
	}
	sig, err := contract(infos(ins), infos(outs))
	if err != nil {
		return nil, err
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "session options: %w", err)
	}
	defer opts.Destroy()
	if threads > 0 {
		if err := opts.SetIntraOpNumThreads(threads); err != nil {
			return nil, plugins.Errorf(plugins.ErrEngine, "session options: %w", err)
		}
	}
	if provider == "cuda" {
		if err := appendCUDA(opts); err != nil {
			return nil, plugins.Errorf(plugins.ErrEngine, "CUDA execution provider: %w", err)
		}
	}
	names := []string{sig.Mask, sig.Image}
	if sig.ImageFirst {
		names[0], names[1] = sig.Image, sig.Mask
	}
	sess, err := ort.NewDynamicAdvancedSession(path, names, []string{sig.Output}, opts)
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrBadInput, "model %s: %v", path, err)
	}
	return &model{sig: sig, sess: sess}, nil
}

func infos(in []ort.InputOutputInfo) []tensorInfo {
	out := make([]tensorInfo, len(in))
	for i, t := range in {
		out[i] = tensorInfo{
			Name:   t.Name,
			Tensor: t.OrtValueType == ort.ONNXTypeTensor,
			Float:  t.DataType == ort.TensorElementDataTypeFloat,
			Dims:   []int64(t.Dimensions),
		}
	}
	return out
}

func (m *model) free() { _ = m.sess.Destroy() }

// heartbeat is how often a run reports progress while ONNX Runtime works
// (it has no progress callback; the host's stall watchdog wants signs of
// life).
const heartbeat = time.Second

// run runs the model on a padded image and mask. A cancelled ctx sets the
// run options' terminate flag, which ONNX Runtime checks between nodes;
// the run then fails and the job is cancelled.
func (m *model) run(ctx context.Context, img, mask []float32, pw, ph int, ev plugins.Events) ([]float32, error) {
	it, err := ort.NewTensor(ort.NewShape(1, 3, int64(ph), int64(pw)), img)
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "image tensor: %w", err)
	}
	defer it.Destroy()
	mt, err := ort.NewTensor(ort.NewShape(1, 1, int64(ph), int64(pw)), mask)
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "mask tensor: %w", err)
	}
	defer mt.Destroy()
	ot, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, int64(ph), int64(pw)))
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "output tensor: %w", err)
	}
	defer ot.Destroy()
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "run options: %w", err)
	}
	defer ro.Destroy()

	// The terminate call is waited for before the run options go.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		_ = ro.Terminate()
	})
	done := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = ev.Progress(2, stages, "stage")
			}
		}
	}()
	ins := []ort.Value{mt, it}
	if m.sig.ImageFirst {
		ins = []ort.Value{it, mt}
	}
	err = m.sess.RunWithOptions(ins, []ort.Value{ot}, ro)
	close(done)
	beats.Wait()
	if !stop() {
		<-terminated
	}
	if cerr := ctx.Err(); cerr != nil {
		if err != nil {
			// ONNX Runtime's own words ("Exiting due to terminate flag
			// being set to true."): the run was cut short, not finished.
			return nil, plugins.Cancelled(fmt.Errorf("%w (%v)", cerr, err))
		}
		return nil, plugins.Cancelled(cerr)
	}
	if err != nil {
		return nil, plugins.Errorf(plugins.ErrEngine, "run: %w", err)
	}
	return ot.GetData(), nil
}
