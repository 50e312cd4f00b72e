package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// commandTree is every command, with its subcommands ("" for none), as
// the completion scripts offer them.
var commandTree = []struct {
	name string
	subs []string
}{
	{"agent", nil},
	{"studio", nil},
	{"register", nil},
	{"config", []string{"validate", "print"}},
	{"models", []string{"list", "prune", "pull"}},
	{"ps", nil},
	{"plugin", []string{"check"}},
	{"completion", []string{"bash", "zsh"}},
	{"version", nil},
	{"help", nil},
}

const completionUsage = `usage: stoker completion bash|zsh

Prints a completion script for the shell:

  source <(stoker completion bash)                     # bash, this shell
  stoker completion bash > /etc/bash_completion.d/stoker
  stoker completion zsh > "${fpath[1]}/_stoker"        # zsh (then compinit)
`

func runCompletion(args []string, sio stdio) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(sio.out, completionUsage)
		return errHelp
	}
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprint(sio.err, completionUsage)
		return usageErrorf("completion: want one argument, bash or zsh")
	}
	words := completionWords()
	if args[0] == "bash" {
		return writeBashCompletion(sio.out, words)
	}
	return writeZshCompletion(sio.out, words)
}

// flagLine matches a flag in a usage's flag list ("  -config file").
var flagLine = regexp.MustCompile(`(?m)^  (-[A-Za-z0-9-]+)`)

// completionWords maps "cmd" and "cmd sub" to what may follow: the
// subcommands, else the flags read from the command's own -h.
func completionWords() map[string][]string {
	out := map[string][]string{}
	for _, c := range commandTree {
		out[""] = append(out[""], c.name)
		if len(c.subs) > 0 {
			out[c.name] = c.subs
		}
		for _, sub := range append([]string{""}, c.subs...) {
			args := []string{c.name}
			if sub != "" {
				args = append(args, sub)
			}
			if c.name == "completion" || c.name == "help" || len(c.subs) > 0 && sub == "" {
				continue
			}
			var b bytes.Buffer
			_ = run(context.Background(), append(args, "-h"), stdio{out: &b, err: io.Discard})
			var flags []string
			for _, m := range flagLine.FindAllStringSubmatch(b.String(), -1) {
				flags = append(flags, m[1])
			}
			slices.Sort(flags)
			out[strings.Join(args, " ")] = slices.Compact(flags)
		}
	}
	return out
}

func writeBashCompletion(w io.Writer, words map[string][]string) error {
	var b strings.Builder
	b.WriteString(`# bash completion for stoker (stoker completion bash)
_stoker() {
	local cur key i w
	cur=${COMP_WORDS[COMP_CWORD]}
	key=
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		[[ $w == -* ]] && continue
		case "$key" in
		"") key=$w ;;
		*" "*) ;;
		*) case " $(_stoker_words "$key") " in *" $w "*) key="$key $w" ;; esac ;;
		esac
	done
	case "$cur" in
	-*) COMPREPLY=($(compgen -W "$(_stoker_words "$key")" -- "$cur")) ;;
	*)
		local next
		next=$(_stoker_words "$key")
		if [[ $next == -* || -z $next ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$next" -- "$cur"))
		fi
		;;
	esac
}
_stoker_words() {
	case "$1" in
`)
	for _, k := range sortedKeys(words) {
		fmt.Fprintf(&b, "\t%q) echo %q ;;\n", k, strings.Join(words[k], " "))
	}
	b.WriteString("\tesac\n}\ncomplete -o filenames -F _stoker stoker\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeZshCompletion(w io.Writer, words map[string][]string) error {
	var b strings.Builder
	b.WriteString(`#compdef stoker
# zsh completion for stoker (stoker completion zsh)
_stoker() {
	local -A next
	next=(
`)
	// Keys start with "stoker" (the command line so far): zsh takes no
	// empty key.
	for _, k := range sortedKeys(words) {
		fmt.Fprintf(&b, "\t\t%q %q\n", strings.TrimSpace("stoker "+k), strings.Join(words[k], " "))
	}
	b.WriteString(`	)
	local key=stoker w i
	for ((i = 2; i < CURRENT; i++)); do
		w=${words[i]}
		[[ $w == -* ]] && continue
		if [[ $key == stoker ]]; then
			key="stoker $w"
		elif [[ $key != *" "*" "* && " ${next[$key]} " == *" $w "* ]]; then
			key="$key $w"
		fi
	done
	local -a cands
	cands=(${=next[$key]})
	if [[ ${words[CURRENT]} == -* || ( ${#cands} -gt 0 && ${cands[1]} != -* ) ]]; then
		compadd -- $cands
	else
		_files
	fi
}
compdef _stoker stoker
`)
	_, err := io.WriteString(w, b.String())
	return err
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
