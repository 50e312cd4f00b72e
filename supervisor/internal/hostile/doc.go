// Package hostile is the hostile-peer kit behind scripts/stress-hostile.sh:
// it attacks the real `stoker agent` binary the way a hostile or broken
// studio (and, in its plugin cases, a hostile plugin) would, and checks the
// node's promise: a hostile peer costs at most one job, never the node.
// Only its command (stress-hostile) and its test import it.
//
// Each case runs against a fresh hostile studio on loopback ([Studio]: a
// WebSocket session and a result upload endpoint that can serve a job, and
// flood, stall, garble, oversize or close on purpose) and a fresh agent
// process ([Agent], its resident memory read from /proc), warmed up by one
// job, its idle memory measured. A case records what it saw in the [Env]:
//
//   - a node crash: the agent process died without being asked to
//     (the runner sees it; the case ends);
//   - unbounded: a bound the node broke, such as resident memory more
//     than 64 MiB above idle ([Env.CheckRSS]), a batch resent after a
//     1009, a silent session kept past its read-idle timeout; a case that
//     could not be carried out counts here too;
//   - lost: a job that should have completed and did not, above all the
//     job every case serves right after its attack ([Env.ServeAfter]).
//
// [Report.Print] writes a block per case with its figures, and as its last
// line "node_crashes=C unbounded=U lost=L cases=N".
//
// # Adding a case
//
// A case is a [Case]: a name, a line saying what the peer does and what
// must hold, and a Run func(ctx, *Env) error. Studio cases live in
// cases_studio.go (studioCases); hostile-plugin cases go in
// cases_plugin.go (pluginCases), and [Cases] runs both lists in order.
// A plugin case typically:
//
//   - runs a job on the plugin under attack through the studio:
//     e.Conn.Run(ctx, Job{ID: ..., Model: ..., Engine: "faults", Task:
//     `{"kind":"llm",...}`}) (faultsJob builds one for the faults plugin,
//     whose prompt names the misbehaviour), and checks the [Outcome]: a
//     typed fail is fine, an accepted job with no outcome is e.Lost;
//   - watches memory with rss := e.Agent.WatchRSS() ... e.CheckRSS(what,
//     rss());
//   - ends with e.ServeAfter(ctx, LLMJob("after-...")).
//
// The plugin must be in the run's plugin dir (scripts/stress-hostile.sh
// builds synthetic-plugin and faults-plugin into it; add a build line for
// another). Every agent gets the defaults plus JSON logs, a local API on a
// free loopback port and a 5 s drain; a case that needs other settings (a
// stall timeout, say) lists them in Case.AgentEnv.
package hostile
