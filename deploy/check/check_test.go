package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// stateDir is where stoker keeps identity, credentials and models.
const stateDir = "/var/lib/stoker"

// strict decodes JSON into v, refusing unknown fields.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// validateConfig runs `stoker config validate` (built from this checkout)
// on a config text.
func validateConfig(t *testing.T, name, text string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stoker.toml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./supervisor/cmd/stoker", "config", "validate", "-config", f)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "STOKER_STATE_DIR=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: stoker config validate: %v\n%s", name, err, out)
	}
}

func TestKubernetes(t *testing.T) {
	b, err := os.ReadFile("../kubernetes/stoker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var ds appsv1.DaemonSet
	var cm corev1.ConfigMap
	for i, doc := range strings.Split(string(b), "\n---\n") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var meta struct{ APIVersion, Kind string }
		if err := json.Unmarshal(j, &meta); err != nil || meta.Kind == "" {
			t.Fatalf("document %d: no kind: %v", i, err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "v1 ConfigMap":
			obj = &cm
		case "apps/v1 DaemonSet":
			obj = &ds
		default:
			t.Fatalf("document %d: unexpected %s %s", i, meta.APIVersion, meta.Kind)
		}
		if err := strict(j, obj); err != nil {
			t.Errorf("%s: %v", meta.Kind, err)
		}
		kinds[meta.Kind]++
	}
	if kinds["DaemonSet"] != 1 || kinds["ConfigMap"] != 1 {
		t.Fatalf("want one DaemonSet and one ConfigMap, got %v", kinds)
	}
	if sel, lab := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels; len(sel) == 0 || fmt.Sprint(sel) != fmt.Sprint(lab) {
		t.Errorf("selector %v does not match the pod's labels %v", sel, lab)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("the probes reach the local API on the node's loopback: hostNetwork must be true")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 95 {
		t.Errorf("terminationGracePeriodSeconds %v: want at least drain_timeout (60s) + 35s", g)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if q, ok := c.Resources.Limits["nvidia.com/gpu"]; !ok || q.Value() != 1 {
		t.Errorf("the container's limits %v: want nvidia.com/gpu: 1", c.Resources.Limits)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Port.IntValue() != 8710 {
			t.Errorf("%s probe %+v: want GET 127.0.0.1:8710%s", name, p, want)
		}
	}
	// The state directory persists on the node: a hostPath mounted where
	// the config's state_dir is.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == stateDir {
			v := vols[m.Name]
			mounted = v.HostPath != nil && v.HostPath.Path == stateDir
		}
	}
	if !mounted {
		t.Errorf("%s is not a hostPath volume mounted at %s", stateDir, stateDir)
	}
	toml := cm.Data["stoker.toml"]
	if !strings.Contains(toml, `state_dir = "`+stateDir+`"`) {
		t.Errorf("the ConfigMap's stoker.toml does not set state_dir to %s", stateDir)
	}
	validateConfig(t, "ConfigMap stoker.toml", toml)
}

func TestNomad(t *testing.T) {
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile("../nomad/stoker.nomad.hcl")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	job := only(t, body, "job")
	if got := attr(t, job.Body, "type"); got != "system" {
		t.Errorf("job type %q, want system (one agent per client)", got)
	}
	group := only(t, job.Body, "group")
	task := only(t, group.Body, "task")
	if got := attr(t, task.Body, "kill_timeout"); got != "120s" {
		t.Errorf("kill_timeout %q, want 120s (drain_timeout 60s + 35s + margin)", got)
	}
	vol := only(t, group.Body, "volume")
	if attr(t, vol.Body, "type") != "host" {
		t.Error("the state volume is not a host volume")
	}
	if attr(t, only(t, task.Body, "volume_mount").Body, "destination") != stateDir {
		t.Errorf("the state volume is not mounted at %s", stateDir)
	}
	res := only(t, task.Body, "resources")
	if dev := only(t, res.Body, "device"); len(dev.Labels) != 1 || dev.Labels[0] != "nvidia/gpu" {
		t.Errorf("device %v: want nvidia/gpu", dev.Labels)
	}
	svc := only(t, group.Body, "service")
	if attr(t, svc.Body, "address") != "127.0.0.1" {
		t.Error("the checks must reach the local API on loopback (service address 127.0.0.1)")
	}
	var paths []string
	for _, b := range svc.Body.Blocks {
		if b.Type == "check" {
			paths = append(paths, attr(t, b.Body, "path"))
		}
	}
	if strings.Join(paths, " ") != "/healthz /readyz" {
		t.Errorf("checks %v: want /healthz and /readyz", paths)
	}
	tmpl := only(t, task.Body, "template")
	toml := attr(t, tmpl.Body, "data")
	validateConfig(t, "the template's stoker.toml", toml)
}

// only returns body's one block of type typ.
func only(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s block, found %d", typ, len(found))
	}
	return found[0]
}

// attr evaluates a literal attribute of body as a string.
func attr(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("no %s attribute", name)
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{})
	if diags.HasErrors() {
		t.Fatalf("%s: %s", name, diags.Error())
	}
	return v.AsString()
}
