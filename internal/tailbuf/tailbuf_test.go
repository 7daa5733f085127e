package tailbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestTailKeepsTheEnd(t *testing.T) {
	tests := []struct {
		name   string
		max, n int
		writes []string
		want   string
	}{
		{"nothing written", 64, 3, nil, ""},
		{"fewer lines than asked", 64, 3, []string{"a\n", "b\n"}, "a\nb"},
		{"the last n lines", 64, 2, []string{"a\nb\n", "c\nd\n"}, "c\nd"},
		{"a write split across lines", 64, 2, []string{"a\nb", "c\nd\n"}, "bc\nd"},
		{"bytes over max dropped from the front", 6, 5, []string{"first\n", "second\n"}, "econd"},
		{"over max, not yet compacted", 6, 5, []string{"ab\n", "cd\n", "ef\n"}, "cd\nef"},
		{"many writes over max", 4, 5, []string{"1\n", "2\n", "3\n", "4\n", "5\n", "6\n", "7\n"}, "6\n7"},
		{"white space around trimmed", 64, 3, []string{"\n  x  \n\n"}, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := New(tc.max)
			for _, w := range tc.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := tl.LastLines(tc.n); got != tc.want {
				t.Errorf("LastLines(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}

// Concurrent writers never push what it shows past Max, nor its memory
// past twice that (run with -race).
func TestTailConcurrent(t *testing.T) {
	tl := New(100)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				fmt.Fprintf(tl, "writer %d line %d\n", i, j)
			}
		}()
	}
	wg.Wait()
	if len(tl.buf) > 2*tl.Max {
		t.Errorf("after concurrent writes the buffer holds %d bytes, over twice Max %d", len(tl.buf), tl.Max)
	}
	if got := tl.LastLines(1000); len(got) > 100 || !strings.HasPrefix(strings.Split(got, "\n")[1], "writer ") {
		t.Errorf("after concurrent writes: %d bytes %q", len(got), got)
	}
}
