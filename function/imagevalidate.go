package function

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidSpec is wrapped by every validation error of an ImageSpec.
var ErrInvalidSpec = errors.New("invalid image spec")

// Validate reports every problem of the spec at once, each saying what to
// fix. The error wraps ErrInvalidSpec.
func (s ImageSpec) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := validateTag(s.Tag); err != nil {
		add("tag %q: %w", s.Tag, err)
	}

	files := make(map[string]File, len(s.Files)+len(s.BaseFiles))
	pathsOK := true
	lists := []struct {
		name  string
		files []File
	}{{"base files", s.BaseFiles}, {"files", s.Files}}
	for _, list := range lists {
		for i, f := range list.files {
			if err := validateImagePath(f.Path); err != nil {
				add("%s[%d] %q: %w", list.name, i, f.Path, err)
				pathsOK = false
				continue
			}
			if f.Path == tmpDir || strings.HasPrefix(f.Path, tmpDir+"/") {
				add("%s[%d] %q: %s is the empty mount point of a tmpfs at run time; put the file elsewhere", list.name, i, f.Path, tmpDir)
				pathsOK = false
				continue
			}
			if f.Mode&^fs.ModePerm != 0 {
				add("%s[%d] %q: mode %v has bits other than permissions; use e.g. 0644 or 0755", list.name, i, f.Path, f.Mode)
			} else if f.Mode&0o004 == 0 {
				add("%s[%d] %q: mode %#o does not let the non-root user read the root-owned file; use e.g. 0644 or 0755", list.name, i, f.Path, uint32(f.Mode))
			}
			if _, dup := files[f.Path]; dup {
				add("%s[%d] %q: duplicate path; list each file once", list.name, i, f.Path)
				continue
			}
			files[f.Path] = f
		}
	}

	if s.WorkingDir != "" && s.WorkingDir != "/" {
		if err := validateImagePath(s.WorkingDir); err != nil {
			add("working dir %q: %w", s.WorkingDir, err)
			pathsOK = false
		}
	}
	if pathsOK { // check files against the directories the image needs
		dirs := imageDirs(s)
		for _, list := range lists {
			for i, f := range list.files {
				if _, ok := dirs[f.Path]; ok {
					add("%s[%d] %q: the path is also a directory of the image (a parent of another file or the working dir); rename one", list.name, i, f.Path)
				}
			}
		}
	}

	switch {
	case len(s.Entrypoint) > 0:
		if err := validateProgram(s.Entrypoint[0], files); err != nil {
			add("entrypoint %q: %w", s.Entrypoint[0], err)
		}
	case len(s.Cmd) > 0:
		if err := validateProgram(s.Cmd[0], files); err != nil {
			add("cmd %q: %w", s.Cmd[0], err)
		}
	default:
		add("entrypoint and cmd are both empty; set the program to run, e.g. Entrypoint [\"/pulse-watchdog\"]")
	}

	keys := map[string]bool{}
	for i, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		switch {
		case !ok || k == "":
			add("env[%d] %q: want KEY=VALUE", i, e)
		case keys[k]:
			add("env[%d] %q: duplicate variable %s; set it once", i, e, k)
		}
		keys[k] = true
	}

	if err := validateUser(s.User); err != nil {
		add("user %q: %w", s.User, err)
	}

	ports := map[string]bool{}
	for i, p := range s.ExposedPorts {
		if err := validatePort(p); err != nil {
			add("exposed ports[%d] %q: %w", i, p, err)
		} else if ports[p] {
			add("exposed ports[%d] %q: duplicate port; list it once", i, p)
		}
		ports[p] = true
	}

	for _, k := range sortedKeys(s.Labels) {
		switch {
		case k == "":
			add("labels: empty key (value %q); name the label", s.Labels[k])
		case k == LabelBaseLayer:
			add("labels: %s is set by Assemble from the base files; leave it out", k)
		}
	}

	if s.Healthcheck != nil {
		for _, err := range validateHealthcheck(*s.Healthcheck, files) {
			add("healthcheck: %w", err)
		}
	}

	if s.Architecture != "" && !knownArchitecture(s.Architecture) {
		add("architecture %q: unknown; use a GOARCH such as amd64 or arm64, or leave it empty for %s", s.Architecture, runtime.GOARCH)
	}

	if s.SourceDateEpoch < 0 || s.SourceDateEpoch > maxEpoch {
		add("source date epoch %d: want seconds since 1970 between 0 and %d", s.SourceDateEpoch, maxEpoch)
	}

	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, errors.Join(errs...))
	}
	return nil
}

// knownArchitecture reports whether arch is a GOARCH that Docker images are
// published for.
func knownArchitecture(arch string) bool {
	switch arch {
	case "386", "amd64", "arm", "arm64", "loong64", "mips64le", "ppc64le", "riscv64", "s390x":
		return true
	}
	return false
}

func validateImagePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path; give an absolute path such as /function")
	case !strings.HasPrefix(p, "/"):
		return errors.New("path is relative; make it absolute, e.g. /" + p)
	case strings.ContainsRune(p, 0):
		return errors.New("path contains a NUL byte")
	case p == "/":
		return errors.New("path is the root directory; name a file under it")
	case path.Clean(p) != p:
		return fmt.Errorf("path is not clean; write it as %s", path.Clean(p))
	}
	return nil
}

// validateProgram checks that p, the program of an exec-form command, is an
// executable file of the image.
func validateProgram(p string, files map[string]File) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("not an absolute path; there is no PATH lookup in a scratch image, name the file, e.g. /" + p)
	}
	f, ok := files[p]
	switch {
	case !ok:
		return errors.New("not among the image's files; add it to Files")
	case f.Mode&0o001 == 0:
		return fmt.Errorf("mode %#o does not let the non-root user run the root-owned file; use 0755", uint32(f.Mode))
	}
	return nil
}

var numericUser = regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`)

func validateUser(u string) error {
	m := numericUser.FindStringSubmatch(u)
	if m == nil {
		return errors.New("want a numeric uid[:gid] such as 65534:65534 (the image has no /etc/passwd)")
	}
	uid, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil {
		return fmt.Errorf("uid: %w", err)
	}
	if m[2] != "" {
		if _, err := strconv.ParseUint(m[2], 10, 32); err != nil {
			return fmt.Errorf("gid: %w", err)
		}
	}
	if uid == 0 {
		return errors.New("uid 0 is root; Pulse images run as a non-root user such as 65534:65534")
	}
	return nil
}

var portProto = regexp.MustCompile(`^([0-9]{1,5})/(tcp|udp|sctp)$`)

func validatePort(p string) error {
	m := portProto.FindStringSubmatch(p)
	if m == nil {
		return errors.New("want port/protocol such as 8080/tcp (protocol tcp, udp or sctp)")
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > 65535 {
		return errors.New("port out of range 1-65535")
	}
	return nil
}

func validateHealthcheck(h Healthcheck, files map[string]File) []error {
	var errs []error
	switch {
	case len(h.Test) == 0:
		errs = append(errs, errors.New(`test is empty; use ["CMD", "/program", args...] or ["NONE"]`))
	case h.Test[0] == "NONE":
		if len(h.Test) > 1 {
			errs = append(errs, errors.New(`test ["NONE", ...] takes no arguments`))
		}
	case h.Test[0] == "CMD":
		if len(h.Test) < 2 {
			errs = append(errs, errors.New(`test ["CMD"] names no program; use ["CMD", "/program", args...]`))
		} else if err := validateProgram(h.Test[1], files); err != nil {
			errs = append(errs, fmt.Errorf("test program %q: %w", h.Test[1], err))
		}
	case h.Test[0] == "CMD-SHELL":
		errs = append(errs, errors.New(`test CMD-SHELL needs a shell, which a scratch image lacks; use ["CMD", "/program", args...]`))
	default:
		errs = append(errs, fmt.Errorf(`test kind %q: want "CMD" or "NONE"`, h.Test[0]))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start period", h.StartPeriod}} {
		if d.v != 0 && d.v < minHealthDuration {
			errs = append(errs, fmt.Errorf("%s %v: want 0 (Docker's default) or at least %v", d.name, d.v, minHealthDuration))
		}
	}
	if h.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries %d: want 0 (Docker's default) or more", h.Retries))
	}
	return errs
}

// Reference grammar of github.com/distribution/reference, which the engine
// applies to a loaded archive's RepoTags.
var (
	tagPattern           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	pathComponentPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	domainPattern        = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$`)
	hex64Pattern         = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// maxNameLength is the longest repository name the engine accepts.
const maxNameLength = 255

// validateTag checks name:tag; empty is allowed (untagged image).
func validateTag(ref string) error {
	if ref == "" {
		return nil
	}
	if strings.Contains(ref, "@") {
		return errors.New("a digest cannot be loaded as a tag; use name:tag")
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return fmt.Errorf("no tag; the engine needs one, e.g. %s:latest", ref)
	}
	name, tag := ref[:i], ref[i+1:]
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("tag %q: use up to 128 letters, digits, _ . and -, not starting with . or -", tag)
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("name is longer than %d characters", maxNameLength)
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !domainPattern.MatchString(parts[0]) {
			return fmt.Errorf("registry host %q: want host[:port]", parts[0])
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !pathComponentPattern.MatchString(p) {
			return fmt.Errorf("name component %q: use lowercase letters and digits, separated by . _ __ or -", p)
		}
	}
	if len(parts) == 1 && hex64Pattern.MatchString(parts[0]) {
		return errors.New("name is 64 hex digits, which the engine takes for an image ID; choose another name")
	}
	return nil
}
