package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stokerhq/stoker/supervisor/internal/localapi"
)

// runPS lists the models each plugin of the running agent holds in memory,
// from the agent's local API (GET /v1/resident).
func runPS(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("ps", "", "Lists the models each plugin of the running agent holds in memory, with their size, from the agent's\n"+
		"local API (listen). From the node itself no token is needed; otherwise the token in <state_dir>/local-api-token\n"+
		"is sent when readable.")
	cf := addConfigFlags(fs)
	addr := fs.String("addr", "", "the local API's `host:port` (default: the config's listen, a wildcard address read as loopback)")
	asJSON := fs.Bool("json", false, "print the agent's answer as JSON")
	if err := parseFlags(fs, args, sio, 0, configHint); err != nil {
		return err
	}
	cfg, _, err := cf.load()
	if err != nil {
		return err
	}
	target := *addr
	if target == "" {
		if cfg.Listen == "" {
			return fmt.Errorf("ps: the agent's local API is off (listen = \"\"); give -addr")
		}
		target = dialable(cfg.Listen)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/v1/resident", nil)
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	if tok, err := os.ReadFile(filepath.Join(cfg.StateDir, localapi.TokenFile)); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ps: is the agent running? %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ps: %s answered %s: %s", target, resp.Status, strings.TrimSpace(string(b)))
	}
	if *asJSON {
		_, err := sio.out.Write(b)
		return err
	}
	var body localapi.ResidentBody
	if err := json.Unmarshal(b, &body); err != nil {
		return fmt.Errorf("ps: the agent's answer: %w", err)
	}
	return writeResident(sio.out, body, time.Now())
}

// writeResident prints one line per resident model, and one per plugin
// holding none.
func writeResident(w io.Writer, body localapi.ResidentBody, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tDEVICE\tMODEL\tMEMORY\tLAST USED")
	for _, p := range body.Plugins {
		dev := p.Device.Backend
		if dev == "" {
			dev = "-"
		}
		if p.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t(%s)\t-\t-\n", p.Name, dev, p.Error)
			continue
		}
		if len(p.Models) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\n", p.Name, dev)
			continue
		}
		var total uint64
		for _, m := range p.Models {
			used := "-"
			if !m.LastUsed.IsZero() {
				used = now.Sub(m.LastUsed).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, dev, m.Model, humanBytes(int64(m.Bytes)), used)
			total += m.Bytes
		}
		if len(p.Models) > 1 {
			fmt.Fprintf(tw, "%s\t%s\t(total)\t%s\t\n", p.Name, dev, humanBytes(int64(total)))
		}
	}
	return tw.Flush()
}

// dialable turns a listen address into one to dial: a wildcard host
// (":8710", "0.0.0.0:8710", "[::]:8710") becomes loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
