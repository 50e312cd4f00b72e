package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enginev1 "github.com/stokerhq/stoker/proto/engine/v1"
)

// describeEngine fails Describe at once with its error.
type describeEngine struct {
	echoEngine
	fail error
}

func (e describeEngine) Describe(context.Context) (*Description, error) { return nil, e.fail }

// A unary call that its context ended answers DeadlineExceeded or Canceled
// over the wire, not Internal: the plugin enforces the deadline the host
// sent and can answer before the host's own timer fires, and the host tells
// "you took too long" from "you broke" by the code. An engine's own error
// stays Internal.
func TestUnaryCallCodes(t *testing.T) {
	for _, c := range []struct {
		name string
		fail error
		want codes.Code
	}{
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"wrapped cancel", fmt.Errorf("loading: %w", context.Canceled), codes.Canceled},
		{"engine error", errors.New("no device"), codes.Internal},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, server := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{pluginName: &grpcPlugin{impl: describeEngine{fail: c.fail}}})
			t.Cleanup(func() {
				_ = client.Close()
				server.Stop()
			})
			_, err := enginev1.NewEngineServiceClient(client.Conn).Describe(context.Background(), &enginev1.DescribeRequest{})
			st := status.Convert(err)
			if st.Code() != c.want || !strings.HasPrefix(st.Message(), "describe: ") {
				t.Errorf("Describe: %v, want code %v from the plugin's answer", err, c.want)
			}
		})
	}
}
