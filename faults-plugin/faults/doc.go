// Package faults is a fault-injection engine: a test tool that misbehaves on
// request so the supervisor's crash isolation can be exercised without a GPU.
// Its plugin binary is faults-plugin (engine id "faults", kinds llm and
// image, models "faults-llm" and "faults-image"). Only tests, the stress
// script and people poking at a dev node run it; never ship it.
//
// # Faults chosen by the prompt
//
// The first word of the task's prompt (the last LLM message, or the image
// prompt) names the fault; the rest of the prompt is ignored, so a caller can
// add a nonce. Before injecting a crash the plugin writes one line to stderr,
// "faults: injecting <name> pid=<pid> at=<unix nanoseconds>", so the crash
// report's stderr tail shows what happened.
//
//	ok              a normal result (llm: {"fault":"ok","echo":...}; image: a PNG)
//	sleep=<d>       a normal result after d (time.ParseDuration), with progress
//	                every 50ms meanwhile
//	segv            a C null-pointer write (cgo); the Go runtime reports it and
//	                the process exits with code 2
//	segv-raw        the same write with SIGSEGV reset to the default action
//	                first: the kernel kills the process by SIGSEGV
//	abort           C abort() (SIGABRT)
//	panic           a Go panic in the job's goroutine
//	exit=<n>        os.Exit(n) mid-job (n defaults to 1)
//	sigkill         SIGKILL to itself
//	hang            sends nothing and ignores cancellation: the stall watchdog
//	                must kill it
//	progress-hang   reports progress every 50ms forever, honouring
//	                cancellation: only a cancel (or drain timeout) ends it
//	alloc           caps its address space (RLIMIT_AS) at what it uses now plus
//	                256 MiB, then allocates and touches memory until the Go
//	                runtime dies with "fatal error: runtime: out of memory";
//	                the machine never swaps for it
//	oom-kernel      allocates until the kernel's OOM killer kills it; refused
//	                unless the plugin runs in a memory cgroup limited to at most
//	                1 GiB (see EnvCgroup)
//	env=<NAME>      llm: answers {"fault":"env","name":NAME,"value":...,"set":...}
//	                with the plugin's environment variable NAME (what the
//	                supervisor handed it)
//	stdout-garbage  writes garbage to the real stdout (fd 1) mid-job, then
//	                answers normally: after the handshake go-plugin discards
//	                stdout, so this must not hurt
//	break-transport shuts down every socket of the process, which stays alive:
//	                the host sees a broken stream from a live process
//
// Hostile faults do not crash: they send too much, for too long, or lie
// about sizes, and then (if still allowed to) answer like ok. Those named
// raw-* and lie-* bypass the SDK's own bounds through the raw wire of
// [Serve] (they fail in process, through plugintest.Connect), as a plugin
// written without the SDK could; the others go through the SDK's Events, as
// a careless plugin would. Sizes are byte counts such as 4096, 64KiB, 40MiB.
//
//	huge-log=<size>     one log line of size bytes through Events.Log
//	huge-result=<size>  a JSON result of size bytes through Events.Result
//	raw-log=<size>      one log event of size bytes on the raw wire
//	raw-result=<size>   a JSON result of size bytes on the raw wire
//	raw-output=<size>   one output chunk of size bytes on the raw wire
//	lie-size            an output chunk whose data field claims 1 GiB and
//	                    carries 16 bytes
//	lie-progress        progress with step far past total
//	log-flood=<n>       n log lines through Events.Log (without end when n
//	                    is 0 or absent, until cancelled)
//	stderr-flood=<n>    n lines on stderr (the same)
//	endless-output      512 KiB output chunks without end, until cancelled
//	                    or refused (image jobs)
//	progress-hang       (above) progress without end: only a deadline or a
//	                    cancel ends it
//
// Anything else is answered like ok.
//
// # Faults chosen at start-up
//
// Start-up faults are set by environment variables, read by [ApplyStart]
// (before [Serve]) and by [Engine.Describe]:
//
//	STOKER_FAULTS_START=slow=<d>   sleep d before serving (start-up timeout)
//	STOKER_FAULTS_START=garbage    print garbage on stdout before the
//	                               handshake: go-plugin cannot start it
//	STOKER_FAULTS_START=exit       exit 1 before serving
//	STOKER_FAULTS_START=linger     serve normally, but do not exit on
//	                               go-plugin's Shutdown (as a plugin without
//	                               the controller service): the host kills it
//	STOKER_FAULTS_DESCRIBE=<lie>   lie in Describe: wrong-contract, bogus-kinds,
//	                               no-engines, hang (never answer), huge
//	                               (100,000 models per kind, megabytes) or
//	                               many-models (2,000 per kind)
//	STOKER_FAULTS_JOB=<fault>      every job injects fault (a prompt fault
//	                               above), whatever its prompt: how a
//	                               conformance check, which sends its own
//	                               sample tasks, meets a per-job fault
//	STOKER_FAULTS_CGROUP=<dir>     join the memory cgroup dir (v1 or v2) before
//	                               serving, for oom-kernel
//	STOKER_FAULTS_DEVICE=<file>    report the device the file describes, read
//	                               at every Describe: one line "<backend>
//	                               <total bytes> <free bytes> <name>" (a test
//	                               changes it to see the host follow)
//
// STOKER_FAULTS_ONLY_IF_FILE=<path> makes every start-up fault apply only
// while that file exists, so a test can heal the plugin between launches.
package faults
