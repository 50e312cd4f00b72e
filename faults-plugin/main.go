// Command faults-plugin is the fault-injection engine plugin, a test tool:
// the task's prompt chooses a crash, hang or lie (see package
// github.com/stokerhq/stoker/faults-plugin/faults). Never ship it to a real node.
package main

import (
	"fmt"
	"os"

	"github.com/stokerhq/stoker/faults-plugin/faults"
	"github.com/stokerhq/stoker/plugins"
)

func main() {
	if err := faults.ApplyStart(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	faults.Serve(faults.New(plugins.NewLogger("faults"), os.Getenv))
}
