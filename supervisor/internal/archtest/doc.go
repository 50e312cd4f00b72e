// Package archtest holds no code: its test enforces the architecture's
// rules between packages (who may know whom), so a change that breaks them
// fails CI instead of a review.
package archtest
