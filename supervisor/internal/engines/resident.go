package engines

import (
	"context"
	"sync"
	"time"

	"github.com/stokerhq/stoker/plugins"
)

// residentBound bounds each plugin's ListResident answer: the call reads a
// set under a lock and never loads anything.
const residentBound = 5 * time.Second

// PluginResident is what one plugin holds in memory now.
type PluginResident struct {
	Name, Path string
	State      State
	Device     plugins.Device // as the plugin described it; zero before
	Models     []plugins.ResidentModel
	// Err says why the plugin's list is unknown: it is not running, or it
	// did not answer in time. "" when Models is its answer.
	Err string
}

// Resident asks every running plugin which models it holds in memory
// (ListResident), all at once, each bounded; a plugin that is not
// running, or does not answer, is listed with the reason.
func (h *Host) Resident(ctx context.Context) []PluginResident {
	out := make([]PluginResident, len(h.slots))
	var wg sync.WaitGroup
	for i, s := range h.slots {
		st := s.status()
		out[i] = PluginResident{Name: st.Name, Path: st.Path, State: st.State}
		if st.Description != nil {
			out[i].Device = st.Description.Device
		}
		p, _ := s.current()
		if p == nil {
			out[i].Err = "not running (" + string(st.State) + ")"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, residentBound)
			defer cancel()
			models, err := p.Resident(cctx)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			out[i].Models = models
		}()
	}
	wg.Wait()
	return out
}
