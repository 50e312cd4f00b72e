// Package engines is the supervisor's engine host: it finds the engine
// plugins, launches each as its own process, keeps them running, and routes
// every job strictly by its ModelSource engine id to the plugin that serves
// it.
//
// A plugin that dies is relaunched with a fresh process after a backoff;
// one that crashes too often in a window is quarantined (its task kinds leave
// the advertised capabilities) until a cooldown has passed. Beside each
// serving instance the host keeps a warm spare (spare.go): a second process,
// launched and described the same way, idle, swapped in at once when the
// serving one dies and the relaunch would be immediate (Config.NoSpare turns
// it off). The host knows
// nothing of the studio: it is given run requests and returns typed
// outcomes (package jobs is the only place that knows both).
package engines
