package plugins

import (
	"context"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// runOnlyServer is a plugin built before the Jobs stream (or written
// without this SDK, as the Python example is): it serves Run only.
type runOnlyServer struct{ grpcServer }

func (runOnlyServer) Jobs(enginev1.EngineService_JobsServer) error {
	return status.Error(codes.Unimplemented, "method Jobs not implemented")
}

type runOnlyPlugin struct{ grpcPlugin }

func (p *runOnlyPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	enginev1.RegisterEngineServiceServer(s, &runOnlyServer{grpcServer{impl: p.impl}})
	return nil
}

// echoEngine answers every LLM job with a fixed result.
type echoEngine struct{}

func (echoEngine) Describe(context.Context) (*Description, error) { return &Description{}, nil }
func (echoEngine) Run(ctx context.Context, _ *RunRequest, ev Events) error {
	if _, ok := WireJob(ctx); ok {
		return ev.Result([]byte(`{"on":"jobs"}`))
	}
	return ev.Result([]byte(`{"on":"run"}`))
}

// A plugin that does not serve Jobs is given every job on a Run stream of
// its own, and the host stops asking for Jobs.
func TestRunStreamWithoutJobs(t *testing.T) {
	client, server := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{pluginName: &runOnlyPlugin{grpcPlugin{impl: echoEngine{}}}})
	t.Cleanup(func() {
		_ = client.Close()
		server.Stop()
	})
	raw, err := client.Dispense(pluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*grpcClient)
	for range 2 {
		var got []byte
		if err := c.Run(context.Background(), &RunRequest{JobID: "j", Task: Task{Kind: KindLLM, LLM: &LLMTask{}}}, resultOnly{&got}); err != nil {
			t.Fatal(err)
		}
		if string(got) != `{"on":"run"}` {
			t.Errorf("result %s, want the job on a Run stream", got)
		}
	}
	c.jobsMu.Lock()
	defer c.jobsMu.Unlock()
	if !c.noJobs || c.jobs != nil {
		t.Errorf("noJobs %v, jobs %v: want the host to stop asking for Jobs", c.noJobs, c.jobs)
	}
}

type resultOnly struct{ got *[]byte }

func (resultOnly) Progress(uint64, uint64, string) error { return nil }
func (resultOnly) Log(string, string) error              { return nil }
func (resultOnly) Output(string, []byte) error           { return nil }
func (r resultOnly) Result(js []byte) error {
	*r.got = append([]byte(nil), js...)
	return nil
}
