package function

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// staticHint says how to get a static executable.
const staticHint = "a Pulse image has no libc and no dynamic loader, so the function must be a static Linux executable: " +
	"link C with `gcc -static`, C++ with `g++ -static`, Go with `CGO_ENABLED=0 GOOS=linux go build`"

// buildBin takes a prebuilt executable as the function and builds the
// watchdog.
func (b *imageBuilder) buildBin(ctx context.Context) (builtFiles, error) {
	handler := filepath.Join(b.dir, b.spec.Handler)
	st, err := os.Stat(handler)
	switch {
	case err != nil:
		return builtFiles{}, invalidBuild("handler %s: %w", b.spec.Handler, err)
	case !st.Mode().IsRegular():
		return builtFiles{}, invalidBuild("handler %s: not a regular file; name the executable", b.spec.Handler)
	case st.Mode()&0o111 == 0:
		return builtFiles{}, invalidBuild("handler %s: not executable (mode %v); chmod +x %s", b.spec.Handler, st.Mode().Perm(), b.spec.Handler)
	}
	b.progress("checking the executable (bin)…")
	rel, ok := withinDir(b.dir, handler)
	if !ok {
		rel = filepath.ToSlash(filepath.Clean(b.spec.Handler))
	}
	// Stat followed a symlink: read the file it names.
	fn, err := os.ReadFile(handler)
	if err != nil {
		return builtFiles{}, invalidBuild("handler %s: %w", b.spec.Handler, err)
	}
	if err := checkStatic(fn, b.opts.Arch); err != nil {
		return builtFiles{}, fmt.Errorf("handler %s: %w", b.spec.Handler, err)
	}
	wd, err := b.watchdogBinary(ctx)
	if err != nil {
		return builtFiles{}, err
	}
	src := sourceFile{rel: rel, mode: normalMode(st.Mode()), content: fn, mtime: st.ModTime()}
	return builtFiles{function: fn, watchdog: wd, sources: []sourceFile{src}}, nil
}

// elfMachines maps a GOARCH to its ELF machine.
var elfMachines = map[string]elf.Machine{
	"386":      elf.EM_386,
	"amd64":    elf.EM_X86_64,
	"arm":      elf.EM_ARM,
	"arm64":    elf.EM_AARCH64,
	"loong64":  elf.EM_LOONGARCH,
	"mips64le": elf.EM_MIPS,
	"ppc64le":  elf.EM_PPC64,
	"riscv64":  elf.EM_RISCV,
	"s390x":    elf.EM_S390,
}

// checkStatic checks that exe is a static ELF executable for arch: no program
// interpreter (PT_INTERP) and no shared libraries (DT_NEEDED). The error
// wraps ErrNotStatic and says how to link statically.
func checkStatic(exe []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		return fmt.Errorf("%w: not an ELF executable (%v); %s", ErrNotStatic, shortELFError(err), staticHint)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN || f.Entry == 0 {
		return fmt.Errorf("%w: an ELF %v without an entry point, not an executable; %s", ErrNotStatic, f.Type, staticHint)
	}
	if want, ok := elfMachines[arch]; ok && f.Machine != want {
		return fmt.Errorf("%w: built for %v, but the image is for %s (%v); build it for %s", ErrNotStatic, f.Machine, arch, want, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp := make([]byte, min(p.Filesz, 4096))
			n, _ := p.ReadAt(interp, 0)
			return fmt.Errorf("%w: dynamically linked (loader %s); %s", ErrNotStatic, bytes.TrimRight(interp[:n], "\x00"), staticHint)
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return fmt.Errorf("%w: reading its dynamic section: %v", ErrNotStatic, err)
	}
	if len(needed) > 0 {
		return fmt.Errorf("%w: dynamically linked (needs %q); %s", ErrNotStatic, needed, staticHint)
	}
	return nil
}

// shortELFError drops debug/elf's wrapping of a bad magic number.
func shortELFError(err error) error {
	var fe *elf.FormatError
	if errors.As(err, &fe) {
		return errors.New("bad ELF header")
	}
	return err
}
