package watchdog

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

// TestSpool: a body read in odd pieces comes back whole below, at and past
// the heap threshold, and one byte over the limit is refused.
func TestSpool(t *testing.T) {
	f := &forker{}
	f.bufs.New = func() any { return new(bytes.Buffer) }
	cases := []struct {
		name  string
		size  int
		limit int64
		over  bool
	}{
		{"empty", 0, 1 << 20, false},
		{"small", 1000, 1 << 20, false},
		{"below the threshold by a read", spillAt - readChunk, 1 << 20, false},
		{"mapped", spillAt + 1, 1 << 20, false},
		{"mapped, exactly the limit", 1 << 20, 1 << 20, false},
		{"mapped, one over", 1<<20 + 1, 1 << 20, true},
		{"small limit, exactly", 4096, 4096, false},
		{"small limit, one over", 4097, 4096, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(strings.Repeat("abcdefghijklmnopq", tc.size/17+1)[:tc.size])
			s := spool{small: f.getBuf()}
			defer s.release(f)
			err := s.readFrom(iotest.HalfReader(bytes.NewReader(data)), tc.limit)
			var tooBig *http.MaxBytesError
			if tc.over {
				if !errors.As(err, &tooBig) || tooBig.Limit != tc.limit {
					t.Fatalf("err %v, want MaxBytesError %d", err, tc.limit)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.len() != tc.size || !bytes.Equal(s.bytes(), data) {
				t.Fatalf("got %d bytes, want %d", s.len(), tc.size)
			}
			// The heap holds at most spillAt bytes: a read that could
			// pass it goes to the mapping.
			if mapped := s.big != nil; (tc.size > spillAt && !mapped) || (tc.size <= spillAt-readChunk && mapped) {
				t.Errorf("mapped %v for %d bytes", mapped, tc.size)
			}
		})
	}
}
