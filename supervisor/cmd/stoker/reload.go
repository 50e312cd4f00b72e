package main

import (
	"os"
	"reflect"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/stokerhq/stoker/supervisor/internal/config"
)

// reloader applies what a SIGHUP can change in a running agent: the config
// file and the STOKER_ variables are read again, and log_level takes effect
// at once (on the agent's logger and every logger derived from it). Every
// other key that changed is named in the log as waiting for a restart. A
// config that does not load is logged and changes nothing; SIGHUP never
// stops the agent.
type reloader struct {
	path string   // the -config file ("" for none)
	set  []string // the -set flags
	log  hclog.Logger

	mu  sync.Mutex // guards cur
	cur config.Config
}

// watchReload calls reload for every signal on hup, on a goroutine of its
// own, until the returned stop is called; stop waits for it to end.
func watchReload(hup <-chan os.Signal, r *reloader) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-hup:
				r.reload()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// reload reads the config again and applies log_level.
func (r *reloader) reload() {
	next, _, err := config.LoadWithOrigins(r.path, os.Environ(), r.set)
	if err != nil {
		r.log.Error("SIGHUP: config not reloaded; carrying on with the running one", "error", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	from, to := hclog.LevelFromString(r.cur.LogLevel), hclog.LevelFromString(next.LogLevel)
	pending := changedKeys(&r.cur, next, "log_level")
	announce := func() {
		r.log.Info("SIGHUP: config reloaded", "log_level", next.LogLevel, "restart_to_apply", pending)
	}
	// The line goes out under whichever level lets it through.
	if to <= from {
		r.log.SetLevel(to)
		announce()
	} else {
		announce()
		r.log.SetLevel(to)
	}
	r.cur.LogLevel = next.LogLevel
}

// changedKeys names the TOML keys whose values differ between a and b,
// leaving out skip.
func changedKeys(a, b *config.Config, skip ...string) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var keys []string
	for i := range va.NumField() {
		key := va.Type().Field(i).Tag.Get("toml")
		if key == "" || slices.Contains(skip, key) {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}
