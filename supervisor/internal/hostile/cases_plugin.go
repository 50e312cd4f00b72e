package hostile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// pluginCases are the hostile-plugin cases (issue 11, points 3, 8 and 9):
// the faults plugin's hostile faults (faults-plugin/faults) through the real
// agent: huge messages, progress forever, output without end, lying sizes,
// floods and a huge Describe. Each may cost its own job and nothing more:
// the agent's memory stays within MaxRSSGrowth of idle, the job ends with
// the kind the host gives it (never a crash of the node, never lost), and a
// job is served right after.
func pluginCases() []Case {
	return []Case{
		{Name: "plugin-raw-log-40m", Run: pluginFault("raw-log=40MiB", wantFail(true, "a message over the limit")),
			What: "a plugin sends a 40 MiB log event past the SDK: refused at the 4 MiB + 64 KiB gRPC limit without being read; the job fails retryable; the plugin serves on"},
		{Name: "plugin-raw-result-64m", Run: pluginFault("raw-result=64MiB", wantFail(true, "a message over the limit")),
			What: "a plugin sends a 64 MiB JSON result past the SDK: refused at the gRPC limit; the job fails retryable"},
		{Name: "plugin-huge-result", Run: pluginFault("huge-result=5MiB", wantFail(false, "over the limit")),
			What: "a plugin returns a 5 MiB JSON result: refused as bad input (final: every node has the 4 MiB bound)"},
		{Name: "plugin-lie-size", Run: pluginFault("lie-size", wantFail(true, "engine contract")),
			What: "a plugin sends an output chunk whose length prefix claims 1 GiB: a breach of the contract, the job fails retryable"},
		{Name: "plugin-lie-progress", Run: pluginFault("lie-progress", wantCompleted),
			What: "a plugin reports progress far past its total: clamped; the job completes"},
		{Name: "plugin-log-flood", Run: pluginFault(fmt.Sprintf("log-flood=%d", 200000), wantCompleted),
			What: "a plugin logs 200,000 lines in a burst: the host passes its budget (500, then 50 a second) and a dropped-lines notice; the job completes"},
		{Name: "plugin-stderr-flood", Run: pluginFault(fmt.Sprintf("stderr-flood=%d", 200000), wantCompleted),
			What: "a plugin prints 200,000 lines on stderr: thinned the same way; the job completes"},
		{Name: "plugin-progress-forever", Run: pluginFault("progress-hang", wantFail(true, "timed_out: ")),
			AgentEnv: []string{"STOKER_JOB_TIMEOUTS=llm=3s"},
			What:     "a plugin reports progress forever (it never stalls): its kind's hard deadline (job_timeouts, 3 s here) ends the job, retryable; the plugin is restarted"},
		{Name: "plugin-endless-output", Run: endlessOutput,
			What: "a plugin writes output without end: the spool stops at its 2 GiB bound (bad_input, final), with 1 GiB of disk kept free; the node serves after"},
		{Name: "plugin-huge-describe", Run: hugeDescribe,
			AgentEnv: []string{"STOKER_PLUGIN_ENV=STOKER_FAULTS_*", "STOKER_FAULTS_DESCRIBE=huge"},
			What:     "a plugin answers Describe with megabytes (100,000 models per kind): refused at the 256 KiB bound, it never serves; its job fails retryable, the other plugins serve"},
	}
}

// endlessOutput runs an image job whose plugin writes without end. The
// spool's bound is not scaled, so below scale 1 (the package's test) the
// case writes nothing and says so: at full scale it writes 2 GiB.
func endlessOutput(ctx context.Context, e *Env) error {
	if e.Scale < 1 {
		e.Figure("not run below scale 1: it spools 2 GiB")
		e.ServeAfter(ctx, faultsJob("after-endless-output", "ok"))
		return nil
	}
	peak := e.Agent.WatchRSS()
	start := time.Now()
	j := Job{ID: "endless-output", Model: "faults-image", Engine: "faults",
		Task: `{"kind":"image","prompt":"endless-output","width":64,"height":64,"steps":1}`}
	out, err := e.Conn.Run(ctx, j)
	e.CheckRSS("endless output", peak())
	if err != nil {
		e.Lost("the job with endless output: %s (%v)", out, err)
	} else {
		e.Figure("the job with endless output: %s after %s", out, time.Since(start).Round(time.Millisecond))
		if err := wantFail(false, "over 2147483648 bytes")(out); err != nil {
			e.Unbounded("the job with endless output: %v", err)
		}
	}
	e.ServeAfter(ctx, faultsJob("after-endless-output", "ok"))
	return nil
}

// hugeDescribe offers a job to a plugin whose Describe is over the bound.
func hugeDescribe(ctx context.Context, e *Env) error {
	out, err := e.Conn.Run(ctx, faultsJob("huge-describe", "ok"))
	if err != nil {
		e.Lost("the job for the plugin with a huge Describe: %s (%v)", out, err)
	} else {
		e.Figure("the job for the plugin with a huge Describe: %s", out)
		if out.Completed() || out.Fail != nil && !out.Fail.Retryable {
			e.Unbounded("the job for the plugin with a huge Describe: %s, want a retryable failure or a reject", out)
		}
	}
	e.ServeAfter(ctx, LLMJob("after-huge-describe"))
	return nil
}

// wantCompleted checks that the job delivered its result.
func wantCompleted(out Outcome) error {
	if !out.Completed() {
		return fmt.Errorf("%s, want it completed", out)
	}
	return nil
}

// wantFail returns a check that the job failed with retryable and words in
// its message.
func wantFail(retryable bool, words string) func(Outcome) error {
	return func(out Outcome) error {
		if out.Fail == nil || out.Fail.Retryable != retryable || !strings.Contains(out.Fail.Error, words) {
			return fmt.Errorf("%s, want a fail (retryable %v) with %q", out, retryable, words)
		}
		return nil
	}
}

// pluginFault is a case that runs one job of the faults plugin with prompt
// and checks its outcome, the agent's memory meanwhile, that no log entry
// over the bound reached the studio, and that a job is served right after.
func pluginFault(prompt string, check func(Outcome) error) func(ctx context.Context, e *Env) error {
	return func(ctx context.Context, e *Env) error {
		peak := e.Agent.WatchRSS()
		out, err := e.Conn.Run(ctx, faultsJob("hostile-plugin", prompt))
		e.CheckRSS(prompt, peak())
		switch {
		case errors.Is(err, errSessionEnded):
			e.Lost("the job with %s lost its session: %v", prompt, err)
		case err != nil:
			return err
		default:
			e.Figure("the job with %s: %s", prompt, out)
			if err := check(out); err != nil {
				e.Unbounded("the job with %s: %v", prompt, err)
			}
		}
		logs, _ := e.Conn.Logs()
		for _, l := range logs {
			if len(l.Message) > 8<<10+256 {
				e.Unbounded("a log entry of %d bytes reached the studio", len(l.Message))
			}
		}
		e.ServeAfter(ctx, faultsJob("after-hostile-plugin", "ok"))
		return nil
	}
}
