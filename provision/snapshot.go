package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// Snapshot reads the node's files that patterns name, in one session (a
// shell script on the node prints them, base64 where they may be binary),
// and returns them as a read-only file system rooted at the node's /, with
// paths without the leading slash: doctor.Probes.Root for checks that run
// on the node. A pattern is a path relative to / whose segments are
//
//   - literal: letters, digits, '.', '_', '-', and {release} standing for
//     the node's kernel release (uname -r) inside the segment;
//   - [0-9]*: every entry whose name starts with a digit (/proc/[0-9]*);
//   - {pid:NAME}: the pid of each process whose /proc/PID/comm is NAME
//     (at most one per pattern);
//
// or the whole pattern is {flag:NAME:FLAG}: the absolute paths given as
// --FLAG=PATH or --FLAG PATH on the command line of processes named NAME.
// Patterns are this program's constants; they are checked anyway, since
// they become a shell script.
//
// The file system has every file and directory the patterns matched, an
// error for which errors.Is reports fs.ErrPermission for a file that
// exists but could not be read, fs.ErrNotExist for one a pattern names
// that does not exist, and ErrNotCaptured for a path no pattern names, so
// a check that reads a file the patterns miss says so instead of taking
// the file for absent. A directory lists only what the patterns matched in
// it. The reply is bounded by MaxSnapshotBytes.
func (c *Client) Snapshot(ctx context.Context, patterns []string) (fs.FS, error) {
	fail := func(err error) (fs.FS, error) {
		return nil, fmt.Errorf("snapshot of %s's files: %w", c.target.Host, err)
	}
	ps, err := parsePatterns(patterns)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := &boundedBuffer{max: MaxSnapshotBytes, full: func() { cancel(errSnapshotTooLarge) }}
	// The script goes on stdin: the command line is the login shell's, the
	// script is sh's whatever that shell is.
	if err := c.stream(ctx, "sh -s", strings.NewReader(snapshotScript(ps)), out); err != nil {
		if errors.Is(context.Cause(ctx), errSnapshotTooLarge) {
			return fail(errSnapshotTooLarge)
		}
		return fail(err)
	}
	snap, err := parseSnapshot(out.buf)
	if err != nil {
		return fail(err)
	}
	return snap.fs(ps), nil
}

// MaxSnapshotBytes bounds Snapshot's reply: the files doctor reads on a
// node with a few thousand processes take well under 1 MiB.
const MaxSnapshotBytes = 4 << 20

var errSnapshotTooLarge = fmt.Errorf("the reply exceeds %d MiB: the patterns match too much", MaxSnapshotBytes>>20)

// ErrNotCaptured is the error of a path that no pattern of a Snapshot
// names: whether it exists on the node is unknown.
var ErrNotCaptured = errors.New("not in the snapshot of the node's files (pulse does not read it from nodes)")

// boundedBuffer collects up to max bytes; one more and it calls full and
// fails the write, which ends the session.
type boundedBuffer struct {
	max  int
	buf  []byte
	full func()
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > b.max {
		b.full()
		return 0, errSnapshotTooLarge
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// pattern is one parsed Snapshot pattern.
type pattern struct {
	raw  string
	segs []string // a path pattern's segments; nil for a flag pattern
	pid  string   // the process name of its {pid:NAME} segment, if any
	// release says a segment holds {release}.
	release bool
	// proc and flag are a {flag:NAME:FLAG} pattern's process and flag.
	proc, flag string
}

// Limits on patterns, which are constants of this program: anything
// larger is a mistake.
const (
	maxPatterns      = 64
	maxPatternLength = 256
)

var (
	literalSegment = regexp.MustCompile(`^(?:[A-Za-z0-9._-]|\{release\})+$`)
	pidSegment     = regexp.MustCompile(`^\{pid:([A-Za-z0-9._-]{1,15})\}$`)
	flagPattern    = regexp.MustCompile(`^\{flag:([A-Za-z0-9._-]{1,15}):([a-z0-9][a-z0-9-]{0,63})\}$`)
)

// digitGlob is the one glob a segment may be.
const digitGlob = "[0-9]*"

// parsePatterns checks patterns against the grammar Snapshot documents.
func parsePatterns(patterns []string) ([]pattern, error) {
	if len(patterns) == 0 || len(patterns) > maxPatterns {
		return nil, fmt.Errorf("%d patterns: want 1 to %d", len(patterns), maxPatterns)
	}
	ps := make([]pattern, 0, len(patterns))
	for _, raw := range patterns {
		p, err := parsePattern(raw)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", raw, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func parsePattern(raw string) (pattern, error) {
	p := pattern{raw: raw}
	if len(raw) > maxPatternLength {
		return p, fmt.Errorf("longer than %d bytes", maxPatternLength)
	}
	if m := flagPattern.FindStringSubmatch(raw); m != nil {
		p.proc, p.flag = m[1], m[2]
		return p, nil
	}
	if raw == "" || strings.HasPrefix(raw, "/") || strings.HasSuffix(raw, "/") {
		return p, errors.New("want a path relative to /, without a leading or trailing slash")
	}
	p.segs = strings.Split(raw, "/")
	for _, s := range p.segs {
		switch {
		case s == "." || s == "..":
			return p, fmt.Errorf("segment %q: no . or .. segments", s)
		case s == digitGlob:
		case pidSegment.MatchString(s):
			if p.pid != "" {
				return p, errors.New("more than one {pid:NAME} segment")
			}
			p.pid = pidSegment.FindStringSubmatch(s)[1]
		case literalSegment.MatchString(s):
			p.release = p.release || strings.Contains(s, "{release}")
		default:
			return p, fmt.Errorf("segment %q: want letters, digits, '.', '_', '-' and {release}, or [0-9]*, or {pid:NAME}", s)
		}
	}
	return p, nil
}

// covers says whether a path of the snapshot (relative, clean) is one p
// matches or a directory on the way to one: what the script looked at.
func (p pattern) covers(name string) bool {
	if p.segs == nil {
		return false // a flag pattern's paths are known only from the reply
	}
	parts := strings.Split(name, "/")
	if len(parts) > len(p.segs) {
		return false
	}
	for i, part := range parts {
		if ok, _ := path.Match(p.globSegment(i), part); !ok {
			return false
		}
	}
	return true
}

// globSegment is segment i as a path.Match pattern.
func (p pattern) globSegment(i int) string {
	s := p.segs[i]
	if pidSegment.MatchString(s) {
		return digitGlob
	}
	return strings.ReplaceAll(s, "{release}", "*")
}

// shellPath is a path pattern as a double-quoted shell word, with ${pid}
// and ${release} for its placeholders; [0-9]* stays for look to expand.
func (p pattern) shellPath() string {
	segs := make([]string, len(p.segs))
	for i, s := range p.segs {
		if pidSegment.MatchString(s) {
			segs[i] = "${pid}"
			continue
		}
		segs[i] = strings.ReplaceAll(s, "{release}", "${release}")
	}
	return `"/` + strings.Join(segs, "/") + `"`
}

// snapshotScript is the POSIX sh script Snapshot runs. Its reply, which
// parseSnapshot reads, is a header line, one record per path, and "end":
//
//	d PATH         a directory
//	t PATH TEXT    a file holding TEXT and a newline (a /proc/PID/comm)
//	f PATH         a file; its base64 follows, up to a line "."
//	p PATH         exists, but may not be read (or a directory on the way
//	               may not be searched)
//	n PATH         looked for (a literal path), absent
//	i              a path skipped: its name has characters the reply does
//	               not carry
//
// PATH is absolute and of characters the reply carries as they are.
func snapshotScript(ps []pattern) string {
	var b strings.Builder
	b.WriteString(snapshotLib)
	pidVar := map[string]string{}
	for _, p := range ps {
		if p.pid != "" && pidVar[p.pid] == "" {
			v := fmt.Sprintf("pids%d", len(pidVar))
			pidVar[p.pid] = v
			fmt.Fprintf(&b, "%s=$(pids '%s')\n", v, p.pid)
		}
	}
	for _, p := range ps {
		switch {
		case p.segs == nil:
			// read, not for: a value must not be expanded as a glob.
			fmt.Fprintf(&b, "flag '%s' '%s' | while IFS= read -r v; do safe \"$v\" && look \"$v\"; done\n", p.proc, p.flag)
		case p.pid != "":
			cond := ""
			if p.release {
				cond = `[ -n "$release" ] && `
			}
			fmt.Fprintf(&b, "for pid in $%s; do %slook %s; done\n", pidVar[p.pid], cond, p.shellPath())
		case p.release:
			fmt.Fprintf(&b, "[ -n \"$release\" ] && look %s\n", p.shellPath())
		default:
			fmt.Fprintf(&b, "look %s\n", p.shellPath())
		}
	}
	b.WriteString("echo end\n")
	return b.String()
}

// snapshotLib is the script's start: its functions, then the header.
const snapshotLib = `set -u
LC_ALL=C
export LC_ALL
IFS='
'
command -v base64 >/dev/null 2>&1 || { echo 'no base64 command on the node: install coreutils' >&2; exit 3; }
release=$(uname -r 2>/dev/null) || release=
case $release in *[!A-Za-z0-9._+-]*) release= ;; esac

pids() { # the pids whose /proc/PID/comm is $1
	for d in /proc/[0-9]*; do
		{ IFS= read -r c <"$d/comm"; } 2>/dev/null || continue
		[ "$c" = "$1" ] && printf '%s\n' "${d#/proc/}"
	done
	return 0
}

flag() { # the values of --$2 on the command lines of the processes named $1
	for pid in $(pids "$1"); do
		tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | {
			prev=
			while IFS= read -r a; do
				case $a in --"$2"=*) printf '%s\n' "${a#--"$2"=}" ;; esac
				[ "$prev" = "--$2" ] && printf '%s\n' "$a"
				prev=$a
			done
		}
	done
	return 0
}

safe() { # $1 is a clean absolute path of characters the reply carries as they are
	case $1 in /*) ;; *) return 1 ;; esac
	case $1 in *[!A-Za-z0-9._/+@:,=-]* | *//* | */./* | */../* | */. | */.. | */) return 1 ;; esac
	return 0
}

denied() { # a directory on the way to $1 may not be searched, or a link on it followed
	a=${1%/*}
	while [ -n "$a" ]; do
		if [ -e "$a" ]; then
			[ -d "$a" ] && [ ! -x "$a" ]
			return
		fi
		[ -L "$a" ] && return 0
		a=${a%/*}
	done
	return 1
}

emit() { # the file $1
	case $1 in
	/proc/*/comm)
		# One line the kernel writes, never a NUL byte: a base64 process
		# for each of the node's processes would cost seconds.
		l= m=
		if { IFS= read -r l && ! IFS= read -r m && [ -z "$m" ]; } <"$1" 2>/dev/null; then
			printf 't %s %s\n' "$1" "$l"
			return
		fi
		;;
	esac
	if b=$(base64 <"$1" 2>/dev/null); then
		printf 'f %s\n%s\n.\n' "$1" "$b"
	elif [ -e "$1" ]; then
		printf 'p %s\n' "$1"
	fi
}

look() { # $1: an absolute path, perhaps with [0-9]* segments to expand
	for p in $1; do
		case $p in *'[0-9]*'*) continue ;; esac # matched nothing
		if ! safe "$p"; then
			echo i
			continue
		fi
		if [ -d "$p" ]; then
			printf 'd %s\n' "$p"
		elif [ -e "$p" ]; then
			emit "$p"
		elif denied "$p"; then
			printf 'p %s\n' "$p"
		else
			printf 'n %s\n' "$p"
		fi
	done
}

echo 'pulse-snapshot 1'
`
