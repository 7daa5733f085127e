package doctor

import (
	"bufio"
	"io"
	"strings"
)

// Format writes one aligned line per result, and a WARN's or FAIL's hint
// indented under its detail on the next line:
//
//	OK   docker        API 1.41 (engine 20.10.24)
//	FAIL swarm         inactive: this engine is not part of a swarm
//	                   hint: docker swarm init --advertise-addr <addr>
func Format(w io.Writer, results []Result) error {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Check))
	}
	width += 2
	indent := strings.Repeat(" ", 5+width)
	bw := bufio.NewWriter(w)
	for _, r := range results {
		bw.WriteString(pad(string(r.Status), 5))
		bw.WriteString(pad(r.Check, width))
		bw.WriteString(r.Detail)
		bw.WriteByte('\n')
		if r.Hint == "" || r.Status == OK {
			continue
		}
		for i, line := range strings.Split(r.Hint, "\n") {
			bw.WriteString(indent)
			if i == 0 {
				bw.WriteString("hint: ")
			} else {
				bw.WriteString("      ")
			}
			bw.WriteString(line)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s + " "
	}
	return s + strings.Repeat(" ", n-len(s))
}
