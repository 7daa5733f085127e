package function

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testSpec is a valid spec shaped like a Pulse fork-mode image, with small
// stand-ins for the binaries.
func testSpec() ImageSpec {
	return ImageSpec{
		Tag: "pulse/hello:latest",
		Files: []File{
			{Path: "/pulse-watchdog", Mode: 0o755, Content: []byte("watchdog binary")},
			{Path: "/function", Mode: 0o755, Content: []byte("function binary")},
		},
		Entrypoint: []string{"/pulse-watchdog"},
		Env: []string{
			"PULSE_MODE=fork",
			"PULSE_EXEC=/function",
			"PULSE_FUNCTION=hello",
			"PULSE_LISTEN=:8080",
		},
		User:         "65534:65534",
		WorkingDir:   "/",
		ExposedPorts: []string{"8080/tcp"},
		Labels:       map[string]string{"pulse.function": "hello", "org.opencontainers.image.title": "hello"},
		Healthcheck: &Healthcheck{
			Test:        []string{"CMD", "/pulse-watchdog", "-healthcheck"},
			Interval:    5 * time.Second,
			Timeout:     2 * time.Second,
			StartPeriod: time.Second,
			Retries:     3,
		},
		Architecture: "amd64",
	}
}

func TestAssembleIsDeterministic(t *testing.T) {
	base, err := Assemble(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Assemble(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base.Archive, again.Archive) || base.ID != again.ID {
		t.Fatalf("two assemblies of one spec differ: IDs %s and %s", base.ID, again.ID)
	}

	tests := []struct {
		name          string
		change        func(*ImageSpec)
		wantSameID    bool
		wantSameBytes bool
	}{
		{
			name:       "one byte of a file",
			change:     func(s *ImageSpec) { s.Files[1].Content = []byte("function binarY") },
			wantSameID: false,
		},
		{
			name:       "a file's mode",
			change:     func(s *ImageSpec) { s.Files[1].Mode = 0o555 },
			wantSameID: false,
		},
		{
			name:       "the source date epoch",
			change:     func(s *ImageSpec) { s.SourceDateEpoch = 1 },
			wantSameID: false,
		},
		{
			name:       "an env entry",
			change:     func(s *ImageSpec) { s.Env[3] = "PULSE_LISTEN=:8081" },
			wantSameID: false,
		},
		{
			name:       "a label",
			change:     func(s *ImageSpec) { s.Labels["pulse.function"] = "hullo" },
			wantSameID: false,
		},
		{
			// The tag lives in manifest.json, not in the config.
			name:       "the tag only",
			change:     func(s *ImageSpec) { s.Tag = "pulse/hello:v2" },
			wantSameID: true,
		},
		{
			// Files are sorted into the layer, so their order is no input.
			name: "the order of files",
			change: func(s *ImageSpec) {
				s.Files[0], s.Files[1] = s.Files[1], s.Files[0]
			},
			wantSameID:    true,
			wantSameBytes: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			tt.change(&spec)
			img, err := Assemble(spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.ID == base.ID; got != tt.wantSameID {
				t.Errorf("same ID = %v, want %v (%s vs %s)", got, tt.wantSameID, img.ID, base.ID)
			}
			if got := bytes.Equal(img.Archive, base.Archive); got != tt.wantSameBytes {
				t.Errorf("same archive = %v, want %v", got, tt.wantSameBytes)
			}
		})
	}
}

// tarItem is what a test checks of a tar header.
type tarItem struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Owner    string // Uname:Gname
	MTime    int64
	Size     int64
}

// readTar lists a tar and returns the contents of its regular files.
func readTar(t *testing.T, data []byte) ([]tarItem, map[string][]byte) {
	t.Helper()
	var items []tarItem
	contents := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return items, contents
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		items = append(items, tarItem{
			Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Owner: h.Uname + ":" + h.Gname, MTime: h.ModTime.Unix(), Size: h.Size,
		})
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s: %v", h.Name, err)
			}
			contents[h.Name] = b
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestAssembleContents(t *testing.T) {
	const epoch = 1700000000
	spec := testSpec()
	spec.SourceDateEpoch = epoch
	spec.WorkingDir = "/srv/app"
	spec.Files = append(spec.Files, File{Path: "/etc/pulse/function.json", Mode: 0o644, Content: []byte("{}\n")})
	img, err := Assemble(spec)
	if err != nil {
		t.Fatal(err)
	}

	outer, files := readTar(t, img.Archive)
	var manifest []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		t.Fatalf("manifest = %+v, want one image with one layer", manifest)
	}
	config, layer := files[manifest[0].Config], files[manifest[0].Layers[0]]
	configHex, diffID := sha256Hex(config), sha256Hex(layer)
	if want := "sha256:" + configHex; img.ID != want {
		t.Errorf("ID = %s, want sha256 of the config %s", img.ID, want)
	}

	reg := func(name string, mode int64, size int) tarItem {
		return tarItem{Name: name, Type: tar.TypeReg, Mode: mode, Owner: ":", MTime: epoch, Size: int64(size)}
	}
	dir := func(name string, mode int64) tarItem {
		return tarItem{Name: name, Type: tar.TypeDir, Mode: mode, Owner: ":", MTime: epoch}
	}
	wantOuter := []tarItem{
		reg(configHex+".json", 0o644, len(config)),
		dir(diffID+"/", 0o755),
		reg(diffID+"/layer.tar", 0o644, len(layer)),
		reg("manifest.json", 0o644, len(files["manifest.json"])),
	}
	if !reflect.DeepEqual(outer, wantOuter) {
		t.Errorf("archive entries:\n got %+v\nwant %+v", outer, wantOuter)
	}
	wantManifest := []manifestEntry{{
		Config:   configHex + ".json",
		RepoTags: []string{"pulse/hello:latest"},
		Layers:   []string{diffID + "/layer.tar"},
	}}
	if !reflect.DeepEqual(manifest, wantManifest) {
		t.Errorf("manifest:\n got %+v\nwant %+v", manifest, wantManifest)
	}

	var cfg imageConfig
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if want := []string{"sha256:" + diffID}; !reflect.DeepEqual(cfg.RootFS.DiffIDs, want) {
		t.Errorf("diff_ids = %v, want the layer's sha256 %v", cfg.RootFS.DiffIDs, want)
	}
	if want := time.Unix(epoch, 0).UTC(); !cfg.Created.Equal(want) {
		t.Errorf("created = %v, want the source date epoch %v", cfg.Created, want)
	}

	entries, layerFiles := readTar(t, layer)
	wantEntries := []tarItem{
		dir("etc/", 0o755),
		dir("etc/pulse/", 0o755),
		reg("etc/pulse/function.json", 0o644, 3),
		reg("function", 0o755, 15),
		reg("pulse-watchdog", 0o755, 15),
		dir("srv/", 0o755),
		dir("srv/app/", 0o755),
		dir("tmp/", 0o1777),
	}
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Errorf("layer entries:\n got %+v\nwant %+v", entries, wantEntries)
	}
	wantFiles := map[string][]byte{
		"etc/pulse/function.json": []byte("{}\n"),
		"function":                []byte("function binary"),
		"pulse-watchdog":          []byte("watchdog binary"),
	}
	if !reflect.DeepEqual(layerFiles, wantFiles) {
		t.Errorf("layer files:\n got %q\nwant %q", layerFiles, wantFiles)
	}
}

// TestAssembleGolden pins the exact config and manifest JSON of a one-layer
// image (testSpec) and of a two-layer one (layeredSpec): any change to them,
// or to a layer's bytes (its digest is in the config), changes image IDs and
// shows here. Run with -update to accept a change on purpose.
func TestAssembleGolden(t *testing.T) {
	for _, tc := range []struct {
		prefix string // of the golden files' names
		spec   ImageSpec
	}{
		{"image", testSpec()},
		{"image-layered", layeredSpec("hello", "function binary", 0)},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			img, err := Assemble(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			_, files := readTar(t, img.Archive)
			var manifest []manifestEntry
			if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
				t.Fatalf("manifest.json %q: %v", files["manifest.json"], err)
			}
			got := map[string][]byte{
				tc.prefix + "-config.json":   files[manifest[0].Config],
				tc.prefix + "-manifest.json": files["manifest.json"],
				tc.prefix + "-id.txt":        []byte(img.ID + "\n"),
			}
			for name, b := range got {
				path := filepath.Join("testdata", name)
				if *update {
					if err := os.WriteFile(path, b, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
				}
				if !bytes.Equal(b, want) {
					t.Errorf("%s differs from the golden file:\n got %s\nwant %s", name, b, want)
				}
			}
		})
	}
}

func TestImageSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*ImageSpec)
		wantErr string // the whole message after "invalid image spec: "; empty: valid
	}{
		{name: "valid", change: func(*ImageSpec) {}},
		{name: "untagged", change: func(s *ImageSpec) { s.Tag = "" }},
		{name: "tag with registry and port", change: func(s *ImageSpec) { s.Tag = "localhost:5000/pulse/hello:1.0" }},
		{name: "tag with separators", change: func(s *ImageSpec) { s.Tag = "pulse/hello__x.y-z:v1.2_3-rc" }},
		{name: "no cmd with entrypoint", change: func(s *ImageSpec) { s.Cmd = nil }},
		{name: "cmd without entrypoint", change: func(s *ImageSpec) { s.Entrypoint, s.Cmd = nil, []string{"/pulse-watchdog"} }},
		{name: "healthcheck none", change: func(s *ImageSpec) { s.Healthcheck = &Healthcheck{Test: []string{"NONE"}} }},
		{name: "user without gid", change: func(s *ImageSpec) { s.User = "1000" }},
		{name: "file in a subdirectory", change: func(s *ImageSpec) { s.Files[1].Path = "/usr/bin/function" }},

		{name: "entrypoint in the base files", change: func(s *ImageSpec) { s.BaseFiles, s.Files = s.Files[:1], s.Files[1:] }},
		{name: "base files in a subdirectory", change: func(s *ImageSpec) {
			s.BaseFiles, s.Files = []File{{Path: "/usr/bin/extra", Mode: 0o644, Content: []byte("x")}}, append(s.Files, File{Path: "/usr/lib/more", Mode: 0o644})
		}},

		{
			name:    "tag missing",
			change:  func(s *ImageSpec) { s.Tag = "pulse/hello" },
			wantErr: `tag "pulse/hello": no tag; the engine needs one, e.g. pulse/hello:latest`,
		},
		{
			name:    "tag missing after a registry port",
			change:  func(s *ImageSpec) { s.Tag = "localhost:5000/hello" },
			wantErr: `tag "localhost:5000/hello": no tag; the engine needs one, e.g. localhost:5000/hello:latest`,
		},
		{
			name:    "uppercase name",
			change:  func(s *ImageSpec) { s.Tag = "Pulse/hello:latest" },
			wantErr: `tag "Pulse/hello:latest": name component "Pulse": use lowercase letters and digits, separated by . _ __ or -`,
		},
		{
			name:    "digest",
			change:  func(s *ImageSpec) { s.Tag = "pulse/hello@sha256:" + strings.Repeat("a", 64) },
			wantErr: `tag "pulse/hello@sha256:` + strings.Repeat("a", 64) + `": a digest cannot be loaded as a tag; use name:tag`,
		},
		{
			name:    "bad tag",
			change:  func(s *ImageSpec) { s.Tag = "pulse/hello:.v1" },
			wantErr: `tag "pulse/hello:.v1": tag ".v1": use up to 128 letters, digits, _ . and -, not starting with . or -`,
		},
		{
			name:    "bad registry host",
			change:  func(s *ImageSpec) { s.Tag = "-bad.host/hello:1" },
			wantErr: `tag "-bad.host/hello:1": registry host "-bad.host": want host[:port]`,
		},
		{
			name:    "name like an image ID",
			change:  func(s *ImageSpec) { s.Tag = strings.Repeat("ab", 32) + ":latest" },
			wantErr: `tag "` + strings.Repeat("ab", 32) + `:latest": name is 64 hex digits, which the engine takes for an image ID; choose another name`,
		},
		{
			name:    "relative path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "function" },
			wantErr: `files[1] "function": path is relative; make it absolute, e.g. /function`,
		},
		{
			name:    "unclean path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "/bin//../function/" },
			wantErr: `files[1] "/bin//../function/": path is not clean; write it as /function`,
		},
		{
			name:    "empty path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "" },
			wantErr: `files[1] "": empty path; give an absolute path such as /function`,
		},
		{
			name:    "root path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "/" },
			wantErr: `files[1] "/": path is the root directory; name a file under it`,
		},
		{
			name:    "NUL in path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "/func\x00tion" },
			wantErr: `files[1] "/func\x00tion": path contains a NUL byte`,
		},
		{
			name:    "duplicate path",
			change:  func(s *ImageSpec) { s.Files[1].Path = "/pulse-watchdog" },
			wantErr: `files[1] "/pulse-watchdog": duplicate path; list each file once`,
		},
		{
			name:    "file under /tmp",
			change:  func(s *ImageSpec) { s.Files[1].Path = "/tmp/function" },
			wantErr: `files[1] "/tmp/function": /tmp is the empty mount point of a tmpfs at run time; put the file elsewhere`,
		},
		{
			name: "file that is also a parent directory",
			change: func(s *ImageSpec) {
				s.Files = append(s.Files, File{Path: "/function/data", Mode: 0o644})
			},
			wantErr: `files[1] "/function": the path is also a directory of the image (a parent of another file or the working dir); rename one`,
		},
		{
			name:    "file that is the working dir",
			change:  func(s *ImageSpec) { s.WorkingDir = "/function" },
			wantErr: `files[1] "/function": the path is also a directory of the image (a parent of another file or the working dir); rename one`,
		},
		{
			name:    "relative working dir",
			change:  func(s *ImageSpec) { s.WorkingDir = "srv" },
			wantErr: `working dir "srv": path is relative; make it absolute, e.g. /srv`,
		},
		{
			name:    "file not readable by the user",
			change:  func(s *ImageSpec) { s.Files[1].Mode = 0o700 },
			wantErr: `files[1] "/function": mode 0700 does not let the non-root user read the root-owned file; use e.g. 0644 or 0755`,
		},
		{
			name:    "mode with type bits",
			change:  func(s *ImageSpec) { s.Files[1].Mode = fs.ModeSetuid | 0o755 },
			wantErr: `files[1] "/function": mode urwxr-xr-x has bits other than permissions; use e.g. 0644 or 0755`,
		},
		{
			name:    "entrypoint not among files",
			change:  func(s *ImageSpec) { s.Entrypoint = []string{"/bin/sh", "-c", "x"} },
			wantErr: `entrypoint "/bin/sh": not among the image's files; add it to Files`,
		},
		{
			name:    "relative entrypoint",
			change:  func(s *ImageSpec) { s.Entrypoint = []string{"pulse-watchdog"} },
			wantErr: `entrypoint "pulse-watchdog": not an absolute path; there is no PATH lookup in a scratch image, name the file, e.g. /pulse-watchdog`,
		},
		{
			name:    "entrypoint not executable",
			change:  func(s *ImageSpec) { s.Files[0].Mode = 0o644 },
			wantErr: "entrypoint \"/pulse-watchdog\": mode 0644 does not let the non-root user run the root-owned file; use 0755\nhealthcheck: test program \"/pulse-watchdog\": mode 0644 does not let the non-root user run the root-owned file; use 0755",
		},
		{
			name:    "cmd program checked without entrypoint",
			change:  func(s *ImageSpec) { s.Entrypoint, s.Cmd = nil, []string{"/hello"} },
			wantErr: `cmd "/hello": not among the image's files; add it to Files`,
		},
		{
			name:    "nothing to run",
			change:  func(s *ImageSpec) { s.Entrypoint, s.Cmd = nil, nil },
			wantErr: `entrypoint and cmd are both empty; set the program to run, e.g. Entrypoint ["/pulse-watchdog"]`,
		},
		{
			name:    "env without value",
			change:  func(s *ImageSpec) { s.Env = append(s.Env, "PULSE_DEBUG") },
			wantErr: `env[4] "PULSE_DEBUG": want KEY=VALUE`,
		},
		{
			name:    "env without key",
			change:  func(s *ImageSpec) { s.Env = append(s.Env, "=1") },
			wantErr: `env[4] "=1": want KEY=VALUE`,
		},
		{
			name:    "env set twice",
			change:  func(s *ImageSpec) { s.Env = append(s.Env, "PULSE_MODE=http") },
			wantErr: `env[4] "PULSE_MODE=http": duplicate variable PULSE_MODE; set it once`,
		},
		{
			name:    "no user",
			change:  func(s *ImageSpec) { s.User = "" },
			wantErr: `user "": want a numeric uid[:gid] such as 65534:65534 (the image has no /etc/passwd)`,
		},
		{
			name:    "user by name",
			change:  func(s *ImageSpec) { s.User = "nobody" },
			wantErr: `user "nobody": want a numeric uid[:gid] such as 65534:65534 (the image has no /etc/passwd)`,
		},
		{
			name:    "root",
			change:  func(s *ImageSpec) { s.User = "0:65534" },
			wantErr: `user "0:65534": uid 0 is root; Pulse images run as a non-root user such as 65534:65534`,
		},
		{
			name:    "gid out of range",
			change:  func(s *ImageSpec) { s.User = "1000:4294967296" },
			wantErr: `user "1000:4294967296": gid: strconv.ParseUint: parsing "4294967296": value out of range`,
		},
		{
			name:    "port without protocol",
			change:  func(s *ImageSpec) { s.ExposedPorts = []string{"8080"} },
			wantErr: `exposed ports[0] "8080": want port/protocol such as 8080/tcp (protocol tcp, udp or sctp)`,
		},
		{
			name:    "port out of range",
			change:  func(s *ImageSpec) { s.ExposedPorts = []string{"0/tcp", "65536/udp"} },
			wantErr: "exposed ports[0] \"0/tcp\": port out of range 1-65535\nexposed ports[1] \"65536/udp\": port out of range 1-65535",
		},
		{
			name:    "port twice",
			change:  func(s *ImageSpec) { s.ExposedPorts = []string{"8080/tcp", "8080/udp", "8080/tcp"} },
			wantErr: `exposed ports[2] "8080/tcp": duplicate port; list it once`,
		},
		{
			name:    "path in base files and files",
			change:  func(s *ImageSpec) { s.BaseFiles = []File{s.Files[0]} },
			wantErr: `files[0] "/pulse-watchdog": duplicate path; list each file once`,
		},
		{
			name:    "base file under /tmp",
			change:  func(s *ImageSpec) { s.BaseFiles = []File{{Path: "/tmp/x", Mode: 0o644}} },
			wantErr: `base files[0] "/tmp/x": /tmp is the empty mount point of a tmpfs at run time; put the file elsewhere`,
		},
		{
			name: "base file that is a directory of the top layer",
			change: func(s *ImageSpec) {
				s.BaseFiles = []File{{Path: "/etc", Mode: 0o644}}
				s.Files[1].Path = "/etc/function"
			},
			wantErr: `base files[0] "/etc": the path is also a directory of the image (a parent of another file or the working dir); rename one`,
		},
		{
			name:    "file that is a directory of the base layer",
			change:  func(s *ImageSpec) { s.BaseFiles = []File{{Path: "/function/data", Mode: 0o644}} },
			wantErr: `files[1] "/function": the path is also a directory of the image (a parent of another file or the working dir); rename one`,
		},
		{
			name:    "base file not readable",
			change:  func(s *ImageSpec) { s.BaseFiles = []File{{Path: "/lib/x", Mode: 0o600}} },
			wantErr: `base files[0] "/lib/x": mode 0600 does not let the non-root user read the root-owned file; use e.g. 0644 or 0755`,
		},
		{
			name:    "base layer label set by hand",
			change:  func(s *ImageSpec) { s.Labels[LabelBaseLayer] = "sha256:00" },
			wantErr: `labels: pulse.base-layer is set by Assemble from the base files; leave it out`,
		},
		{
			name:    "label without key",
			change:  func(s *ImageSpec) { s.Labels[""] = "x" },
			wantErr: `labels: empty key (value "x"); name the label`,
		},
		{
			name:    "healthcheck without test",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = nil },
			wantErr: `healthcheck: test is empty; use ["CMD", "/program", args...] or ["NONE"]`,
		},
		{
			name:    "healthcheck with a shell",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = []string{"CMD-SHELL", "wget -q localhost:8080/_/health"} },
			wantErr: `healthcheck: test CMD-SHELL needs a shell, which a scratch image lacks; use ["CMD", "/program", args...]`,
		},
		{
			name:    "healthcheck CMD without program",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = []string{"CMD"} },
			wantErr: `healthcheck: test ["CMD"] names no program; use ["CMD", "/program", args...]`,
		},
		{
			name:    "healthcheck program missing",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = []string{"CMD", "/healthcheck"} },
			wantErr: `healthcheck: test program "/healthcheck": not among the image's files; add it to Files`,
		},
		{
			name:    "healthcheck NONE with arguments",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = []string{"NONE", "x"} },
			wantErr: `healthcheck: test ["NONE", ...] takes no arguments`,
		},
		{
			name:    "healthcheck of unknown kind",
			change:  func(s *ImageSpec) { s.Healthcheck.Test = []string{"/pulse-watchdog", "-healthcheck"} },
			wantErr: `healthcheck: test kind "/pulse-watchdog": want "CMD" or "NONE"`,
		},
		{
			name: "healthcheck durations and retries",
			change: func(s *ImageSpec) {
				s.Healthcheck.Interval, s.Healthcheck.Timeout, s.Healthcheck.StartPeriod = time.Microsecond, -time.Second, 999*time.Microsecond
				s.Healthcheck.Retries = -1
			},
			wantErr: "healthcheck: interval 1µs: want 0 (Docker's default) or at least 1ms\n" +
				"healthcheck: timeout -1s: want 0 (Docker's default) or at least 1ms\n" +
				"healthcheck: start period 999µs: want 0 (Docker's default) or at least 1ms\n" +
				"healthcheck: retries -1: want 0 (Docker's default) or more",
		},
		{
			name:    "unknown architecture",
			change:  func(s *ImageSpec) { s.Architecture = "x86_64" },
			wantErr: `architecture "x86_64": unknown; use a GOARCH such as amd64 or arm64, or leave it empty for ` + runtimeGOARCH(),
		},
		{
			name:    "negative epoch",
			change:  func(s *ImageSpec) { s.SourceDateEpoch = -1 },
			wantErr: `source date epoch -1: want seconds since 1970 between 0 and 253402300799`,
		},
		{
			name: "several problems at once",
			change: func(s *ImageSpec) {
				s.Tag = "hello"
				s.User = "root"
			},
			wantErr: "tag \"hello\": no tag; the engine needs one, e.g. hello:latest\n" +
				"user \"root\": want a numeric uid[:gid] such as 65534:65534 (the image has no /etc/passwd)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec()
			tt.change(&spec)
			err := spec.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := Assemble(spec); err != nil {
					t.Fatalf("Assemble() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalidSpec", err)
			}
			if got, want := err.Error(), "invalid image spec: "+tt.wantErr; got != want {
				t.Errorf("Validate() error\n got %q\nwant %q", got, want)
			}
			img, err := Assemble(spec)
			if !errors.Is(err, ErrInvalidSpec) || !reflect.DeepEqual(img, Image{}) {
				t.Errorf("Assemble() = %+v, %v; want no image and the validation error", img, err)
			}
		})
	}
}

func runtimeGOARCH() string { return newImageConfig(ImageSpec{}, "", time.Time{}).Architecture }
