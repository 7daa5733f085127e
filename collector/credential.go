package collector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxCredentialBytes caps the replica credential file: pulsed writes a few
// dozen bytes.
const maxCredentialBytes = 4096

// credentialFile is the replica credential (contract.HeaderReplicaAuth's
// value), read from replica_auth_file. refresh, once per cycle, re-reads
// the file when its modification time, size or inode changed (a stat, no
// read, when nothing did), so a new credential is used without restarting
// Netdata. A missing or unreadable file is logged once (and again once it
// is readable); meanwhile the replicas are scraped without the credential,
// so those that do not require one are still collected.
type credentialFile struct {
	path string
	log  *slog.Logger

	mu    sync.RWMutex // value is read by the scrapes' goroutines
	value string

	stamp   fileStamp // of the file value was read from
	problem string    // the problem last logged; "" when the file is good
}

// fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	mod   time.Time
	size  int64
	ino   uint64
	valid bool
}

func stampOf(st os.FileInfo) fileStamp {
	s := fileStamp{mod: st.ModTime(), size: st.Size(), valid: true}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s
}

func newCredentialFile(path string, log *slog.Logger) *credentialFile {
	return &credentialFile{path: path, log: log}
}

// get returns the credential; "" when there is none.
func (c *credentialFile) get() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.value
}

// refresh re-reads the file if it changed. It reports whether the
// credential changed.
func (c *credentialFile) refresh() bool {
	st, err := os.Stat(c.path)
	if err == nil && c.stamp.valid && stampOf(st) == c.stamp {
		return false
	}
	var value string
	if err == nil {
		value, err = readCredential(c.path)
	}
	if err != nil {
		c.stamp = fileStamp{}
		if st != nil && errors.Is(err, errCredential) {
			c.stamp = stampOf(st) // read again only once it changes
		}
		if msg := err.Error(); msg != c.problem {
			c.problem = msg
			c.log.Warn("cannot read the replica credential; scraping replicas without it, and those that require it answer 403 (the file is pulsed's replica_auth_file, root:netdata 0640)",
				"replica_auth_file", c.path, "err", err)
		}
		return c.set("")
	}
	c.stamp = stampOf(st)
	if c.problem != "" {
		c.problem = ""
		c.log.Info("replica credential readable again", "replica_auth_file", c.path)
	}
	changed := c.set(value)
	if changed {
		c.log.Debug("replica credential read", "replica_auth_file", c.path)
	}
	return changed
}

func (c *credentialFile) set(v string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.value != v
	c.value = v
	return changed
}

// errCredential reports a credential file whose content cannot be sent.
var errCredential = errors.New("bad replica credential")

// readCredential reads and checks a credential file: one token, surrounding
// white space ignored, of visible ASCII characters (it goes in a header).
func readCredential(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return parseCredential(b)
}

// parseCredential checks a credential file's content.
func parseCredential(b []byte) (string, error) {
	if len(b) > maxCredentialBytes {
		return "", fmt.Errorf("%w: larger than %d bytes", errCredential, maxCredentialBytes)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%w: the file is empty", errCredential)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return "", fmt.Errorf("%w: byte %d is %q; want visible ASCII characters only", errCredential, i, v[i])
		}
	}
	return v, nil
}
