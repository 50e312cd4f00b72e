package plugins

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// budgetLogger is the logger go-plugin writes a plugin's stderr lines to
// (re-levelled from the plugin's JSON). It cuts each line to MaxLogBytes
// and passes lines within the plugin's log budget only; a plugin printing
// in a loop costs the host a counter, not its log. Lines below the
// logger's level are handed on uncharged (the logger drops them).
type budgetLogger struct {
	hclog.Logger
	budget *logBudget
	now    func() time.Time
}

func newBudgetLogger(l hclog.Logger, b *logBudget) *budgetLogger {
	return &budgetLogger{Logger: l, budget: b, now: time.Now}
}

func (l *budgetLogger) emit(level hclog.Level, msg string, args []any) {
	if level < l.Logger.GetLevel() {
		return
	}
	ok, dropped := l.budget.take(l.now())
	if !ok {
		return
	}
	if dropped > 0 {
		l.Logger.Warn(droppedNotice(dropped))
	}
	for i, a := range args {
		if s, isString := a.(string); isString && len(s) > MaxLogBytes {
			args[i] = cutLine(s)
		}
	}
	l.Logger.Log(level, cutLine(msg), args...)
}

// reportDropped logs the lines dropped since the last one that passed.
func (l *budgetLogger) reportDropped() {
	if n := l.budget.flush(); n > 0 {
		l.Logger.Warn(droppedNotice(n))
	}
}

func (l *budgetLogger) Log(level hclog.Level, msg string, args ...any) { l.emit(level, msg, args) }
func (l *budgetLogger) Trace(msg string, args ...any)                  { l.emit(hclog.Trace, msg, args) }
func (l *budgetLogger) Debug(msg string, args ...any)                  { l.emit(hclog.Debug, msg, args) }
func (l *budgetLogger) Info(msg string, args ...any)                   { l.emit(hclog.Info, msg, args) }
func (l *budgetLogger) Warn(msg string, args ...any)                   { l.emit(hclog.Warn, msg, args) }
func (l *budgetLogger) Error(msg string, args ...any)                  { l.emit(hclog.Error, msg, args) }

func (l *budgetLogger) With(args ...any) hclog.Logger {
	return &budgetLogger{Logger: l.Logger.With(args...), budget: l.budget, now: l.now}
}

func (l *budgetLogger) Named(name string) hclog.Logger {
	return &budgetLogger{Logger: l.Logger.Named(name), budget: l.budget, now: l.now}
}

func (l *budgetLogger) ResetNamed(name string) hclog.Logger {
	return &budgetLogger{Logger: l.Logger.ResetNamed(name), budget: l.budget, now: l.now}
}

var _ hclog.Logger = (*budgetLogger)(nil)
